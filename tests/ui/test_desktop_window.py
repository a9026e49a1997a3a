"""The window as a desktop app (no kernels needed): the Start dialog's folder, settings with
units, the side panel and the View menu, the File and Help menus, About and diagnostics, the
applications menu entry and login autostart (in temporary XDG folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from kernelmon.ui import dialogs
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.start_dialog import StartKernelDialog

from .conftest import QtLoop


@pytest.fixture
def xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def menu(window: MainWindow, title: str) -> list[str]:
    """The object names of a menu's actions (separators as "")."""
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == title:
            return [a.objectName() for a in action.menu().actions()]
    raise AssertionError(f"no {title} menu")


# -- item 4: the Start dialog -----------------------------------------------------------------


def open_start_dialog(window: MainWindow) -> StartKernelDialog:
    window.actions_by_name["start"].trigger()
    dialog = window.start_dialog
    assert dialog is not None
    return dialog


def test_start_dialog_has_the_focus_in_the_folder_and_asks_about_a_missing_folder(
    qloop: QtLoop,
    window: MainWindow,
    ui_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[Any, Any]] = []
    monkeypatch.setattr(window.commands, "request_start", lambda *a: started.append(a))
    answers = ["pick another", "create"]
    asked: list[str] = []

    def ask(parent: Any, folder: str) -> Any:
        asked.append(folder)
        return dialogs.MissingFolder(answers.pop(0))

    monkeypatch.setattr(dialogs, "ask_missing_folder", ask, raising=False)

    async def go() -> None:
        dialog = open_start_dialog(window)
        QApplication.processEvents()
        assert dialog.focusWidget() is dialog.folder_edit
        QTest.keyClicks(dialog.folder_edit, "projekt/typo")
        QTest.keyClick(dialog.folder_edit, Qt.Key.Key_Return)  # Enter starts...
        missing = ui_root / "projekt" / "typo"
        assert asked == [str(missing)], "...but first asks about the missing folder"
        assert dialog.isVisible(), "picking another keeps the dialog"
        assert started == []
        assert "does not exist" in dialog.error_label.text()
        assert dialog.folder_edit.selectedText() == "projekt/typo"
        QTest.keyClick(dialog.folder_edit, Qt.Key.Key_Return)  # now: create it
        assert missing.is_dir()
        assert started == [("python3", "projekt/typo")]
        assert not dialog.isVisible()

    qloop.run(go())


def test_start_dialog_starts_at_once_in_an_existing_folder(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[Any, Any]] = []
    monkeypatch.setattr(window.commands, "request_start", lambda *a: started.append(a))
    monkeypatch.setattr(
        dialogs, "ask_missing_folder", lambda *a: pytest.fail("asked"), raising=False
    )
    dialog = open_start_dialog(window)
    QTest.keyClicks(dialog.folder_edit, "project")
    QTest.keyClick(dialog.folder_edit, Qt.Key.Key_Enter)
    assert started == [("python3", "project")]


def test_start_dialog_refuses_a_file_as_folder(window: MainWindow, ui_root: Path) -> None:
    (ui_root / "notes.txt").write_text("")
    dialog = open_start_dialog(window)
    dialog.folder_edit.setText("notes.txt")
    dialog.accept()
    assert dialog.isVisible()
    assert "is a file, not a folder" in dialog.error_label.text()
    dialog.reject()


# -- item 8: settings with units --------------------------------------------------------------


def type_into(field: Any, number: str, unit: str | None = None) -> None:
    """As a user: select the number, type another, pick a unit (or press Enter)."""
    field.spin.selectAll()
    QTest.keyClicks(field.spin, number)
    if unit is None:
        QTest.keyClick(field.spin, Qt.Key.Key_Return)
        return
    box = field.unit_box
    box.setCurrentIndex(box.findText(unit))
    box.activated.emit(box.currentIndex())


