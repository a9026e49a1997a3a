"""Kernels other applications started, in the window: a real kernel started by a separate
launcher process (``tests/discovery/launcher.py``), found in its runtime folder; a stale
connection file; resource figures, plots and the details pane from real samples."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEventLoop, Qt

from kernelmon.core import KernelMap, Settings
from kernelmon.ui import dialogs
from kernelmon.ui.kernel_table import Column
from kernelmon.ui.main_window import MainWindow
from tests.discovery.conftest import Launched, launch, own_processes  # noqa: F401  (a fixture)

from .conftest import QtLoop, another_window, cell, closed_after, pid_alive, state_of, wait_until


@pytest.fixture(scope="module")
def launched(launch: Any) -> Launched:  # noqa: F811
    """One kernel another application (the launcher) started and still runs."""
    return launch(1)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def kernel_map(qloop: QtLoop, ui_root: Path, launched: Launched) -> Iterator[KernelMap]:
    """Watching only the launcher's runtime folder, sampling quickly."""
    settings = Settings(root_dir=str(ui_root), kernel_info_timeout=30, sample_interval=0.3)
    with closed_after(qloop, KernelMap(settings, runtime_dirs=[str(launched.runtime)])) as km:
        yield km


@pytest.fixture(scope="module")
def kids(qloop: QtLoop, window: MainWindow, launched: Launched) -> dict[str, str]:
    """Monitoring started (as the app does after restoring); one kernel of kernelmon's own
    and the launcher's kernel, both idle in the table."""
    external = launched.kernel()["id"]

    async def go() -> dict[str, str]:
        owned = str(await window.commands.request_start("python3"))
        await window.commands.start_monitoring()
        await wait_until(lambda: window.table_model.kernel_model(external) is not None)
        await wait_until(lambda: state_of(window, owned) == "idle")
        return {"owned": owned, "external": external}

    return qloop.run(go())


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every confirmation, with its options; answered by ``answers`` (default yes)."""
    seen: list[dict[str, Any]] = []

    def confirm(parent: Any, title: str, text: str, **kw: Any) -> tuple[bool, bool]:
        seen.append({"title": title, "text": text, **kw})
        return bool(seen[-1].get("answer", ANSWERS[0])), False

    monkeypatch.setattr(dialogs, "confirm", confirm)
    monkeypatch.setattr(dialogs, "show_error", lambda *a: None)
    return seen


ANSWERS = [True]


def test_the_external_kernel_is_shown_with_its_owner(
    window: MainWindow, kids: dict[str, str], launched: Launched
) -> None:
    ext = kids["external"]
    model = window.table_model.kernel_model(ext)
    assert model is not None
    assert model["origin"] == "external"
    assert model["parent_pid"] == launched.proc.pid
    assert cell(window, ext, Column.ORIGIN) == "external"
    tip = cell(window, ext, Column.ORIGIN, Qt.ItemDataRole.ToolTipRole)
    assert f"(pid {launched.proc.pid}), running" in tip
    assert cell(window, kids["owned"], Column.ORIGIN) == "owned"
    assert cell(window, ext, Column.KERNEL, Qt.ItemDataRole.FontRole).italic()
    assert "1 of other applications" in window.status.counts_label.text()


def test_usage_columns_fill_in_from_real_samples(
    qloop: QtLoop, window: MainWindow, kids: dict[str, str]
) -> None:
    async def go() -> None:
        for kid in kids.values():
            await wait_until(lambda k=kid: cell(window, k, Column.CPU) != "")
            await wait_until(lambda k=kid: "MiB" in cell(window, k, Column.MEMORY))
            await wait_until(lambda k=kid: cell(window, k, Column.MESSAGE_RATE) != "")

    qloop.run(go())
    for kid in kids.values():
        _cpu, rss, _rate = window.table_model.index(
            window.table_model.row_of(kid), Column.USAGE
        ).data(Qt.ItemDataRole.UserRole + 2)
        assert rss, "the sparkline has a memory history"
        assert "PSS" in cell(window, kid, Column.MEMORY, Qt.ItemDataRole.ToolTipRole)
    # sorting by memory follows the numbers
    window.table.sortByColumn(Column.MEMORY, Qt.SortOrder.DescendingOrder)
    proxy = window.proxy
    values = [proxy.index(r, Column.MEMORY).data(Qt.ItemDataRole.UserRole) for r in range(2)]
    assert values == sorted(values, reverse=True)
    window.table.sortByColumn(Column.KERNEL, Qt.SortOrder.AscendingOrder)
    assert window.status.usage_label.isVisibleTo(window.status)
    assert "Memory" in window.status.usage_label.text()
    assert window.status.total_rss > 0
    assert not window.table.grab().isNull(), "the table with sparklines paints"


def test_sampling_survives_qt_events_processed_outside_the_loop(
    qapp: Any, qloop: QtLoop, kernel_map: KernelMap, kids: dict[str, str], caplog: Any
) -> None:
    """qasync's ``run_until_complete`` processes the Qt events once more after its run has
    ended, with no running loop: a sampler tick due then (or a worker thread's result it
    waits for) went on outside the loop, failed with "no running event loop" and ended the
    sampler's task, whose error ``close()`` then raised (this module's teardown, now and
    then). Done here on purpose: ticks are due in some of these passes."""
    dispatcher = qapp.eventDispatcher()
    interval = kernel_map.settings.sample_interval
    with caplog.at_level(logging.ERROR, logger="kernelmon"):
        for pause in (0.05, interval / 2, interval):
            qloop.sleep(pause)  # a tick may be under way
            time.sleep(interval + 0.1)  # the next tick or a thread's result is due
            for _ in range(5):
                dispatcher.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        qloop.sleep(interval * 2)
    assert kernel_map.monitoring, "the sampler's task still runs"
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("kernelmon")]


def test_details_pane_shows_the_selected_kernel_and_updates(
    qloop: QtLoop, window: MainWindow, kids: dict[str, str], launched: Launched
) -> None:
    ext = kids["external"]
    window.select_kernel(ext)
    details = window.details
    assert details.kernel_id == ext
    facts = {name: label.text() for name, label in details.facts.items()}
    assert facts["origin"] == "another application started this kernel and still runs"
    assert f"(pid {launched.proc.pid}), running" in facts["parent"]
    assert facts["connection_file"] == launched.kernel()["connection_file"]
    assert facts["transport"] == "tcp"
    assert facts["ip"] == "127.0.0.1"
    assert facts["ports"].startswith("shell ")
    assert "hb " in facts["ports"]
    assert facts["pid"] == str(launched.kernel()["pid"])
    assert facts["restarts"] == "0"
    assert facts["started"] != "unknown"

    async def more_samples() -> None:
        await wait_until(lambda: len(details.memory_plot.points) >= 2)
        n = len(details.memory_plot.points)
        await wait_until(lambda: len(details.memory_plot.points) > n)  # live on ticks
        await wait_until(lambda: bool(details.cpu_plot.points))

    qloop.run(more_samples())
    assert "MiB" in details.memory_plot.current_text()
    assert details.cpu_plot.current_text().endswith("%")
    # the process tree: the kernel first, with its name and memory
    count, first = details.facts["processes"].text().splitlines()[:2]
    assert int(count) >= 1
    assert first.startswith(f"{launched.kernel()['pid']} python")
    assert first.endswith("MiB)")
    assert not details.grab().isNull()
    # the owned kernel: kernelmon started it
    window.select_kernel(kids["owned"])
    assert details.facts["parent"].text() == "kernelmon"
    assert details.kernel_id == kids["owned"]
    window.table.clearSelection()
    assert details.kernel_id is None
    assert "Select a kernel" in details.title.text()


def test_details_pane_is_toggled_and_remembered(
    window: MainWindow, kernel_map: KernelMap, tmp_path: Path
) -> None:
    toggle = window.actions_by_name["side_panel"]  # the whole side panel, details with it
    assert toggle.shortcut().toString() == "Ctrl+D"
    assert toggle in window.menuBar().actions()[2].menu().actions()
    visible = window.details_dock.isVisible()
    toggle.trigger()
    assert window.details_dock.isVisible() != visible
    window.save_window_state()
    with another_window(
        kernel_map, tmp_path / "settings.json", window_state_path=window.window_state.fileName()
    ) as other:
        other.show()
        assert other.details_dock.isVisible() == window.details_dock.isVisible()
    toggle.trigger()
    assert window.details_dock.isVisible() == visible


def test_restart_is_disabled_for_the_external_kernel(
    window: MainWindow, kids: dict[str, str], launched: Launched, asked: list[dict[str, Any]]
) -> None:
    ext = kids["external"]
    restart = window.actions_by_name["restart"]
    window.select_kernel(ext)
    # the core's own sentence (its backend's), not one of the UI's
    why = window.store.get(ext)["refusals"]["restart"]
    assert why
    assert not restart.isEnabled()
    assert why in restart.toolTip()
    assert window.actions_by_name["interrupt"].isEnabled()
    assert window.actions_by_name["shutdown"].isEnabled()
    assert not window.actions_by_name["cleanup"].isEnabled()
    assert window.commands.request_restart([ext]) == []
    assert asked == [], "nothing to ask: nothing is restarted"
    assert "Not restarting" in window.status.currentMessage()
    assert why in window.status.currentMessage()
    # with kernelmon's own kernel selected too, restart acts on that one only
    window.select_kernels([ext, kids["owned"]])
    assert restart.isEnabled()
    assert "left alone" in restart.toolTip()
    window.select_kernel(kids["owned"])
    assert restart.isEnabled()
    assert why not in restart.toolTip()
    # the tray's menu agrees
    tray = window.create_tray()
    try:
        tray.rebuild_menu()
        assert not tray.find_action("restart", ext).isEnabled()
        assert tray.find_action("restart", ext).toolTip() == why
        assert tray.find_action("restart", kids["owned"]).isEnabled()
    finally:
        tray.deleteLater()


def test_interrupting_the_external_kernel_warns_naming_its_owner(
    qloop: QtLoop,
    window: MainWindow,
    kids: dict[str, str],
    launched: Launched,
    asked: list[dict[str, Any]],
) -> None:
    ext = kids["external"]
    # "don't ask again" for kernelmon's own kernels does not cover other applications'
    window.window_state.setValue("dont_ask/shutdown", "true")
    window.window_state.setValue("dont_ask/interrupt", "true")
    window.select_kernel(ext)

    async def go() -> None:
        window.actions_by_name["interrupt"].trigger()
        await wait_until(lambda: "interrupted" in window.event_log.texts())

    qloop.run(go())
    (question,) = asked
    assert question["can_skip"] is False
    assert question["warning"] is True
    assert f"(pid {launched.proc.pid}) owns this kernel; interrupting it" in question["text"]
    assert question["ok_text"] == "Interrupt"
    # owned kernels are interrupted without a question, as before
    asked.clear()

    async def owned() -> None:
        (task,) = window.commands.request_interrupt([kids["owned"]])
        await task

    qloop.run(owned())
    assert asked == []


def test_shutting_the_external_kernel_down_warns_and_can_be_cancelled(
    window: MainWindow, kids: dict[str, str], launched: Launched, asked: list[dict[str, Any]]
) -> None:
    ext = kids["external"]
    window.window_state.setValue("dont_ask/shutdown", "true")
    ANSWERS[0] = False
    try:
        assert window.commands.request_shutdown([ext]) == []
    finally:
        ANSWERS[0] = True
    (question,) = asked
    assert question["can_skip"] is False
    assert (
        f"(pid {launched.proc.pid}) owns this kernel; shutting it down may lose its work"
        in (question["text"])
    )
    assert ext in window.kernel_map
    assert pid_alive(launched.kernel()["pid"])


def test_a_mixed_selection_is_shut_down_only_after_the_warning(
    window: MainWindow, kids: dict[str, str], asked: list[dict[str, Any]]
) -> None:
    # "don't ask again" was chosen for kernelmon's own kernels: only the warning is asked
    window.window_state.setValue("dont_ask/shutdown", "true")
    ANSWERS[0] = False
    try:
        assert window.commands.request_shutdown([kids["owned"], kids["external"]]) == []
    finally:
        ANSWERS[0] = True
        window.window_state.remove("dont_ask/shutdown")
    assert [q["title"] for q in asked] == ["Shut down another application's kernel"]
    assert all(k in window.kernel_map for k in kids.values()), "cancelled: nothing shut down"


def test_in_the_default_configuration_a_temporary_file_kernel_is_shown(
    qloop: QtLoop,
    window: MainWindow,
    kids: dict[str, str],
    launched: Launched,
    launch: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app finds kernels through the process table by default (the suite turns that
    off): a kernel whose connection file is a temporary file outside every runtime folder,
    as nbclient and papermill make, is shown. Only the test's own processes are visible."""
    monkeypatch.delenv("KERNELMON_SCAN_PROCESSES")
    temp = launch(1, temp=True)
    k = temp.kernel()
    own_processes(monkeypatch, temp.proc.pid, launched.proc.pid, *launched.pids)
    qloop.run(window.kernel_map.rescan())
    qloop.run(wait_until(lambda: window.table_model.kernel_model(k["id"]) is not None))
    model = window.table_model.kernel_model(k["id"])
    assert model is not None
    assert (model["origin"], model["pid"]) == ("external", k["pid"])
    assert cell(window, k["id"], Column.ORIGIN) == "external"
    assert window.table_model.kernel_model(kids["external"])["pid"] == launched.kernel()["pid"]
    monkeypatch.setenv("KERNELMON_SCAN_PROCESSES", "0")
    qloop.run(window.kernel_map.rescan())
    qloop.run(wait_until(lambda: window.table_model.kernel_model(k["id"]) is None))


