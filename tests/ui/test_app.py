"""The app as a whole: ``python -m kernelmon --help``, and main() opening and quitting."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from kernelmon import __version__, app, paths
from kernelmon.settings_file import load_settings
from kernelmon.ui import dialogs
from kernelmon.ui.main_window import MainWindow

from .conftest import pid_alive, run_kernelmon, wait_until


@pytest.fixture(autouse=True)
def own_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's app gets its own config, state (kernel records) and log folders, and its
    own Jupyter runtime folder (so it finds no other test's kernels)."""
    for name in ("CONFIG", "STATE", "LOG"):
        monkeypatch.setenv(f"KERNELMON_{name}_DIR", str(tmp_path / name.lower()))
    (tmp_path / "runtime").mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))


def test_help_describes_the_options() -> None:
    result = run_kernelmon("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--root-dir", "--runtime-dir", "--log-level", "--no-tray", "--version"):
        assert option in result.stdout
    assert "Jupyter kernels" in result.stdout


def test_version() -> None:
    result = run_kernelmon("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_bad_root_dir_is_refused(tmp_path: Path) -> None:
    result = run_kernelmon(
        "--root-dir", str(tmp_path / "missing"), KERNELMON_LOG_DIR=str(tmp_path / "log")
    )
    assert result.returncode == 2
    assert "not a folder" in result.stderr


def test_bad_runtime_dir_is_refused(tmp_path: Path) -> None:
    result = run_kernelmon(
        "--runtime-dir",
        str(tmp_path),
        "--runtime-dir",
        str(tmp_path / "no"),
        KERNELMON_LOG_DIR=str(tmp_path / "log"),
    )
    assert result.returncode == 2
    assert "--runtime-dir" in result.stderr
    assert "not a folder" in result.stderr


def kernel_children() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "ipykernel" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    ]


def drive_main(script: Any, argv: list[str]) -> int:
    """Run app.main(argv) while ``script(window)`` (a coroutine function) drives the window."""
    errors: list[BaseException] = []
    tasks: list[asyncio.Future[None]] = []

    def later() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        window = next((w for w in windows if not w.is_finished), None)
        if window is None:  # not built yet (a slow machine): look again soon
            QTimer.singleShot(100, later)
            return

        async def go() -> None:
            try:
                await script(window)
            except BaseException as e:
                errors.append(e)
                window.request_quit()

        tasks.append(asyncio.ensure_future(go()))

    QTimer.singleShot(100, later)
    rc = app.main(argv)
    if errors:
        raise errors[0]
    return rc