def wheel(widget: Any) -> None:
    """One notch of the mouse wheel over ``widget``."""
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent

    center = QPointF(widget.rect().center())
    event = QWheelEvent(
        center,
        QPointF(widget.mapToGlobal(center)),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_scrolling_past_a_field_changes_nothing(window: MainWindow) -> None:
    idle = window.culler_panel.edits["cull_idle_timeout"]
    before = window.settings.user
    window.table.setFocus()
    wheel(idle.spin)
    wheel(idle.unit_box)
    idle.editingFinished.emit()
    assert idle.text() == "off"
    assert window.settings.user == before


def test_settings_take_units_and_say_what_0_does(
    qloop: QtLoop, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    culler, monitoring = window.culler_panel, window.monitoring_panel
    before = window.settings.user
    buffer = culler.edits["buffer_max_bytes"]
    assert buffer.text() == "16 MiB", "16777216 bytes, as people read it"
    assert [buffer.unit_box.itemText(i) for i in range(buffer.unit_box.count())][-2:] == [
        "MiB",
        "GiB",
    ]
    assert culler.edits["buffer_max_messages"].text() == "10000 messages"
    idle = culler.edits["cull_idle_timeout"]
    assert idle.text() == "off"
    assert idle.off_label is not None
    assert idle.off_label.text() == "0 = off"
    assert monitoring.edits["memory_warn_kernel_mb"].off_label is not None
    assert monitoring.edits["notify_job_seconds"].off_label is not None
    assert monitoring.edits["sample_interval"].off_label is None, "0 is not off there"

    async def go() -> None:
        type_into(idle, "2", "h")
        type_into(buffer, "1.5", "GiB")
        type_into(monitoring.edits["memory_warn_kernel_mb"], "2", "GiB")
        type_into(monitoring.edits["sample_interval"], "0.5")

    try:
        qloop.run(go())
        user = window.settings.user
        assert user.cull_idle_timeout == 7200
        assert user.buffer_max_bytes == 1536 * 1024 * 1024
        assert user.memory_warn_kernel_mb == 2048
        assert user.sample_interval == 0.5
        assert idle.text() == "2 h"
        assert buffer.text() == "1.5 GiB"
        assert "Culling after 2 h idle" in window.status.culler_label.text()
        # a value the settings refuse: the sentence, and the previous value back
        type_into(culler.edits["kernel_info_timeout"], "0")
        assert "from 0.1" in culler.error_label.text()
        assert culler.edits["kernel_info_timeout"].value() == before.kernel_info_timeout
    finally:

        async def reset() -> None:
            window.settings.apply_user(before)

        qloop.run(reset())


# -- item 14: the side panel and the View menu ------------------------------------------------


def test_ctrl_d_hides_and_shows_the_whole_side_panel(window: MainWindow) -> None:
    panel = window.side_panel
    docks = [window.details_dock, window.culler_dock, window.monitoring_dock]
    toggle = window.actions_by_name["side_panel"]
    assert toggle.shortcut().toString() == "Ctrl+D"
    view = menu(window, "View")
    assert view[0] == "side_panel"
    views = [d.toggleViewAction() for d in docks]
    assert all((v.isCheckable() and v.objectName() in view) or v in panel.views for v in views)
    for d in docks:
        d.show()
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window, 10_000)
    window.table.setFocus()
    QTest.keyClick(window.table, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert all(d.isHidden() for d in docks), "every tab of the panel, not just one"
    assert not toggle.isChecked()
    assert not any(v.isChecked() for v in views)
    QTest.keyClick(window.table, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert not any(d.isHidden() for d in docks)
    assert toggle.isChecked()
    assert all(v.isChecked() for v in views)
    # one dock closed from the View menu: the panel stays; Ctrl+D brings back what was open
    views[1].trigger()
    assert window.culler_dock.isHidden()
    assert toggle.isChecked()
    toggle.trigger()
    assert all(d.isHidden() for d in docks)
    toggle.trigger()
    assert window.culler_dock.isHidden()
    assert not window.details_dock.isHidden()
    assert not window.monitoring_dock.isHidden()
    views[1].trigger()


# -- item 12: File and Help menus, About, diagnostics -----------------------------------------


def test_file_and_help_menus(window: MainWindow) -> None:
    assert menu(window, "File") == [
        "start",
        "settings",
        "",
        "desktop_entry",
        "autostart",
        "",
        "quit",
    ]
    assert menu(window, "Help") == ["docs", "diagnostics", "", "about"]
    window.culler_dock.hide()
    window.actions_by_name["settings"].trigger()
    assert not window.culler_dock.isHidden()
    assert window.side_panel.action.isChecked()


def test_about_shows_versions_and_opens_folders(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import jupyter_client

    from kernelmon.ui import about

    monkeypatch.setenv("KERNELMON_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("KERNELMON_STATE_DIR", str(tmp_path / "missing"))
    (tmp_path / "log").mkdir()
    opened: list[QUrl] = []
    monkeypatch.setattr(about, "open_url", lambda url: opened.append(url) or True)
    window.actions_by_name["about"].trigger()
    dialog = window.help.about_dialog
    assert dialog is not None
    assert dialog.isVisible()
    texts = " ".join(label.text() for label in dialog.findChildren(about.QLabel))
    from kernelmon import __version__

    for needed in (__version__, jupyter_client.__version__, "Qt", "Python", str(tmp_path)):
        assert needed in texts
    dialog.open_buttons["Log"].click()
    assert opened == [QUrl.fromLocalFile(str(tmp_path / "log"))]
    assert not dialog.open_buttons["State"].isEnabled(), "a folder not made yet"
    dialog.copy_button.click()
    text = QGuiApplication.clipboard().text()
    assert f"kernelmon: {__version__}" in text
    assert f"jupyter_client: {jupyter_client.__version__}" in text
    assert f"Log folder: {tmp_path / 'log'}" in text
    assert "cull_idle_timeout = " in text
    assert "Kernels: " in text
    dialog.close()
    window.actions_by_name["docs"].trigger()
    assert opened[-1] == about.docs_location()


# -- item 13: the applications menu entry and login autostart ---------------------------------


def test_menu_entry_and_autostart_are_installed_and_removed(window: MainWindow, xdg: Path) -> None:
    from kernelmon import desktop

    entry, autostart = window.actions_by_name["desktop_entry"], window.actions_by_name["autostart"]
    window.help.prepare(entry, autostart)
    assert not entry.isChecked()
    assert not autostart.isChecked()
    entry.trigger()
    applications = xdg / "data" / "applications" / "kernelmon.desktop"
    icon = xdg / "data" / "icons" / "hicolor" / "scalable" / "apps" / "kernelmon.svg"
    assert applications.is_file()
    assert icon.is_file()
    assert "Exec=" in applications.read_text()
    assert applications.stat().st_mode & 0o777 == 0o644, "readable, as desktop files are"
    assert desktop.MARK in applications.read_text()
    autostart.trigger()
    login = xdg / "config" / "autostart" / "kernelmon.desktop"
    assert login.is_file()
    exec_line = next(x for x in login.read_text().splitlines() if x.startswith("Exec="))
    assert exec_line.endswith(" --in-tray")
    window.help.prepare(entry, autostart)  # as a relaunch shows them
    assert entry.isChecked()
    assert autostart.isChecked()
    entry.trigger()
    autostart.trigger()
    assert not applications.exists()
    assert not icon.exists()
    assert not login.exists()


def test_a_desktop_file_kernelmon_did_not_write_is_left_alone(
    window: MainWindow, xdg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernelmon import desktop

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, t, text: shown.append((t, text)))
    login = xdg / "config" / "autostart" / "kernelmon.desktop"
    login.parent.mkdir(parents=True)
    login.write_text("[Desktop Entry]\nExec=kernelmon --mine\n")
    autostart = window.actions_by_name["autostart"]
    window.help.prepare(window.actions_by_name["desktop_entry"], autostart)
    assert not autostart.isChecked()
    autostart.trigger()
    assert not autostart.isChecked(), "not written: the check box says so"
    assert "did not write it" in shown[0][1]
    assert login.read_text() == "[Desktop Entry]\nExec=kernelmon --mine\n"
    with pytest.raises(desktop.DesktopError):
        desktop.set_autostart(False)
    assert login.exists()


def test_a_failed_install_leaves_no_half_written_file(xdg: Path) -> None:
    """Desktop files are written as the core writes its own (a temporary file renamed over
    the old one): a write that fails leaves the old file and no temporary one behind."""
    from kernelmon import desktop

    icon = desktop.icon_file()
    icon.mkdir(parents=True)  # the icon's place is taken: the rename fails
    with pytest.raises(desktop.DesktopError, match="cannot write"):
        desktop.install_entry()
    assert icon.is_dir()
    assert [p.name for p in icon.parent.iterdir()] == [icon.name]
    assert not desktop.entry_file().exists(), "the install stopped at the first failure"


def test_a_launch_in_the_tray_leaves_a_window_in_the_tray_alone(
    window: MainWindow, qloop: QtLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login autostart (``--in-tray``) while kernelmon already runs: the running one keeps
    its window where it is when its tray icon shows (offscreen has no tray: a stand-in)."""
    from kernelmon import app
    from kernelmon.ui.handover import take_launch

    args = app.build_parser().parse_args(["--in-tray"])
    assert app.forwarded_argv(args, None, []) == ["--in-tray"]
    monkeypatch.setattr(window, "tray", object())
    window.hide()
    try:
        applied, _ = take_launch(window, in_tray=True)
        assert not window.isVisible()
        assert applied == ["--in-tray (the window stays as it is)"]
        take_launch(window)  # any other launch raises it
        assert window.isVisible()
        window.hide()
        # the launch is told what its options did (the op answers what take_launch did)
        reply = qloop.run(app.activate(window, {"argv": ["--in-tray"]}))
        assert reply["raised"] is False
        assert not window.isVisible()
        assert qloop.run(app.activate(window, {"argv": []}))["raised"] is True
        assert window.isVisible()
    finally:
        window.show()