def stale_copy(qloop: QtLoop, window: MainWindow, launched: Launched) -> tuple[str, Path]:
    """A copy of the launched kernel's connection file under another kernel id (no process
    of its own: a stale kernel), found by a rescan; its id and path."""
    stale = str(uuid.uuid4())
    path = launched.runtime / f"kernel-{stale}.json"
    path.write_text(Path(launched.kernel()["connection_file"]).read_text())

    async def found() -> None:
        await window.commands.request_rescan()
        await wait_until(lambda: window.table_model.kernel_model(stale) is not None)

    qloop.run(found())
    return stale, path


def test_a_stale_connection_file_can_only_be_cleaned_up(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kids: dict[str, str],
    launched: Launched,
    asked: list[dict[str, Any]],
) -> None:
    stale, path = stale_copy(qloop, window, launched)
    assert cell(window, stale, Column.ORIGIN) == "stale"
    assert cell(window, stale, Column.STATE) == "dead"
    assert "1 stale" in window.status.counts_label.text()
    window.select_kernel(stale)
    acts = window.actions_by_name
    assert acts["cleanup"].isEnabled()
    assert not acts["restart"].isEnabled()
    refusals = window.store.get(stale)["refusals"]
    assert refusals["restart"] in acts["restart"].toolTip()
    assert not acts["interrupt"].isEnabled()
    assert not acts["console"].isEnabled()
    assert acts["cleanup"] in window.build_context_menu().actions()
    assert window.details.facts["connection_file"].text() == str(path)
    tray = window.create_tray()
    try:
        tray.rebuild_menu()
        assert tray.find_action("cleanup", stale).text() == "Clean up connection file"
        console = tray.find_action("console", stale)
        assert not console.isEnabled(), "no process: nothing a console could talk to"
        assert console.toolTip() == refusals["connect"]
        assert tray.find_action("console", kids["external"]).isEnabled()
        with pytest.raises(LookupError):
            tray.find_action("restart", stale)
    finally:
        tray.deleteLater()

    async def clean() -> None:
        acts["cleanup"].trigger()
        await wait_until(lambda: stale not in kernel_map)

    qloop.run(clean())
    assert not path.exists()
    assert asked[-1]["title"] == "Clean up connection files"
    assert str(path) in asked[-1]["text"]
    assert window.table_model.row_of(stale) == -1
    assert kids["external"] in kernel_map, "the live kernel with the same ports is untouched"


