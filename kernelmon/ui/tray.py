"""The tray icon: overall state at a glance, a menu for every kernel, notifications.

Only created when ``QSystemTrayIcon.isSystemTrayAvailable()``. The menu is rebuilt each time
it is about to show (``rebuild_menu``), from the window's actions and the kernel list, so it
is never stale; tests call ``rebuild_menu`` and trigger its actions directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from .figures import format_bytes
from .icons import app_icon, icon
from .kernel_table import short_id
from .ownership import can_restart, is_stale, restart_refusal
from .status_bar import count_states

if TYPE_CHECKING:
    from .main_window import MainWindow

logger = logging.getLogger(__name__)


def overall_state(models: list[dict[str, Any]]) -> str:
    """What the tray icon shows: ``dead`` if any kernel is dead, unresponsive or a problem, else
    ``busy`` if any is busy, else ``idle`` (``none`` without kernels). Stale connection
    files (no process) do not count."""
    models = [m for m in models if not is_stale(m)]
    states = {str(m.get("execution_state")) for m in models}
    if states & {"dead", "unresponsive", "problem"}:
        return "dead"
    if "busy" in states:
        return "busy"
    if not models:
        return "none"
    return "idle"


def tooltip_text(models: list[dict[str, Any]], total_rss: int) -> str:
    """The tray's tooltip: how many kernels, in which states, and their memory."""
    c = count_states(models)
    n = len(models) - c["stale"]
    text = f"kernelmon: {n} kernel(s): {c['running']} running, {c['busy']} busy, {c['dead']} dead"
    if total_rss:
        text += f"; memory {format_bytes(total_rss)}"
    return text


class KernelTray(QSystemTrayIcon):
    """The tray icon of a ``MainWindow``."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.setContextMenu(self.menu)
        self.kernel_menus: dict[str, QMenu] = {}
        self.notifications: list[tuple[str, str]] = []
        self._told_still_running = False
        self.activated.connect(self.on_activated)
        self.store = window.bridge.store
        # Bound methods, not lambdas: Qt disconnects them when the tray is deleted. Once per
        # burst of changes (the bridge's), and on each resource sample (the memory total).
        self.store.kernels_changed.connect(self.on_store_kernels_changed)
        window.bridge.usage_sampled.connect(self.on_bridge_usage_sampled)
        window.notified.connect(self.notify)
        self.rebuild_menu()
        self.refresh()

    def on_store_kernels_changed(self, _ids: Any) -> None:
        self.refresh()

    def on_bridge_usage_sampled(self, *_args: Any) -> None:
        self.refresh()

    def refresh(self) -> None:
        """The icon and the tooltip, from the store."""
        models = self.store.models()
        state = overall_state(models)
        self.setIcon(app_icon() if state == "none" else icon(f"tray-{state}"))
        self.setToolTip(tooltip_text(models, self.store.total_rss))

    def notify(self, title: str, text: str) -> None:
        self.notifications.append((title, text))
        icon_kind = (
            QSystemTrayIcon.MessageIcon.Warning
            if any(word in title.lower() for word in ("fail", "died", "memory"))
            else QSystemTrayIcon.MessageIcon.Information
        )
        if self.isVisible():
            self.showMessage(title, text, icon_kind, 8000)

    def tell_still_running(self) -> None:
        if not self._told_still_running:
            self._told_still_running = True
            self.notify("kernelmon is still running", "Quit from this icon's menu.")

    def on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window()

    def toggle_window(self) -> None:
        w = self.window
        if w.isVisible() and not w.isMinimized():
            w.hide()
        else:
            w.showNormal()
            w.raise_()
            w.activateWindow()

    def _add(self, menu: QMenu, text: str, slot: Any, name: str = "") -> QAction:
        action = menu.addAction(text)
        action.setObjectName(name)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def rebuild_menu(self) -> None:
        """Build the menu afresh from the current kernels."""
        w = self.window
        menu = self.menu
        menu.clear()
        for old in self.kernel_menus.values():
            old.setParent(None)
            old.deleteLater()
        self.kernel_menus = {}
        self._add(
            menu,
            "Hide window" if w.isVisible() else "Show window",
            self.toggle_window,
            "toggle_window",
        )
        self._add(menu, "Start kernel", lambda: w.start_kernel(None), "start")
        menu.addSeparator()
        for model in sorted(self.store.models(), key=lambda m: str(m["display_name"])):
            kid = str(model["id"])
            sub = menu.addMenu(
                f"{model['display_name']} {short_id(kid)} ({model['execution_state']})"
            )
            self.kernel_menus[kid] = sub
            sub.setIcon(icon(f"state-{model['execution_state']}"))
            console = self._add(sub, "Open console", lambda k=kid: w.open_console(k), "console")
            if is_stale(model):
                # Nothing to talk to: only the connection file is left.
                console.setEnabled(False)
                console.setToolTip(restart_refusal(model))
                self._add(
                    sub,
                    "Clean up connection file",
                    lambda k=kid: w.clean_up_kernels([k]),
                    "cleanup",
                )
                continue
            restart = self._add(sub, "Restart", lambda k=kid: w.restart_kernel(k), "restart")
            if not can_restart(model):
                restart.setEnabled(False)
                restart.setToolTip(restart_refusal(model))
            self._add(sub, "Interrupt", lambda k=kid: w.interrupt_kernel(k), "interrupt")
            self._add(sub, "Shut down", lambda k=kid: w.shutdown_kernel(k), "shutdown")
        if len(self.store):
            menu.addSeparator()
        pause = self._add(
            menu,
            "Pause culling",
            lambda: w.set_culling_paused(not w.culling_paused),
            "pause_culling",
        )
        pause.setCheckable(True)
        pause.setChecked(w.culling_paused)
        all_action = self._add(menu, "Shut down all", w.shutdown_all, "shutdown_all")
        all_action.setEnabled(bool(w.owned_kernel_ids()))
        menu.addSeparator()
        self._add(menu, "Quit", w.request_quit, "quit")

    def find_action(self, name: str, kernel_id: str | None = None) -> QAction:
        """The menu's action called ``name`` (in a kernel's submenu when ``kernel_id``)."""
        menu: QMenu = self.menu
        if kernel_id is not None:
            if kernel_id not in self.kernel_menus:
                raise LookupError(f"No submenu for kernel {kernel_id}")
            menu = self.kernel_menus[kernel_id]
        for action in menu.actions():
            if action.objectName() == name:
                return action
        raise LookupError(f"No tray action {name!r}")
