"""Every question kernelmon asks, behind tiny functions that tests replace.

Nothing else in the UI opens a modal box: call these, and tests monkeypatch them
(``monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: (True, False))``).
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QCheckBox, QFileDialog, QMessageBox, QWidget

from .figures import plural


class QuitChoice(Enum):
    SHUT_DOWN = "shut down"
    LEAVE_RUNNING = "leave running"
    CANCEL = "cancel"


def confirm(
    parent: QWidget | None,
    title: str,
    text: str,
    *,
    ok_text: str = "OK",
    can_skip: bool = True,
    warning: bool = False,
) -> tuple[bool, bool]:
    """Ask a yes/no question; returns ``(accepted, dont_ask_again)``. Without ``can_skip``
    there is no "Don't ask again" box (and the second value is always False); ``warning``
    shows a warning icon and makes Cancel the default button."""
    icon = QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Question
    box = QMessageBox(icon, title, text, parent=parent)
    ok = box.addButton(ok_text, QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel if warning else ok)
    check = QCheckBox("Don't ask again")
    if can_skip:
        box.setCheckBox(check)
    box.exec()
    accepted = box.clickedButton() is ok
    return accepted, can_skip and accepted and check.isChecked()


def choose_folder(parent: QWidget | None, title: str) -> str | None:
    """Let the user pick a folder; None when they cancel."""
    folder = QFileDialog.getExistingDirectory(parent, title)
    return folder or None


def ask_quit(parent: QWidget | None, running: int) -> QuitChoice:
    """Kernels still run: shut them down, leave them running, or do not quit."""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Quit kernelmon",
        f"{plural(running, 'kernel')} still {'runs' if running == 1 else 'run'}. "
        "Shut them down, or leave them running "
        "(they keep working without kernelmon, and are no longer culled)?",
        parent=parent,
    )
    shut = box.addButton("Shut down and quit", QMessageBox.ButtonRole.DestructiveRole)
    leave = box.addButton("Leave running and quit", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(shut)
    box.exec()
    clicked = box.clickedButton()
    if clicked is shut:
        return QuitChoice.SHUT_DOWN
    if clicked is leave:
        return QuitChoice.LEAVE_RUNNING
    return QuitChoice.CANCEL


def show_error(parent: QWidget | None, title: str, text: str) -> None:
    """Tell the user something failed (non-blocking: the box closes itself on OK)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()


def launch_error(text: str) -> None:
    """Why kernelmon does not start, in a dialog of its own (before any window exists; used
    when no terminal shows stderr). Waits until the user closes it."""
    import sys

    app = QApplication.instance() or QApplication(sys.argv[:1])
    box = QMessageBox(
        QMessageBox.Icon.Critical, "kernelmon cannot start", text.removeprefix("kernelmon: ")
    )
    box.setWindowTitle("kernelmon cannot start")
    box.exec()
    del app


class MissingFolder(Enum):
    CREATE = "create"
    PICK = "pick another"


def ask_missing_folder(parent: QWidget | None, folder: str) -> MissingFolder:
    """The folder a kernel was asked to start in does not exist: create it, or pick another?"""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "No such folder",
        f"The folder {folder} does not exist. Create it and start the kernel there, or pick "
        "another folder?",
        parent=parent,
    )
    create = box.addButton("Create folder and start", QMessageBox.ButtonRole.AcceptRole)
    pick = box.addButton("Pick another folder", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(pick)
    box.setEscapeButton(pick)
    box.exec()
    return MissingFolder.CREATE if box.clickedButton() is create else MissingFolder.PICK