def test_shut_down_all_leaves_other_applications_kernels(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kids: dict[str, str],
    launched: Launched,
    asked: list[dict[str, Any]],
) -> None:
    owned, ext = kids["owned"], kids["external"]
    owned_pid = kernel_map.kernel_model(owned)["pid"]
    # a stale connection file too: no process, so not a kernel that "keeps running"
    _, path = stale_copy(qloop, window, launched)
    assert window.store.owned_ids() == [owned]
    assert window.actions_by_name["shutdown_all"].isEnabled()

    async def shut_down_all() -> None:
        window.actions_by_name["shutdown_all"].trigger()
        await wait_until(lambda: owned not in kernel_map, timeout=30)
        await wait_until(lambda: not pid_alive(owned_pid), timeout=15)

    try:
        qloop.run(shut_down_all())
    finally:
        path.unlink()
    (question,) = asked
    assert question["title"] == "Shut down all kernels"
    assert "Shut down the kernel kernelmon started?" in question["text"]
    assert "The 1 kernel other applications started keeps running." in question["text"]
    assert ext in kernel_map
    assert pid_alive(launched.kernel()["pid"])
    assert not window.store.owned_ids()
    qloop.run(wait_until(lambda: not window.actions_by_name["shutdown_all"].isEnabled()))


