"""The window's actions as data: text, shortcut, tooltip, icon; where they appear; and
whether they are enabled for the selected kernels (``update_states``: from the core's
refusals in the kernels' models, with the core's own sentence in the tooltip).

One table, so the toolbar, the menus, the context menu, the README and the tests agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar, QWidget

from .icons import icon
from .ownership import is_stale
from .refusals import CONNECT, INTERRUPT, RESTART, SHUTDOWN, as_sentence, refusal


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
    ActionSpec(
        "settings",
        "S&ettings…",
        "Ctrl+,",
        "Show the settings: the culler, buffering, discovery and resources panels",
    ),
    ActionSpec(
        "desktop_entry",
        "Show in the &applications menu",
        None,
        "Add kernelmon to your desktop's applications menu (a .desktop file and its icon, for "
        "you only); uncheck to remove them",
        checkable=True,
    ),
    ActionSpec(
        "autostart",
        "Start kernelmon at &login (in the tray)",
        None,
        "Start kernelmon when you log in, with its window hidden in the tray (XDG autostart); "
        "uncheck to stop that",
        checkable=True,
    ),
    ActionSpec("about", "&About kernelmon", None, "Versions, and the folders kernelmon uses"),
    ActionSpec("docs", "&Documentation", "F1", "Open kernelmon's documentation"),
    ActionSpec(
        "diagnostics",
        "&Copy diagnostics",
        None,
        "Copy versions, folders, settings and kernel counts, for a bug report",
    ),
)

#: The actions on the selected kernels, in the order the Kernel menu and the table's
#: context menu show them.
ON_KERNELS = ("console", "restart", "interrupt", "shutdown", "cleanup")
#: Where the actions appear; None is a separator.
KERNEL_MENU = ("start", None, *ON_KERNELS, None, "shutdown_all", None, "copy_id", "pause_culling")
FILE_MENU = ("start", "settings", None, "desktop_entry", "autostart", None, "quit")
HELP_MENU = ("docs", "diagnostics", None, "about")
TOOLBAR = ("start", "console", "restart", "interrupt", "shutdown", "shutdown_all")
CONTEXT_MENU = (*ON_KERNELS, None, "copy_id", None, "start")


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


def details_toggle(dock: QDockWidget) -> QAction:
    """The action that shows and hides the details pane (its dock's own toggle)."""
    details = dock.toggleViewAction()
    details.setObjectName("details")
    details.setText("Kernel &details")
    details.setToolTip("Show or hide the selected kernel's details and plots")
    return details


def fill_window(window: QMainWindow, actions: dict[str, QAction], views: list[QAction]) -> None:
    """The menu bar (File, Kernel, View: the side panel, each of its ``views`` and the
    toolbar, all checkable; Help) and the toolbar."""
    fill(window.menuBar().addMenu("&File"), actions, FILE_MENU)
    fill(window.menuBar().addMenu("&Kernel"), actions, KERNEL_MENU)
    view_menu = window.menuBar().addMenu("&View")
    view_menu.addAction(actions["side_panel"])
    view_menu.addSeparator()
    for view in views:
        view_menu.addAction(view)
    toolbar = window.addToolBar("Kernels")
    toolbar.setObjectName("toolbar")
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    fill(toolbar, actions, TOOLBAR)
    view_menu.addSeparator()
    toolbar.toggleViewAction().setText("&Toolbar")
    view_menu.addAction(toolbar.toggleViewAction())
    fill(window.menuBar().addMenu("&Help"), actions, HELP_MENU)


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


#: The actions that act on selected kernels as the core allows: name -> (core action, verb).
REFUSABLE = {
    "restart": (RESTART, "restart"),
    "interrupt": (INTERRUPT, "interrupt"),
    "shutdown": (SHUTDOWN, "shut down"),
    "console": (CONNECT, "open a console on"),
}


def refusable_tip(base: str, verb: str, refused: list[str], allowed: int) -> str:
    """The tooltip of an action the core refuses for some selected kernels: the core's own
    sentence (of the first one refused)."""
    if not refused:
        return base
    if not allowed:
        return f"Cannot {verb}: {as_sentence(refused[0])}"
    return (
        f"{base}. {len(refused)} of the selected kernels are left alone: {as_sentence(refused[0])}"
    )


def update_states(
    actions: dict[str, QAction],
    tips: dict[str, str],
    models: list[dict[str, Any]],
    busy: set[str],
    any_owned: bool,
) -> None:
    """Enable the actions for the selected kernels' ``models`` (``busy``: kernels with a
    restart under way), their tooltips saying what the core refuses and why."""
    for name, (action, verb) in REFUSABLE.items():
        whys = [(m, refusal(m, action)) for m in models]
        refused = [why for _m, why in whys if why]
        allowed = [m for m, why in whys if why is None]
        if name == "restart":
            allowed = [m for m in allowed if m.get("id") not in busy]
        tip = refusable_tip(tips[name], verb, refused, len(allowed))
        actions[name].setEnabled(bool(allowed))
        actions[name].setToolTip(tip)
        actions[name].setStatusTip(tip)
    actions["cleanup"].setEnabled(any(is_stale(m) for m in models))
    actions["copy_id"].setEnabled(bool(models))
    actions["shutdown_all"].setEnabled(any_owned)