def test_main_opens_and_quits_shutting_kernels_down(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []

    def ask_quit(parent: Any, running: int) -> dialogs.QuitChoice:
        asked.append(running)
        return dialogs.QuitChoice.SHUT_DOWN

    monkeypatch.setattr(dialogs, "ask_quit", ask_quit)
    before = {p.pid for p in kernel_children()}
    pids: list[int] = []

    async def script(window: MainWindow) -> None:
        assert window.isVisible()
        # once started (the window shown, kernels taken over), start-up objects are frozen
        await wait_until(lambda: gc.get_freeze_count() > 0)
        kid = await window.commands.request_start("python3")
        await wait_until(lambda: window.table_model.rowCount() == 1)
        pids.append(window.kernel_map.kernel_model(kid)["pid"])
        assert pid_alive(pids[0])
        window.actions_by_name["quit"].trigger()

    hook = sys.excepthook
    assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
    assert sys.excepthook is hook, "main() restores the excepthook"
    assert load_settings(paths.settings_file())[0].root_dir == str(tmp_path), "remembered"
    assert asked == [1]
    assert not pid_alive(pids[0])
    assert {p.pid for p in kernel_children()} <= before
    assert paths.window_state_file().is_file(), "window geometry was saved"
    assert "starting; root folder" in paths.log_file().read_text()
    assert gc.get_freeze_count() == 0, "unfrozen on quitting"


def test_main_watches_every_kernel_and_the_runtime_dir_of_this_run(
    qapp: QApplication, tmp_path: Path
) -> None:
    """After taking over earlier kernels, main() starts monitoring: a leftover connection
    file in a folder given with --runtime-dir shows up as a stale kernel. The folder is
    watched for this run only."""
    run_folder = tmp_path / "elsewhere"
    run_folder.mkdir()
    stale = "0badc0de-0000-4000-8000-000000000001"
    (run_folder / f"kernel-{stale}.json").write_text(
        '{"transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2, '
        '"stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "", '
        '"signature_scheme": "hmac-sha256", "kernel_name": "python3"}'
    )

    async def script(window: MainWindow) -> None:
        await wait_until(lambda: window.table_model.kernel_model(stale) is not None)
        assert window.table_model.kernel_model(stale)["origin"] == "stale"
        assert str(run_folder) in window.kernel_map.settings.runtime_folders
        assert window.settings.run_folders == (str(run_folder),)
        window.request_quit()

    argv = ["--root-dir", str(tmp_path), "--no-tray", "--runtime-dir", str(run_folder)]
    assert drive_main(script, argv) == 0
    assert load_settings(paths.settings_file())[0].runtime_folders == ()
    assert (run_folder / f"kernel-{stale}.json").is_file(), "quitting removes nothing"


def test_main_can_leave_kernels_running(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialogs, "ask_quit", lambda p, n: dialogs.QuitChoice.LEAVE_RUNNING)
    pids: list[int] = []

    async def script(window: MainWindow) -> None:
        kid = await window.commands.request_start("python3")
        pids.append(window.kernel_map.kernel_model(kid)["pid"])
        window.request_quit()

    try:
        assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
        assert pid_alive(pids[0]), "the kernel was left running as asked"
    finally:
        for pid in pids:
            if pid_alive(pid):
                psutil.Process(pid).kill()


def test_cancelled_quit_keeps_everything(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [dialogs.QuitChoice.CANCEL, dialogs.QuitChoice.SHUT_DOWN]
    monkeypatch.setattr(dialogs, "ask_quit", lambda p, n: answers.pop(0))

    async def script(window: MainWindow) -> None:
        kid = await window.commands.request_start("python3")
        window.close()  # no tray: closing the window means quitting
        await asyncio.sleep(0.1)
        assert window.isVisible()
        assert kid in window.kernel_map
        assert not window.is_finished
        window.close()

    assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
    assert answers == []


def test_corrupt_settings_are_reported_and_the_app_runs(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERNELMON_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()
    paths.settings_file().write_text("{broken")
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda p, t, x: shown.append((t, x)))

    async def script(window: MainWindow) -> None:
        assert window.kernel_map.settings.cull_idle_timeout == 0
        assert window.status.counts_label.text() == "No kernels"
        window.request_quit()

    assert drive_main(script, ["--root-dir", str(tmp_path)]) == 0
    assert shown
    assert "defaults" in shown[0][1]
    assert list((tmp_path / "config").glob("settings.json.bad-*"))


def test_uncaught_errors_are_shown_and_the_app_keeps_running(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda p, t, x: shown.append((t, x)))

    def failing_slot() -> None:
        raise ValueError("boom in a slot")

    async def script(window: MainWindow) -> None:
        QTimer.singleShot(0, failing_slot)  # Qt hands the exception to sys.excepthook
        await wait_until(lambda: len(shown) == 1)

        async def failing() -> None:
            raise RuntimeError("boom in a task")

        window.tasks.spawn(failing(), "Testing")
        await wait_until(lambda: len(shown) == 2)
        assert window.isVisible()
        window.request_quit()

    assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
    assert "boom in a slot" in shown[0][1]
    assert "boom in a task" in shown[1][1]


DRIVER = """
import asyncio, json, os, signal, sys
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from kernelmon import app
from kernelmon.ui import dialogs
from kernelmon.ui.main_window import MainWindow

mode, root = sys.argv[1], sys.argv[2]
choice = dialogs.QuitChoice.LEAVE_RUNNING if mode == "leave" else dialogs.QuitChoice.SHUT_DOWN
dialogs.ask_quit = lambda parent, n: choice
result = {}
tasks = []

def later():
    w = next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)
    if w is None:  # a loaded machine: the window is not built yet
        QTimer.singleShot(50, later)
        return

    async def go():
        try:
            if mode in ("leave", "sigterm"):
                kid = await w.commands.request_start("python3")
                result["kernel"] = [kid, w.kernel_map.kernel_model(kid)["pid"]]
                if mode == "sigterm":
                    print("RESULT", json.dumps(result), flush=True)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            elif mode == "handover":  # wait for another launch to be handed over
                kid = await w.commands.request_start("python3")
                result["kernel"] = [kid, w.kernel_map.kernel_model(kid)["pid"]]
                w.showMinimized()
                result["minimized_before"] = w.isMinimized()
                print("READY", json.dumps(result), flush=True)
                for _ in range(600):
                    if any("handed over" in t for t in w.event_log.texts()):
                        break
                    await asyncio.sleep(0.05)
                result["log"] = w.event_log.texts()
                result["minimized"] = w.isMinimized()
                result["visible"] = w.isVisible()
                result["watched"] = list(w.kernel_map.settings.runtime_folders)
                result["owned"] = w.store.owned_ids()
                state = Path(os.environ["KERNELMON_STATE_DIR"])
                result["state_files"] = sorted(p.name for p in state.glob("kernels-*.json"))
            else:
                for _ in range(200):
                    models = w.kernel_map.list_kernels()
                    if models and all(m["execution_state"] == "idle" for m in models):
                        break
                    await asyncio.sleep(0.05)
                result["kernels"] = [
                    [m["id"], m["pid"], m["execution_state"]] for m in w.kernel_map.list_kernels()
                ]
                result["rows"] = w.table_model.rowCount()
                result["log"] = w.event_log.texts()
        finally:
            w.request_quit()

    tasks.append(asyncio.ensure_future(go()))

qapp = QApplication([])
QTimer.singleShot(100, later)
rc = app.main(["--root-dir", root, "--no-tray"])
print("RESULT", json.dumps(result))
sys.exit(rc)
"""


def own_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "KERNELMON_STATE_DIR": str(tmp_path / "state"),
        "KERNELMON_CONFIG_DIR": str(tmp_path / "config"),
        "KERNELMON_LOG_DIR": str(tmp_path / "log"),
    }


def run_driver(mode: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    import json

    result = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return data


def launch_kernelmon(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``kernelmon --no-tray`` launched as a user would, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "kernelmon", "--no-tray"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_kernels_left_running_are_taken_over_by_the_next_launch(tmp_path: Path) -> None:
    env = own_env(tmp_path)
    first = run_driver("leave", tmp_path, env)
    kid, pid = first["kernel"]
    try:
        assert pid_alive(pid), "left running"
        second = run_driver("adopt", tmp_path, env)
        assert second["kernels"] == [[kid, pid, "idle"]]
        assert second["rows"] == 1
        assert any("taken over" in t for t in second["log"])
        assert not pid_alive(pid), "shut down when the second run quit"
    finally:
        if pid_alive(pid):
            psutil.Process(pid).kill()


def test_sigterm_quits_and_shuts_kernels_down(tmp_path: Path) -> None:
    env = own_env(tmp_path)
    data = run_driver("sigterm", tmp_path, env)
    _kid, pid = data["kernel"]
    try:
        assert not pid_alive(pid), "SIGTERM shut the kernel down before kernelmon exited"
        assert "Quitting; shutting kernels down" in (tmp_path / "log" / "kernelmon.log").read_text()
    finally:
        if pid_alive(pid):
            psutil.Process(pid).kill()


def test_the_running_window_takes_another_launch_s_options(
    qapp: QApplication, tmp_path: Path
) -> None:
    """What a second launch sends, through the real socket: folders applied, what cannot be
    applied said in the window, bad requests answered with an error, the app unharmed."""
    from kernelmon.core.instance import SOCKET_NAME, RunningInstance, instance_dir

    extra, other_root = tmp_path / "extra", tmp_path / "other-root"
    extra.mkdir()
    other_root.mkdir()
    replies: list[dict[str, Any]] = []

    async def script(window: MainWindow) -> None:
        running = RunningInstance(instance_dir(), os.getpid(), serving=True)

        def ask(**fields: Any) -> dict[str, Any]:
            return running.request("activate", timeout=10, **fields)

        argv = ["--root-dir", str(other_root), "--runtime-dir", str(extra)]
        argv += ["--runtime-dir", str(tmp_path / "gone"), "--log-level", "debug"]
        replies.append(await asyncio.to_thread(ask, argv=argv, pid=4242))
        replies.append(await asyncio.to_thread(ask, argv=["--bogus"]))
        replies.append(await asyncio.to_thread(ask, argv="--no-tray"))
        assert window.isVisible()
        assert str(extra) in window.kernel_map.settings.runtime_folders
        assert window.kernel_map.settings.root_dir == str(other_root)
        assert window.monitoring_panel.run_folders_label.text().endswith(str(extra))
        [text] = [t for t in window.event_log.texts() if "handed over" in t]
        assert "pid 4242" in text
        assert f"ignored: --runtime-dir {tmp_path / 'gone'} (not a folder)" in text
        window.request_quit()

    level = logging.getLogger().level
    try:
        assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
        assert logging.getLogger().level == logging.DEBUG, "--log-level applied"
    finally:
        logging.getLogger().setLevel(level)
    ok, bogus, not_a_list = replies
    assert ok["ok"] is True
    assert ok["pid"] == os.getpid()
    assert len(ok["applied"]) == 3
    assert ok["ignored"] == [f"--runtime-dir {tmp_path / 'gone'} (not a folder)"]
    assert bogus["ok"] is False
    assert bogus["code"] == "bad-request"
    assert "--bogus" in bogus["error"]
    assert not_a_list["code"] == "bad-request"
    assert load_settings(paths.settings_file())[0].root_dir == str(other_root), "remembered"
    assert not (instance_dir() / SOCKET_NAME).exists(), "the socket goes with the app"


def test_an_unwritable_state_folder_is_told_in_the_window(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state folder stops working (here: a file is where it should be): the window
    says so lastingly (status bar), in the event log and in one dialog, and a kernel start
    is refused with the reason instead of starting a kernel nobody could take over."""
    from kernelmon.core import KernelStartFailed

    state = tmp_path / "state"
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda p, t, x: shown.append((t, x)))

    async def script(window: MainWindow) -> None:
        await wait_until(lambda: gc.get_freeze_count() > 0)  # started up
        state.rename(tmp_path / "state-moved")  # the instance lock goes with it
        state.write_text("not a folder")
        with pytest.raises(KernelStartFailed, match="starts no kernels"):
            await window.commands.request_start("python3")
        label = window.status.problem_label
        await wait_until(label.isVisible)
        assert str(state) in label.toolTip()
        assert "starts no kernels" in label.toolTip()
        assert window.kernel_map.list_kernels() == []
        assert any(str(state) in t for t in window.event_log.texts())
        assert state.read_text() == "not a folder", "nothing was deleted"
        # fixed: the warning goes by itself
        state.unlink()
        window.notices.state_recheck_timer.setInterval(50)
        await wait_until(lambda: not label.isVisible())
        assert window.event_log.texts()[0] == "kernelmon's state folder works again"
        window.request_quit()

    assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
    told = [text for title, text in shown if title == "kernelmon's state folder"]
    assert len(told) == 1, shown


def test_a_launch_that_cannot_check_for_another_kernelmon_does_not_start(
    tmp_path: Path,
) -> None:
    """The instance lock cannot be taken or checked (here: a file where the state folder
    should be): another kernelmon may be running, so this launch says why and stops."""
    env = own_env(tmp_path)
    (tmp_path / "state").write_text("in the way")
    launch = launch_kernelmon(env, timeout=20)
    assert launch.returncode == 1
    [sentence] = launch.stderr.splitlines()
    assert sentence.startswith("kernelmon does not start, because it cannot make sure")
    assert str(tmp_path / "state") in sentence


def test_the_only_kernelmon_that_cannot_serve_says_so_and_refuses_others(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: Any
) -> None:
    """The lock is held but the socket cannot be made (a file in its place): this kernelmon
    starts, saying so on stderr and in the window; another launch is refused."""
    from kernelmon.core.instance import SOCKET_NAME, instance_dir

    instance_dir().mkdir(parents=True, mode=0o700)
    (instance_dir() / SOCKET_NAME).write_text("in the way")
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda p, t, x: shown.append((t, x)))
    second: list[subprocess.CompletedProcess[str]] = []

    async def script(window: MainWindow) -> None:
        # in a thread: the window keeps the lock meanwhile
        second.append(await asyncio.to_thread(launch_kernelmon, dict(os.environ), 20))
        window.request_quit()

    assert drive_main(script, ["--root-dir", str(tmp_path), "--no-tray"]) == 0
    [text] = [x for t, x in shown if "launch" in t]
    assert "not a socket" in text
    assert f"kernelmon: {text}" in capfd.readouterr().err
    assert second[0].returncode == 1
    assert "cannot reach the running kernelmon" in second[0].stderr
    assert "Traceback" not in second[0].stderr


def test_a_second_launch_hands_over_to_the_running_one(tmp_path: Path) -> None:
    """A real second app process finds the first, hands it its options, has its window
    raised and exits 0 at once; the first applies the options and keeps the only kernels."""
    import json

    env = own_env(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "handover", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    pids: list[int] = []
    try:
        assert first.stdout is not None
        ready = first.stdout.readline()
        assert ready.startswith("READY "), ready + (first.stderr.read() if first.stderr else "")
        pids.append(json.loads(ready.removeprefix("READY "))["kernel"][1])
        # The command line acts through the running window (it holds the instance lock).
        listed = subprocess.run(
            [sys.executable, "-m", "kernelmon", "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        extra = tmp_path / "extra"
        extra.mkdir()
        second = subprocess.run(
            [sys.executable, "-m", "kernelmon", "--runtime-dir", "extra", "--no-tray"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,  # a relative folder is the second launch's, made absolute
        )
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        for pid in pids:
            if pid_alive(pid):
                psutil.Process(pid).kill()
    assert listed.returncode == 0, listed.stderr
    assert [k["pid"] for k in json.loads(listed.stdout)] == pids[:1]
    assert second.returncode == 0, second.stderr
    assert second.stderr == (
        f"kernelmon is already running (pid {first.pid}); its window was raised.\n"
    )
    assert first.returncode == 0, err[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    [handed] = [t for t in result["log"] if "handed over" in t]
    assert str(extra) in handed
    assert result["visible"]
    assert result["minimized_before"]
    assert not result["minimized"], "the window was raised"
    assert str(extra) in result["watched"]
    kid = result["kernel"][0]
    assert result["owned"] == [kid], "the second launch started no kernel"
    assert result["state_files"] == [
        next(n for n in result["state_files"] if n.startswith(f"kernels-{first.pid}-"))
    ], "one state file, the first's"
    assert not pids or not pid_alive(pids[0])


HUNG_INSTANCE = """
import sys
from kernelmon.core.instance import claim_instance
lock = claim_instance()
lock.mark_serving()  # says it serves, but its loop never answers
print("HELD", flush=True)
sys.stdin.read()
"""


def test_a_second_launch_never_starts_beside_a_hung_instance(tmp_path: Path) -> None:
    env = own_env(tmp_path)
    hung = subprocess.Popen(
        [sys.executable, "-c", HUNG_INSTANCE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert hung.stdout is not None
        assert hung.stdout.readline() == "HELD\n"
        second = launch_kernelmon(env)
    finally:
        hung.communicate(timeout=30)
    assert second.returncode == 1
    assert f"kernelmon is already running (pid {hung.pid}) but did not answer" in second.stderr
    assert "Traceback" not in second.stderr
    assert not list((tmp_path / "state").glob("kernels-*.json"))


QUITTING_INSTANCE = """
import asyncio, sys
from kernelmon.core.instance import InstanceServer, OpError, claim_instance

async def main():
    server = InstanceServer(claim_instance(), "0")
    asked = asyncio.Event()

    async def activate(request):
        asked.set()
        raise OpError("kernelmon is quitting", code="quitting")

    server.add_op("activate", activate)
    await server.start()
    print("SERVING", flush=True)
    await asked.wait()
    await asyncio.sleep(1.0)  # its kernels take a moment to shut down
    await server.close()
    print("GONE", flush=True)

asyncio.run(main())
"""


OPEN_AND_QUIT = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from kernelmon import app
from kernelmon.ui.main_window import MainWindow

def quit_once_open():
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
    if windows and windows[0].isVisible():
        print("OPENED", flush=True)
        windows[0].request_quit()
    else:
        QTimer.singleShot(100, quit_once_open)

qapp = QApplication([])
QTimer.singleShot(100, quit_once_open)
sys.exit(app.main(["--root-dir", sys.argv[1], "--no-tray"]))
"""


def test_a_launch_while_kernelmon_quits_starts_once_it_has_gone(tmp_path: Path) -> None:
    """The running kernelmon answers that it is quitting: the new launch waits for it to
    be gone, then starts (and takes over what it left)."""
    env = own_env(tmp_path)
    quitting = subprocess.Popen(
        [sys.executable, "-c", QUITTING_INSTANCE], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert quitting.stdout is not None
        assert quitting.stdout.readline() == "SERVING\n"
        launched = subprocess.run(
            [sys.executable, "-c", OPEN_AND_QUIT, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        out, _ = quitting.communicate(timeout=30)
    assert out == "GONE\n"
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert f"kernelmon (pid {quitting.pid}) is quitting" in launched.stderr
    assert launched.stdout == "OPENED\n", "it opened its window once the other had gone"


def test_in_tray_without_a_tray_shows_the_window(qapp: QApplication, tmp_path: Path) -> None:
    """``--in-tray`` (the login autostart's option) keeps the window hidden where a tray icon
    shows it (seen under a window manager with a tray); without a tray, as offscreen, the
    window is shown: kernelmon is never left running out of reach."""
    seen: list[tuple[bool, bool]] = []

    async def script(window: MainWindow) -> None:
        seen.append((window.tray is None, window.isVisible()))
        window.actions_by_name["quit"].trigger()

    assert drive_main(script, ["--root-dir", str(tmp_path), "--in-tray"]) == 0
    assert seen == [(True, True)]
