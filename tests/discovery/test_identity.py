"""kernelmon acts only on the process proven to be the kernel (docs/identity.md).

Real kernels started the way other tools do (``launcher.py``), real viewers of their files
(``tail -f``), real forked workers, a real positional wrapper kernel spec, a real temporary
connection file as nbclient writes, and kernelmon's own IPC kernel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from kernelmon.core.errors import KernelmonError
from kernelmon.core.machine import discovery
from kernelmon.core.machine.discovery import scan_runtime
from kernelmon.core.machine.identity import Proof, ipc_paths, is_local_address, prove_kernel
from kernelmon.core.machine.kernel_files import kernel_files, remove_kernel_files
from kernelmon.core.records import Origin
from tests.core.conftest import process_gone
from tests.discovery.conftest import interrupted_cell, own_processes
from tests.discovery.test_map_discovery import kill_application, moved
from tests.waiting import wait_until


@pytest.fixture
def spawned():
    """``spawn(*argv)`` starts a process whose parent exits at once (it is reparented, as a
    viewer started from a closed terminal is); all are killed afterwards."""
    pids: list[int] = []

    def spawn(*argv: str) -> int:
        out = subprocess.run(
            ["sh", "-c", '"$@" >/dev/null 2>&1 </dev/null & echo $!', "sh", *argv],
            capture_output=True,
            text=True,
            check=True,
        )
        pids.append(int(out.stdout))
        return pids[-1]

    yield spawn
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_viewer_of_a_dead_kernels_file_is_never_a_kernel(aio, kmap, launch, runtime, spawned):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    path = k["connection_file"]
    os.kill(k["pid"], signal.SIGKILL)
    aio.run(wait_until(lambda: process_gone(k["pid"]), what="the kernel gone"))
    viewer = spawned("tail", "-f", path)
    aio.run(wait_until(lambda: path in psutil.Process(viewer).cmdline(), what="tail running"))
    info = json.loads(Path(path).read_text())
    assert not prove_kernel(viewer, info)

    found = scan_runtime([runtime]).kernels[path]
    assert (found.origin, found.pid) == (Origin.STALE, None)

    # The culler, culling orphans and busy kernels, never takes the viewer for a kernel.
    before = kmap.settings
    kmap.apply_settings(
        dataclasses.replace(
            before, cull_idle_timeout=0.01, cull_interval=3600, cull_orphans=True, cull_busy=True
        )
    )
    try:
        aio.run(kmap.rescan())
        assert aio.run(kmap.cull_kernels()) == {}
        assert alive(viewer)
        assert os.path.exists(path)
        record = kmap.record(k["id"])
        assert (record.origin, record.pid) == (Origin.STALE, None)
    finally:
        kmap.apply_settings(before)


def test_a_kernel_with_forked_workers_is_found_and_interrupted_by_its_own_pid(
    aio, kmap, launch, runtime, frontends
):
    launched = moved(launch(1), runtime)
    k = launched.kernel()

    async def scenario() -> dict:
        front = frontends(k["connection_file"])
        await asyncio.sleep(0.3)  # the shell socket connects
        setup = front.execute(
            "import multiprocessing as mp\n"
            "pool = mp.get_context('fork').Pool(2)\n"
            "pool.map(abs, [1, 2])"
        )
        await wait_until(lambda: front.reply(setup) is not None, timeout=20, what="workers")
        workers = psutil.Process(k["pid"]).children()
        assert len(workers) >= 2
        assert workers[0].cmdline() == psutil.Process(k["pid"]).cmdline()

        found = scan_runtime([runtime]).kernels[k["connection_file"]]
        assert found.pid == k["pid"]
        await kmap.rescan()
        assert kmap.record(k["id"]).pid == k["pid"]

        return await interrupted_cell(kmap, k["id"], front)

    reply = aio.run(scenario())
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def test_a_positional_wrapper_kernel_follows_its_application(launch, tmp_path):
    spec = tmp_path / "jupyter" / "kernels" / "wrapped"
    spec.mkdir(parents=True)
    wrap = tmp_path / "wrap.sh"
    # no exec: bash stays the kernel's parent, as in many site wrappers
    wrap.write_text(f'#!/bin/bash\n"{sys.executable}" -m ipykernel_launcher -f "$1"\n')
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["bash", str(wrap), "{connection_file}"],
                "display_name": "Wrapped",
                "language": "python",
            }
        )
    )
    launched = launch(1, "wrapped", env={"JUPYTER_PATH": str(tmp_path / "jupyter")})
    k = launched.kernel()
    bash = psutil.Process(k["pid"])  # the launcher knows the wrapper's pid
    (kernel,) = bash.children()
    launched.pids.add(kernel.pid)

    scan = scan_runtime([launched.runtime])
    found = scan.kernels[k["connection_file"]]
    assert found.pid == kernel.pid
    assert (found.parent_pid, found.origin) == (launched.proc.pid, Origin.EXTERNAL)
    assert found.parent_app == "python launcher.py"

    kill_application(launched)
    again = scan_runtime([launched.runtime], previous=scan).kernels[k["connection_file"]]
    assert alive(bash.pid)  # the wrapper lives on
    assert again.pid == kernel.pid
    assert again.origin is Origin.ORPHAN


def test_a_kernel_with_a_temporary_connection_file_is_found(
    aio, kmap, launch, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERNELMON_SCAN_PROCESSES", "1")
    launched = launch(1, temp=True)
    k = launched.kernel()
    assert os.path.basename(k["connection_file"]).startswith("tmp")
    own_processes(monkeypatch, launched.proc.pid)

    found = scan_runtime([tmp_path]).kernels[k["connection_file"]]
    assert (found.pid, found.origin) == (k["pid"], Origin.EXTERNAL)
    assert found.parent_pid == launched.proc.pid
    aio.run(kmap.rescan())
    record = kmap.record(k["id"])
    assert (record.origin, record.pid) == (Origin.EXTERNAL, k["pid"])
    monkeypatch.setenv("KERNELMON_SCAN_PROCESSES", "0")
    aio.run(kmap.rescan())
    assert k["id"] not in kmap


def test_cleaning_a_stale_copy_leaves_a_live_ipc_kernel_reachable(aio, kmap, runtime, frontends):
    os.chmod(runtime, 0o775)  # an existing folder others may enter
    kid = aio.run(kmap.start_kernel())
    try:
        record = kmap.record(kid)
        assert record.transport == "ipc"
        original = Path(record.connection_file)
        info = json.loads(original.read_text())
        sockets = ipc_paths(info)
        # kernelmon's kernels are private: their folder, connection file and sockets
        assert runtime.stat().st_mode & 0o777 == 0o700
        assert stat.S_IMODE(original.stat().st_mode) == 0o600
        assert {stat.S_IMODE(os.stat(s).st_mode) for s in sockets} == {0o600}
        copy = runtime / "kernel-copy.json"
        shutil.copy(original, copy)
        aio.run(kmap.rescan())
        assert kmap.record("copy").origin == Origin.STALE

        aio.run(kmap.shutdown_kernel("copy"))  # the copy goes, the live sockets stay
        assert not copy.exists()
        assert all(os.path.exists(s) for s in sockets)
        # the live kernel's own file is in use: kernelmon leaves it
        assert kernel_files(str(original)).reason == f"process {record.pid} runs this kernel"

        async def answered() -> dict:
            front = frontends(str(original))
            msg_id = front.channels.send("shell", "kernel_info_request", {})
            await wait_until(lambda: front.reply(msg_id) is not None, what="kernel_info")
            return front.reply(msg_id)

        assert aio.run(answered())["content"]["status"] == "ok"
    finally:
        aio.run(kmap.shutdown_kernel(kid))
        with_copy = runtime / "kernel-copy.json"
        if with_copy.exists():
            with_copy.unlink()


def test_a_fifo_never_blocks_a_scan(tmp_path):
    fifo = tmp_path / "kernel-x.json"
    os.mkfifo(fifo)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(scan_runtime, [tmp_path])
        try:
            scan = future.result(timeout=10)
        finally:
            if not future.done():  # unblock the old code's open() so the test ends
                with open(fifo, "w"):
                    pass
    assert [(Path(p.path).name, p.message) for p in scan.problems] == [
        ("kernel-x.json", "is not a regular file")
    ]


def test_unusable_connection_files_are_problems_and_the_rest_works(
    aio, kmap, launch, runtime, spawned
):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    good = json.loads(Path(k["connection_file"]).read_text())
    bad = {
        "kernel-star.json": {**good, "ip": "*"},
        "kernel-nul.json": {**good, "ip": "127.0.0.1\x00x"},
        "kernel-badkey.json": {**good, "key": 12345},
        "kernel-scheme.json": {**good, "signature_scheme": "hmac-nosuchhash"},
        "kernel-remote.json": {**good, "ip": "192.0.2.1"},
    }
    for name, info in bad.items():
        (runtime / name).write_text(json.dumps(info))
        spawned("tail", "-f", str(runtime / name))  # a running process names each
    try:
        aio.run(kmap.rescan())
        assert kmap.record(k["id"]).origin == Origin.EXTERNAL
        problems = {Path(p.path).name: p.message for p in kmap.discovery_problems}
        assert set(bad) <= set(problems), problems
        assert "ip" in problems["kernel-star.json"]
        assert "ip" in problems["kernel-nul.json"]
        assert "key" in problems["kernel-badkey.json"]
        assert "signature" in problems["kernel-scheme.json"]
        assert "machine" in problems["kernel-remote.json"]
        for name in bad:
            assert name[len("kernel-") : -len(".json")] not in kmap
    finally:
        for name in bad:
            (runtime / name).unlink()


def test_an_unverifiable_kernel_is_never_signalled_nor_culled(
    aio, kmap, launch, runtime, frontends, monkeypatch
):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    kill_application(launched)  # an orphan: cullable, were it proven
    aio.run(kmap.rescan())
    assert kmap.record(k["id"]).origin == Origin.ORPHAN
    entry = kmap._kernels[k["id"]]
    # What a reused PID (or a stepped clock on a platform without boot ticks) looks like:
    # the process started at another time than the kernel kernelmon found.
    entry.backend.started_ticks = -1

    def no_signals(*args: object) -> None:
        raise AssertionError(f"a signal was sent: {args}")

    monkeypatch.setattr(os, "kill", no_signals)
    monkeypatch.setattr(os, "killpg", no_signals)

    # interrupted by message on the control channel
    reply = aio.run(interrupted_cell(kmap, k["id"], lambda: frontends(k["connection_file"])))
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    record = kmap.record(k["id"])
    assert "another process" in (record.identity_problem or "")
    assert record.to_model()["identity_problem"] == record.identity_problem

    before = kmap.settings
    kmap.apply_settings(
        dataclasses.replace(
            before, cull_idle_timeout=0.01, cull_interval=3600, cull_busy=True, cull_orphans=True
        )
    )
    try:
        assert aio.run(kmap.cull_kernels()) == {}
        with pytest.raises(KernelmonError, match="will not kill process"):
            aio.run(kmap.shutdown_kernel(k["id"], now=True))
        monkeypatch.undo()
        assert alive(k["pid"])
    finally:
        kmap.apply_settings(before)


def test_a_rescan_never_forgets_what_an_actions_proof_found(
    aio, kmap, launch, runtime, frontends, monkeypatch
):
    """A periodic scan proves the process it finds from scratch; it cannot prove the process
    an action just refused (another start time than the one proven the kernel) is the
    kernel, so the problem that proof found stays until a proof of that process succeeds."""
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    aio.run(kmap.rescan())
    entry = kmap._kernels[k["id"]]
    proven_ticks = entry.backend.started_ticks
    assert proven_ticks is not None
    entry.backend.started_ticks = -1  # as a reused PID looks (see the test above)
    monkeypatch.setattr(os, "kill", lambda *args: pytest.fail(f"a signal was sent: {args}"))
    reply = aio.run(interrupted_cell(kmap, k["id"], lambda: frontends(k["connection_file"])))
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    problem = kmap.record(k["id"]).identity_problem
    assert "another process" in (problem or "")

    aio.run(kmap.rescan())  # the sampler's scan, as under load it comes in between
    assert kmap.record(k["id"]).identity_problem == problem
    assert aio.run(kmap.cull_kernels()) == {}

    # A proof of the very process the backend acts on clears it: the next scan's.
    entry.backend.started_ticks = proven_ticks
    aio.run(kmap.rescan())
    assert kmap.record(k["id"]).identity_problem is None


#: User code that makes a kernel slow to exit after it has closed its sockets, as a slow
#: atexit handler or a loaded machine does: ipykernel's own clean-up (closing the sockets)
#: is done first, then the process lingers.
SLOW_EXIT = """
import atexit, time
from ipykernel.kernelapp import IPKernelApp

