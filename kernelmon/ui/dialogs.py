"""Every question kernelmon asks, behind tiny functions that tests replace.

Nothing else in the UI opens a modal box: call these, and tests monkeypatch them
(``monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: (True, False))``).
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QMessageBox, QWidget


class QuitChoice(Enum):
    SHUT_DOWN = "shut down"
    LEAVE_RUNNING = "leave running"
    CANCEL = "cancel"


def confirm(
    parent: QWidget | None, title: str, text: str, *, ok_text: str = "OK"
) -> tuple[bool, bool]:
    """Ask a yes/no question; returns ``(accepted, dont_ask_again)``."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    ok = box.addButton(ok_text, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(ok)
    check = QCheckBox("Don't ask again")
    box.setCheckBox(check)
    box.exec()
    accepted = box.clickedButton() is ok
    return accepted, accepted and check.isChecked()


def ask_quit(parent: QWidget | None, running: int) -> QuitChoice:
    """Kernels still run: shut them down, leave them running, or do not quit."""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Quit kernelmon",
        f"{running} kernel(s) still run. Shut them down, or leave them running "
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
