"""The window's actions as data: text, shortcut, tooltip, icon; and where they appear.

One table, so the toolbar, the menus, the context menu, the README and the tests agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar, QWidget

from .icons import icon


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcut: str | None
    tip: str
    icon_name: str = ""
    checkable: bool = False


ACTIONS = (
    ActionSpec("start", "&Start kernel…", "Ctrl+N", "Start a new kernel", "action-start"),
    ActionSpec(
        "restart",
        "&Restart",
        "Ctrl+R",
        "Restart the selected kernels (their variables are lost)",
        "action-restart",
    ),
    ActionSpec(
        "interrupt",
        "&Interrupt",
        "Ctrl+I",
        "Interrupt the code the selected kernels run",
        "action-interrupt",
    ),
    ActionSpec(
        "shutdown", "Shut &down", "Del", "Shut the selected kernels down", "action-shutdown"
    ),
    ActionSpec(
        "cleanup",
        "Clean &up connection file",
        None,
        "Remove the connection files of the selected stale kernels (no process runs for them)",
        "action-cleanup",
    ),
    ActionSpec(
        "shutdown_all",
        "Shut down &all",
        "Ctrl+Shift+Del",
        "Shut down every kernel kernelmon started",
        "action-shutdown-all",
    ),
    ActionSpec(
        "console",
        "Open &console",
        "Ctrl+O",
        "Open a console on each selected kernel",
        "action-console",
    ),
    ActionSpec("copy_id", "&Copy kernel id", "Ctrl+Shift+C", "Copy the selected kernels' full ids"),
    ActionSpec(
        "pause_culling",
        "&Pause culling",
        None,
        "Stop culling idle kernels until you resume it (not saved)",
        checkable=True,
    ),
    ActionSpec("quit", "&Quit", "Ctrl+Q", "Quit kernelmon (asks what to do with running kernels)"),
)

#: Where the actions appear; None is a separator.
KERNEL_MENU = (
    "start",
    None,
    "console",
    "restart",
    "interrupt",
    "shutdown",
    "cleanup",
    None,
    "shutdown_all",
    None,
    "copy_id",
    "pause_culling",
)
TOOLBAR = ("start", "console", "restart", "interrupt", "shutdown", "shutdown_all")
CONTEXT_MENU = (
    "console",
    "restart",
    "interrupt",
    "shutdown",
    "cleanup",
    None,
    "copy_id",
    None,
    "start",
)


def make_actions(parent: QWidget, slots: dict[str, Callable[[], object]]) -> dict[str, QAction]:
    """QActions for ``ACTIONS``, each triggering ``slots[name]()``; added to ``parent`` so
    their shortcuts work in its window."""
    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        action = QAction(spec.text, parent)
        action.setObjectName(spec.name)
        tip = spec.tip
        if spec.shortcut:
            keys = QKeySequence(spec.shortcut)
            action.setShortcut(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            tip = f"{tip} ({keys.toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        if spec.icon_name:
            action.setIcon(icon(spec.icon_name))
        action.setCheckable(spec.checkable)
        slot = slots[spec.name]
        action.triggered.connect(lambda _checked=False, slot=slot: slot())
        parent.addAction(action)
        actions[spec.name] = action
    return actions


def fill(
    target: QMenu | QToolBar, actions: dict[str, QAction], layout: Sequence[str | None]
) -> None:
    """Add ``actions`` to a menu or toolbar in the order of ``layout``."""
    for name in layout:
        if name is None:
            target.addSeparator()
        else:
            target.addAction(actions[name])


def context_menu(parent: QObject | None, actions: dict[str, QAction]) -> QMenu:
    menu = QMenu(parent if isinstance(parent, QWidget) else None)
    fill(menu, actions, CONTEXT_MENU)
    return menu