def test_quitting_and_shutting_down_leaves_other_applications_kernels(
    qloop: QtLoop,
    ui_root: Path,
    kids: dict[str, str],
    launched: Launched,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A second kernelmon over the same runtime folder, with a kernel of its own, quits
    choosing "Shut down": its own kernel is gone, the other application's still runs."""
    ext = kids["external"]
    quit_asked: list[int] = []

    def ask_quit(parent: Any, running: int) -> dialogs.QuitChoice:
        quit_asked.append(running)
        return dialogs.QuitChoice.SHUT_DOWN

    monkeypatch.setattr(dialogs, "ask_quit", ask_quit)
    km = KernelMap(
        Settings(root_dir=str(ui_root), kernel_info_timeout=30, sample_interval=0.3),
        runtime_dirs=[str(launched.runtime)],
    )
    other = MainWindow(
        km,
        use_tray=False,
        settings_path=tmp_path / "settings.json",
        window_state_path=tmp_path / "window.ini",
    )
    try:
        other.show()

        async def started() -> str:
            owned = str(await other.commands.request_start("python3"))
            await other.commands.start_monitoring()
            await wait_until(lambda: other.table_model.kernel_model(ext) is not None)
            return owned

        owned = qloop.run(started())
        owned_pid = km.kernel_model(owned)["pid"]
        assert pid_alive(owned_pid)

        async def quit_and_shut_down() -> None:
            other.actions_by_name["quit"].trigger()
            await other.wait_finished()

        qloop.run(quit_and_shut_down(), timeout=90)
    finally:
        qloop.run(km.close())
        other.deleteLater()
    assert quit_asked == [1], "asked about kernelmon's own kernel only"
    assert not pid_alive(owned_pid)
    assert pid_alive(launched.kernel()["pid"])


def test_leaving_kernels_running_counts_only_kernelmons_own(
    qloop: QtLoop,
    ui_root: Path,
    kids: dict[str, str],
    launched: Launched,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quitting with kernels left running logs how many of kernelmon's own it left (none
    here): another application's kernel is not one of them."""
    km = KernelMap(Settings(root_dir=str(ui_root)), runtime_dirs=[str(launched.runtime)])
    other = MainWindow(
        km,
        use_tray=False,
        settings_path=tmp_path / "settings.json",
        window_state_path=tmp_path / "window.ini",
    )
    real_close = km.close
    closed: list[bool] = []

    async def close(shutdown_kernels: bool = True) -> None:
        closed.append(shutdown_kernels)  # the real close comes below, shutting nothing

    monkeypatch.setattr(km, "close", close)
    caplog.set_level("INFO", logger="kernelmon.ui.main_window")
    try:

        async def go() -> None:
            await other.commands.start_monitoring()
            await wait_until(lambda: other.table_model.kernel_model(kids["external"]) is not None)
            other.quit_without_asking(False)
            await other.wait_finished()

        qloop.run(go())
    finally:
        qloop.run(real_close())
        other.deleteLater()
    assert closed == [False]
    assert "Left 0 kernels running" in caplog.text
    assert pid_alive(launched.kernel()["pid"])


def test_shutting_the_external_kernel_down_after_the_warning(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kids: dict[str, str],
    launched: Launched,
    asked: list[dict[str, Any]],
) -> None:
    ext = kids["external"]
    pid = launched.kernel()["pid"]
    window.select_kernel(ext)

    def gone_or_stale() -> bool:
        # The launcher keeps the connection file: the next scan may show the id again, as
        # a stale file (no process) this time.
        model = window.table_model.kernel_model(ext)
        return model is None or model.get("origin") == "stale"

    async def go() -> None:
        window.actions_by_name["shutdown"].trigger()
        await wait_until(lambda: not pid_alive(pid), timeout=30)
        await wait_until(gone_or_stale, timeout=15)

    qloop.run(go())
    assert [q["can_skip"] for q in asked] == [False], "only the warning, no owned question"
    assert gone_or_stale()
    assert not pid_alive(pid)
    # the details show what is left of it (a stale file), or another kernel: never a ghost
    assert window.details.kernel_id != ext or window.store.get(ext) is not None
