"""The tray icon: overall state at a glance, a menu for every kernel, notifications.

Only created when ``QSystemTrayIcon.isSystemTrayAvailable()``. The menu is rebuilt each time
it is about to show (``rebuild_menu``), from the store's kernels, so it is never stale; its
entries call ``KernelCommands`` and the ``SettingsController`` (the tray knows nothing of the
main window but that it is a window to show and hide). Tests call ``rebuild_menu`` and
trigger its actions directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from .commands import KernelCommands
from .figures import format_bytes, kernel_label, kernel_name, plural
from .icons import app_icon, icon
from .notifier import Level, Notifier
from .ownership import is_stale
from .refusals import CONNECT, INTERRUPT, RESTART, SHUTDOWN, refusal
from .settings_controller import SettingsController
from .status_bar import count_states
from .store import KernelStore

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
    text = "kernelmon: no kernels"
    if n:
        text = f"kernelmon: {plural(n, 'kernel')}: {c['running']} running, {c['busy']} busy, "
        text += f"{c['dead']} dead"
    if total_rss:
        text += f"; memory {format_bytes(total_rss)}"
    return text


class KernelTray(QSystemTrayIcon):
    """The tray icon over a window (shown and hidden from here) and its kernels."""

    def __init__(
        self,
        window: QWidget,
        store: KernelStore,
        commands: KernelCommands,
        settings: SettingsController,
        notifier: Notifier,
        request_quit: Callable[[], None],
    ) -> None:
        super().__init__(window)
        self.window = window
        self.store = store
        self.commands = commands
        self.settings = settings
        self.request_quit = request_quit
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.setContextMenu(self.menu)
        self.kernel_menus: dict[str, QMenu] = {}
        self.notifications: list[tuple[str, str]] = []
        self._told_still_running = False
        self.activated.connect(self.on_activated)
        # Bound methods, not lambdas: Qt disconnects them when the tray is deleted. Once per
        # burst of changes (the bridge's), and when the totals change (memory).
        store.kernels_changed.connect(self.on_store_kernels_changed)
        store.usage_changed.connect(self.on_store_usage_changed)
        notifier.notified.connect(self.on_notifier_notified)
        self.rebuild_menu()
        self.refresh()

    def on_store_kernels_changed(self, _ids: Any) -> None:
        self.refresh()

    def on_store_usage_changed(self, _cpu: Any, _rss: Any) -> None:
        self.refresh()

    def refresh(self) -> None:
        """The icon and the tooltip, from the store."""
        models = self.store.models()
        state = overall_state(models)
        self.setIcon(app_icon() if state == "none" else icon(f"tray-{state}"))
        self.setToolTip(tooltip_text(models, self.store.total_rss))

    def on_notifier_notified(self, level: str, title: str, text: str) -> None:
        self.notifications.append((title, text))
        icon_kind = (
            QSystemTrayIcon.MessageIcon.Information
            if level == Level.INFO
            else QSystemTrayIcon.MessageIcon.Warning
        )
        if self.isVisible():
            self.showMessage(title, text, icon_kind, 8000)

    def tell_still_running(self) -> None:
        if not self._told_still_running:
            self._told_still_running = True
            self.on_notifier_notified(
                Level.INFO, "kernelmon is still running", "Quit from this icon's menu."
            )

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

    def _add(
        self, menu: QMenu, text: str, slot: Any, name: str = "", why: str | None = None
    ) -> QAction:
        """A menu entry; disabled, with the core's sentence as its tooltip, when ``why``."""
        action = menu.addAction(text)
        action.setObjectName(name)
        action.triggered.connect(lambda _checked=False: slot())
        if why:
            action.setEnabled(False)
            action.setToolTip(why)
        return action

    def rebuild_menu(self) -> None:
        """Build the menu afresh from the current kernels."""
        w, c = self.window, self.commands
        menu = self.menu
        menu.clear()
        for old in self.kernel_menus.values():
            old.setParent(None)
            old.deleteLater()
        self.kernel_menus = {}
        shown = "Hide window" if w.isVisible() else "Show window"
        self._add(menu, shown, self.toggle_window, "toggle_window")
        self._add(menu, "Start kernel", lambda: c.request_start(None), "start")
        menu.addSeparator()
        for model in sorted(self.store.models(), key=lambda m: kernel_name(m).lower()):
            kid = str(model["id"])
            state = model["execution_state"]
            sub = menu.addMenu(f"{kernel_label(kid, model)} ({state})")
            self.kernel_menus[kid] = sub
            sub.setIcon(icon(f"state-{state}"))
            why = refusal(model, CONNECT)
            self._add(sub, "Open console", lambda k=kid: c.request_console([k]), "console", why)
            if is_stale(model):
                # Nothing to talk to: only the connection file is left.
                clean = lambda k=kid: c.request_cleanup([k])  # noqa: E731
                self._add(sub, "Clean up connection file", clean, "cleanup")
                continue
            for name, text, action, slot in (
                ("restart", "Restart", RESTART, c.request_restart),
                ("interrupt", "Interrupt", INTERRUPT, c.request_interrupt),
                ("shutdown", "Shut down", SHUTDOWN, c.request_shutdown),
            ):
                why = refusal(model, action)
                self._add(sub, text, lambda k=kid, s=slot: s([k]), name, why)
        if len(self.store):
            menu.addSeparator()
        s = self.settings
        pause = self._add(
            menu, "Pause culling", lambda: s.set_paused(not s.paused), "pause_culling"
        )
        pause.setCheckable(True)
        pause.setChecked(s.paused)
        all_action = self._add(menu, "Shut down all", c.request_shutdown_all, "shutdown_all")
        all_action.setEnabled(bool(self.store.owned_ids()))
        menu.addSeparator()
        self._add(menu, "Quit", self.request_quit, "quit")

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