def _slow_exit():
    app = IPKernelApp.instance()
    app.close()
    app.close = lambda: None
    time.sleep(60)

atexit.register(_slow_exit)
"""


def test_a_proven_kernel_slow_to_exit_after_closing_its_sockets_is_still_stopped(
    aio, kmap, launch, runtime, frontends
):
    """A kernel answering ``shutdown_request`` closes its sockets before its process exits:
    it no longer holds them, but it is the process (same PID, same start ticks) proven the
    kernel when it was found, so the shutdown goes on to SIGTERM."""
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    aio.run(kmap.rescan())
    assert kmap.record(k["id"]).identity_problem is None

    async def install() -> dict:
        front = frontends(k["connection_file"])
        await asyncio.sleep(0.3)  # the shell socket connects
        msg_id = front.execute(SLOW_EXIT)
        await wait_until(lambda: front.reply(msg_id) is not None, timeout=10, what="reply")
        return front.reply(msg_id) or {}

    assert aio.run(install())["content"]["status"] == "ok"
    aio.run(kmap.shutdown_kernel(k["id"]))
    assert process_gone(k["pid"])
    assert k["id"] not in kmap or kmap.record(k["id"]).identity_problem is None


def test_only_a_dead_kernels_own_files_are_deleted(tmp_path):
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("chapter 1")
    assert kernel_files(str(thesis)).removable == ()
    folder, elsewhere = tmp_path / "rt", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    ports = {p: i + 1 for i, p in enumerate(("shell", "iopub", "stdin", "control", "hb"))}
    info = {f"{p}_port": n for p, n in ports.items()} | {"key": "k", "transport": "ipc"}

    def dead_socket(path: Path) -> None:  # a socket file nobody listens on any more
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()

    # A file naming sockets in another folder: only the file itself may go.
    for n in ports.values():
        dead_socket(elsewhere / f"k-ipc-{n}")
    forged = folder / "kernel-forged.json"
    forged.write_text(json.dumps({**info, "ip": str(elsewhere / "k-ipc")}))
    files = kernel_files(str(forged))
    assert files.removable == (str(forged),)
    assert len(files.kept) == 5
    # Its own dead sockets beside it go too; a regular file where a socket would be stays.
    for n in (1, 2, 3, 4):
        dead_socket(folder / f"kernel-dead-ipc-{n}")
    (folder / "kernel-dead-ipc-5").write_text("not a socket")
    dead = folder / "kernel-dead.json"
    dead.write_text(json.dumps({**info, "ip": str(folder / "kernel-dead-ipc")}))
    files = remove_kernel_files(str(dead))
    assert len(files.removable) == 5
    assert not dead.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["kernel-dead-ipc-5", "kernel-forged.json"]
    # A socket something listens on: a live server no process is proven to be the kernel
    # of (of this or another file): the file and its sockets stay.
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(folder / "kernel-live-ipc-1"))
    live.listen()
    try:
        path = folder / "kernel-live.json"
        path.write_text(json.dumps({**info, "ip": str(folder / "kernel-live-ipc")}))
        files = remove_kernel_files(str(path))
        assert files.removable == ()
        assert "no process could be proven to be its kernel" in (files.reason or "")
        assert path.exists()
        assert (folder / "kernel-live-ipc-1").exists()
    finally:
        live.close()


def test_the_ui_says_why_a_kernel_is_unverifiable():
    from kernelmon.ui.details_pane import fact_text
    from kernelmon.ui.figures import origin_tooltip

    model = {"origin": "external", "identity_problem": "Process 5 has exited."}
    assert "Unverifiable: Process 5 has exited." in origin_tooltip(model)
    assert "unverifiable" in fact_text("origin", model)


#: A kernel that gets its connection file from the environment (its arguments name none).
KERNEL_FROM_ENV = (
    "import os\n"
    "from ipykernel.kernelapp import IPKernelApp\n"
    "IPKernelApp.launch_instance(argv=['-f', os.environ['CONN']])\n"
)


@pytest.fixture(scope="module")
def env_kernel(tmp_path_factory, runtime):
    """A live kernel started through a wrapper that names its connection file but hands it
    to the kernel in an environment variable (``bash -c '...' FILE``, no exec: bash stays
    its parent); the file is in the map's runtime folder. Yields (wrapper, kernel, file)."""
    from jupyter_client.connect import write_connection_file

    folder = tmp_path_factory.mktemp("env-kernel")
    script = folder / "kernel_from_env.py"
    script.write_text(KERNEL_FROM_ENV)
    path = runtime / "kernel-from-env.json"
    write_connection_file(str(path), ip="127.0.0.1", key=b"secret-key")
    wrapper = subprocess.Popen(
        ["bash", "-c", 'CONN="$0" "$1" "$2"; true', str(path), sys.executable, str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
    )
    info = json.loads(path.read_text())
    kernel = None
    try:
        for _ in range(300):  # until the kernel holds its sockets
            children = psutil.Process(wrapper.pid).children()
            if children and prove_kernel(children[0].pid, info):
                kernel = children[0].pid
                break
            time.sleep(0.1)
        assert kernel is not None, "the kernel did not start"
        yield wrapper, kernel, path
    finally:
        for pid in (wrapper.pid, kernel):
            with contextlib.suppress(psutil.Error, TypeError):
                psutil.Process(pid).kill()
        wrapper.wait(5)
        path.unlink(missing_ok=True)


def test_a_kernel_handed_its_file_by_a_wrapper_is_found_and_never_stale(aio, kmap, env_kernel):
    wrapper, kernel, path = env_kernel
    assert str(path) not in " ".join(psutil.Process(kernel).cmdline())
    # The wrapper names the file; the kernel below it holds the sockets: it is proven.
    scan = scan_runtime([path.parent])
    found = scan.kernels[str(path)]
    assert (found.pid, found.identity_problem) == (kernel, None)
    assert found.origin is not Origin.STALE
    assert kernel_files(str(path)).reason == f"process {kernel} runs this kernel"
    aio.run(kmap.rescan())
    assert kmap.record("from-env").pid == kernel

    # Without the wrapper nothing names the file: the live kernel cannot be proven. It is
    # listed as unverifiable, with the reason, never stale, and its file is kept.
    os.kill(wrapper.pid, signal.SIGKILL)
    wrapper.wait(5)
    assert alive(kernel)
    found = scan_runtime([path.parent], previous=scan).kernels[str(path)]
    assert (found.origin, found.pid) == (Origin.EXTERNAL, None)
    assert "no process could be proven to be its kernel" in (found.identity_problem or "")
    files = remove_kernel_files(str(path))
    assert files.removable == ()
    assert "no process could be proven" in (files.reason or "")
    assert path.exists()
    aio.run(kmap.rescan())
    record = kmap.record("from-env")
    assert (record.origin, record.pid) == (Origin.EXTERNAL, None)
    assert "no process could be proven" in (record.identity_problem or "")
    assert aio.run(kmap.cull_kernels()) == {}
    assert alive(kernel)

    # A copy of the unverifiable kernel's file is served by a process that is not proven
    # to be another file's kernel: it is kept too.
    copy = path.parent / "kernel-copy-of-unproven.json"
    shutil.copy(path, copy)
    try:
        assert "no process could be proven" in (kernel_files(str(copy)).reason or "")
    finally:
        copy.unlink()


def test_a_stale_copy_of_a_live_tcp_kernels_file_elsewhere_is_removable(launch, tmp_path):
    """A real stale copy of a live kernel's file, whose server is proven the kernel of a
    different file (the launcher's kernel names its own), is still removable."""
    launched = launch(1)
    k = launched.kernel()
    copy = tmp_path / "kernel-copy.json"
    shutil.copy(k["connection_file"], copy)
    found = scan_runtime([tmp_path]).kernels[str(copy)]
    assert (found.origin, found.identity_problem) == (Origin.STALE, None)
    files = remove_kernel_files(str(copy))
    assert files.removable == (str(copy),)
    assert not copy.exists()
    assert kernel_files(k["connection_file"]).reason == f"process {k['pid']} runs this kernel"


def test_a_kernel_listening_on_a_host_name_is_watched_without_blocking_the_loop(
    aio, kmap, runtime, monkeypatch
):
    host = socket.gethostname()
    try:
        addresses = {str(i[4][0]) for i in socket.getaddrinfo(host, None)}
    except OSError:
        addresses = set()
    mine = {a.address for nic in psutil.net_if_addrs().values() for a in nic}
    local = all(ipaddress.ip_address(a).is_loopback or a in mine for a in addresses)
    if not addresses or not local:
        pytest.skip(f"this machine's name {host!r} does not resolve to its own addresses")
    path = runtime / "kernel-hostname.json"
    # as ``ipykernel --ip=$(hostname)`` starts it (jupyter_client refuses to launch on a name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipykernel_launcher", f"--ip={host}", "-f", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def proven() -> bool:
            try:  # the kernel may be writing its file right now
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                return False
            return bool(prove_kernel(proc.pid, info))

        aio.run(wait_until(proven, timeout=30, what="the kernel listening"))
        assert json.loads(path.read_text())["ip"] == host
        found = scan_runtime([runtime]).kernels.get(str(path))
        assert found is not None
        assert (found.pid, found.origin) == (proc.pid, Origin.EXTERNAL)

        # The map watches it; its file's address is checked (resolved) only off the loop.
        checked_on: list[str] = []
        check = discovery.is_local_address

        def recording(ip: str, *args: object) -> bool:
            if ip == host:
                checked_on.append(threading.current_thread().name)
            return check(ip, *args)

        monkeypatch.setattr(discovery, "is_local_address", recording)
        aio.run(kmap.rescan())
        record = kmap.record("hostname")
        assert (record.origin, record.pid) == (Origin.EXTERNAL, proc.pid)
        assert str(path) not in {p.path for p in kmap.discovery_problems}
        assert checked_on
        assert threading.main_thread().name not in checked_on
    finally:
        proc.kill()
        proc.wait(5)
        path.unlink(missing_ok=True)
        aio.run(kmap.rescan())


def test_a_host_name_that_does_not_resolve_in_time_is_not_local(monkeypatch):
    """A resolver that hangs (a fake: a real one cannot be made to hang on cue)."""
    release = threading.Event()
    lookups: list[str] = []

    def hanging(host: str, *args: object, **kwargs: object) -> list:
        lookups.append(host)
        release.wait(30)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        assert not is_local_address("hangs.invalid", timeout=0.2)
        assert not is_local_address("hangs.invalid", timeout=0.2)
        assert lookups.count("hangs.invalid") == 1  # a hung lookup is not started again
    finally:
        release.set()


def test_a_proof_that_succeeds_always_names_its_process():
    with pytest.raises(ValueError, match="names the proven process"):
        Proof(True, None)
