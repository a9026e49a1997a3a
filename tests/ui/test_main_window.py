"""The main window with real kernels: start via the dialog, floods, restart, shut down,
the culler panel, the status bar and the event log."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialogButtonBox

from kernelmon.core import KernelMap, Settings
from kernelmon.settings_file import load_settings
from kernelmon.ui.kernel_table import Column
from kernelmon.ui.main_window import MainWindow

from .conftest import LoopLagMeter, QtLoop, another_window, pid_alive, state_of, wait_until


def start_via_dialog(window: MainWindow, folder: str = "") -> Any:
    window.actions_by_name["start"].trigger()
    dialog = window.start_dialog
    assert dialog is not None
    assert dialog.isVisible()
    index = dialog.spec_box.findData("python3")
    assert index >= 0, "the python3 spec is listed by its display name"
    dialog.spec_box.setCurrentIndex(index)
    assert "Python" in dialog.spec_box.currentText()
    dialog.folder_edit.setText(folder)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    return dialog


@pytest.fixture(scope="module")
def kid(qloop: QtLoop, window: MainWindow, kernel_map: KernelMap) -> str:
    """One kernel started through the dialog, shared by the tests of this module."""

    async def go() -> str:
        start_via_dialog(window, "project")
        await wait_until(lambda: window.table_model.rowCount() == 1)
        (kid,) = window.table_model.kernel_ids()
        await wait_until(lambda: window.table_model.kernel_model(kid)["execution_state"] == "idle")
        return kid

    return qloop.run(go())


def test_start_dialog_adds_a_row_that_reaches_idle(
    kid: str, window: MainWindow, kernel_map: KernelMap, ui_root: Path
) -> None:
    model = window.table_model
    row = model.row_of(kid)
    assert model.index(row, Column.STATE).data() == "idle"
    assert model.index(row, Column.CWD).data() == str(ui_root / "project")
    assert model.index(row, Column.KERNEL).data() == "project", "what it is for: its folder"
    spec = kernel_map.kernel_specs()["python3"]["display_name"]
    assert spec in model.index(row, Column.KERNEL).data(Qt.ItemDataRole.ToolTipRole)
    assert pid_alive(kernel_map.kernel_model(kid)["pid"])
    logo = model.index(row, Column.KERNEL).data(Qt.ItemDataRole.DecorationRole)
    assert logo is not None, "the python3 spec's logo is shown"
    assert not logo.isNull()
    assert any("started" in t for t in window.event_log.texts())
    window.select_kernel(kid)
    window.actions_by_name["copy_id"].trigger()
    assert QGuiApplication.clipboard().text() == kid
    assert window.status.counts_label.text().startswith("1 running")
    assert window.status.activity_label.text().startswith("Last activity")


def test_start_dialog_refuses_a_folder_outside_the_root(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap
) -> None:
    async def go() -> None:
        dialog = start_via_dialog(window, "../elsewhere")
        assert dialog.isVisible(), "the dialog stays open"
        assert "leaves the root folder" in dialog.error_label.text()
        dialog.reject()
        await wait_until(lambda: window.start_dialog is None)

    n = len(kernel_map)
    qloop.run(go())
    assert len(kernel_map) == n


def test_flood_shows_busy_then_idle_without_freezing(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str
) -> None:
    states: list[str] = []
    window.bridge.kernel_changed.connect(lambda k, m, f: states.append(m["execution_state"]))
    meter = LoopLagMeter()

    async def go() -> None:
        conn = await kernel_map.connect(kid, "flood", lambda ch, msg: None)
        meter.start()
        conn.execute("for i in range(20000): print(i, flush=True)")
        await wait_until(lambda: "busy" in states, timeout=30)
        await wait_until(lambda: state_of(window, kid) == "idle", timeout=60)
        meter.stop()
        await conn.close()

    qloop.run(go())
    assert states.index("busy") < len(states) - 1 - states[::-1].index("idle")
    assert kernel_map.kernel_model(kid)["messages"] > 1000
    gaps = meter.gaps
    assert len(gaps) > 10
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.3f} s"


def test_restart_asks_then_restarts(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str, no_dialogs: Any
) -> None:
    old_pid = kernel_map.kernel_model(kid)["pid"]
    window.select_kernel(kid)
    assert window.table.selected_kernel_id() == kid

    async def go() -> None:
        window.actions_by_name["restart"].trigger()
        assert no_dialogs["confirm"]
        assert "Restart" in no_dialogs["confirm"][0][0]
        assert window.progress.isVisibleTo(window), "progress shows while restarting"
        assert not window.actions_by_name["restart"].isEnabled()
        await wait_until(lambda: kernel_map.kernel_model(kid)["restarts"] == 1, timeout=40)
        await wait_until(lambda: not window.progress.isVisibleTo(window))

    qloop.run(go())
    assert kernel_map.kernel_model(kid)["pid"] != old_pid
    assert state_of(window, kid) == "idle"
    assert window.table.selected_kernel_id() == kid, "the selection survived the restart"
    assert any(t == "restarted" for t in window.event_log.texts())
    assert "answers again" in window.status.currentMessage()


def test_refused_confirmation_does_nothing(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kid: str,
    no_dialogs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernelmon.ui import dialogs

    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: (False, False))
    window.select_kernel(kid)
    restarts = kernel_map.kernel_model(kid)["restarts"]
    assert window.commands.request_restart([kid]) == []
    assert window.commands.request_shutdown([kid]) == []
    qloop.sleep(0.1)
    assert kid in kernel_map
    assert kernel_map.kernel_model(kid)["restarts"] == restarts


def test_restart_failure_is_shown_in_words(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kid: str,
    no_dialogs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernelmon.core import RestartTimeout

    async def fail(kernel_id: str) -> None:
        raise RestartTimeout(f"Kernel {kernel_id} did not answer within 1 s after a restart.")

    monkeypatch.setattr(kernel_map, "restart_kernel", fail)

    async def go() -> None:
        (task,) = window.commands.request_restart([kid])
        await task

    qloop.run(go())
    (title, text), *_ = no_dialogs["show_error"]
    assert "Restart" in title
    assert "did not answer" in text
    assert "did not answer" in window.status.currentMessage()
    assert window.isVisible()


def test_interrupt_stops_running_code(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str
) -> None:
    async def go() -> None:
        conn = await kernel_map.connect(kid, "sleeper", lambda ch, msg: None)
        conn.execute("import time; time.sleep(60)")
        await wait_until(lambda: state_of(window, kid) == "busy", timeout=20)
        window.select_kernel(kid)
        window.actions_by_name["interrupt"].trigger()
        await wait_until(lambda: state_of(window, kid) == "idle", timeout=20)
        await conn.close()

    qloop.run(go())
    assert "interrupted" in window.event_log.texts()


def test_culler_panel_applies_saves_and_survives_a_relaunch(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str
) -> None:
    panel = window.culler_panel
    assert window.table.isColumnHidden(Column.CULL_ETA)

    async def edit() -> None:  # in the app, slots run on the running loop
        panel.edits["cull_idle_timeout"].set_value(600)
        panel.edits["cull_idle_timeout"].editingFinished.emit()
        panel.edits["buffer_max_messages"].set_value(500)
        panel.edits["buffer_max_messages"].editingFinished.emit()
        panel.checks["cull_busy"].setChecked(True)
        await wait_until(lambda: kernel_map.culling)

    qloop.run(edit())
    s = kernel_map.settings
    assert (s.cull_idle_timeout, s.buffer_max_messages, s.cull_busy) == (600, 500, True)
    assert not window.table.isColumnHidden(Column.CULL_ETA)
    assert "Culling after 10 min idle" in window.status.culler_label.text()
    row = window.table_model.row_of(kid)
    assert "min" in window.table_model.index(row, Column.CULL_ETA).data()

    # invalid values are refused with the reason, and nothing changes
    for name, value, why in (
        ("cull_idle_timeout", 1e12, "at most"),
        ("kernel_info_timeout", 0, "from 0.1"),
        ("cull_interval", 0, "from 0.1"),
    ):
        panel.edits[name].set_value(value)
        panel.edits[name].editingFinished.emit()
        assert panel.error_label.isVisibleTo(panel)
        assert why in panel.error_label.text()
        assert panel.edits[name].value() == getattr(s, name)
    assert kernel_map.settings == s

    # a new window (a relaunch) reads what was saved
    saved, message = load_settings(window.settings.settings_path)
    assert message is None
    assert (saved.cull_idle_timeout, saved.buffer_max_messages, saved.cull_busy) == (
        600,
        500,
        True,
    )
    with another_window(
        KernelMap(saved),
        window.settings.settings_path,
        window_state_path=Path(window.settings.settings_path).with_name("other.ini"),
    ) as relaunched:
        assert relaunched.culler_panel.edits["cull_idle_timeout"].text() == "10 min"
        assert relaunched.culler_panel.checks["cull_busy"].isChecked()

    # back to no culling so later tests are not disturbed
    async def reset() -> None:
        window.settings.apply_user(dataclasses.replace(s, cull_idle_timeout=0, cull_busy=False))

    qloop.run(reset())
    assert not kernel_map.culling
    assert window.status.culler_label.text() == "Culling off"


def test_pause_culling_keeps_the_saved_settings(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap
) -> None:
    window.settings.apply_user(dataclasses.replace(kernel_map.settings, cull_idle_timeout=900))
    assert window.culler_panel.edits["cull_idle_timeout"].text() == "15 min", "the panel follows"
    window.actions_by_name["pause_culling"].trigger()
    assert window.settings.paused
    assert kernel_map.settings.cull_idle_timeout == 0
    assert window.status.culler_label.text() == "Culling paused"
    # edits while paused are saved and used on resume
    window.culler_panel.edits["cull_idle_timeout"].set_value(1200)
    window.culler_panel.edits["cull_idle_timeout"].editingFinished.emit()
    assert kernel_map.settings.cull_idle_timeout == 0
    assert load_settings(window.settings.settings_path)[0].cull_idle_timeout == 1200
    window.actions_by_name["pause_culling"].trigger()
    assert kernel_map.settings.cull_idle_timeout == 1200
    window.settings.apply_user(dataclasses.replace(kernel_map.settings, cull_idle_timeout=0))


def test_dont_ask_again_is_remembered(
    window: MainWindow, kid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernelmon.ui import dialogs

    calls: list[str] = []

    def confirm(parent: Any, title: str, text: str, **kw: Any) -> tuple[bool, bool]:
        calls.append(title)
        return False, False

    monkeypatch.setattr(dialogs, "confirm", confirm)
    assert not window.commands.confirmations.ask("test-key", "T", "?", "OK")
    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: (True, True))
    assert window.commands.confirmations.ask("test-key", "T", "?", "OK")
    monkeypatch.setattr(dialogs, "confirm", confirm)
    assert window.commands.confirmations.ask("test-key", "T", "?", "OK")
    assert calls == ["T"], "not asked again"


def test_actions_have_shortcuts_and_tooltips(window: MainWindow) -> None:
    expected = {
        "start": "Ctrl+N",
        "restart": "Ctrl+R",
        "interrupt": "Ctrl+I",
        "shutdown": "Del",
        "shutdown_all": "Ctrl+Shift+Del",
        "console": "Ctrl+O",
        "quit": "Ctrl+Q",
    }
    for name, keys in expected.items():
        action = window.actions_by_name[name]
        assert action.shortcut().toString() == keys, name
        assert action.toolTip()
        assert keys in action.toolTip().replace("Delete", "Del")
    menu = window.build_context_menu()
    assert window.actions_by_name["restart"] in menu.actions()


def test_shutdown_asks_then_removes_the_row(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str, no_dialogs: Any
) -> None:
    pid = kernel_map.kernel_model(kid)["pid"]
    window.select_kernel(kid)

    async def go() -> None:
        window.actions_by_name["shutdown"].trigger()
        await wait_until(lambda: window.table_model.rowCount() == 0, timeout=30)
        await wait_until(lambda: not pid_alive(pid), timeout=10)

    qloop.run(go())
    assert "Shut down" in no_dialogs["confirm"][0][0]
    assert kid not in kernel_map
    assert window.event_log.texts()[0] == "shut down", "newest first"
    assert not window.actions_by_name["shutdown"].isEnabled()
    assert window.status.counts_label.text() == "No kernels"


def test_shutdown_all_stops_every_kernel(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, no_dialogs: Any
) -> None:
    async def go() -> list[int]:
        tasks = [window.commands.request_start("python3") for _ in range(2)]
        ids = [await t for t in tasks]
        pids = [kernel_map.kernel_model(k)["pid"] for k in ids]
        window.actions_by_name["shutdown_all"].trigger()
        await wait_until(lambda: len(kernel_map) == 0, timeout=30)
        return pids

    pids = qloop.run(go())
    assert window.table_model.rowCount() == 0
    assert not any(pid_alive(p) for p in pids)
    assert "Shut down all" in no_dialogs["confirm"][-1][0]
    assert Settings  # imported for type hints


def test_window_layout_is_remembered(
    window: MainWindow, kernel_map: KernelMap, tmp_path: Path
) -> None:
    window.table.setColumnWidth(Column.MEMORY, 333)
    window.resize(700, 450)
    window.save_window_state()
    assert set(window.window_state.allKeys()) >= {
        "geometry",
        "window_state",
        "splitter",
        "table_header",
    }
    with another_window(
        kernel_map, tmp_path / "settings.json", window_state_path=window.window_state.fileName()
    ) as other:
        assert other.table.columnWidth(Column.MEMORY) == 333
        assert (other.size().width(), other.size().height()) == (700, 450)


def test_a_failed_start_is_shown_in_words(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, no_dialogs: Any
) -> None:
    async def go() -> None:
        task = window.commands.request_start("no-such-kernel-spec")
        with pytest.raises(Exception, match="No kernel spec named"):
            await task
        await wait_until(lambda: bool(no_dialogs["show_error"]))

    qloop.run(go())
    title, text = no_dialogs["show_error"][-1]
    assert "no-such-kernel-spec" in title
    assert "No kernel spec named 'no-such-kernel-spec'" in text
    assert "No kernel spec named" in window.event_log.texts()[0]
    assert "No kernel spec named" in window.status.currentMessage()
    assert window.isVisible()


def test_tasks_finish_waits_then_cancels(qloop: QtLoop, window: MainWindow) -> None:
    import asyncio

    ended: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.05)
        ended.append("quick")

    async def endless() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def go() -> None:
        window.tasks.spawn(quick(), "quick")
        window.tasks.spawn(endless(), "endless")
        await window.tasks.finish(timeout=0.3)

    qloop.run(go())
    assert ended == ["quick", "cancelled"]
    assert window.tasks.running == 0
