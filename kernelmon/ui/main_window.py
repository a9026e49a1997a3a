"""The main window: builds the widgets and the parts behind them, and connects them.

The parts (see each module): the ``KernelBridge`` (core events in, the ``KernelStore`` every
widget reads, the one throttle), ``KernelCommands`` (what the user asks of kernels, to the
core), the ``Notifier`` (one way to tell the user), the ``SettingsController`` (the user's
vs the running settings), ``Notices`` (core events the user must hear about). The window
itself only lays out the table, the event log, the docks, the menus, the toolbar and the
tray, keeps the actions' states current, and quits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QMainWindow,
    QMenu,
    QSplitter,
    QSystemTrayIcon,
    QWidget,
)

from .. import paths
from ..core import KernelMap, Settings
from . import actions, dialogs
from .bridge import KernelBridge
from .columns import Column
from .commands import KernelCommands
from .confirmations import Confirmations
from .console_manager import ConsoleManager
from .culler_panel import CullerPanel
from .details_pane import KernelDetailsPane
from .event_log import EventLogView
from .help_actions import HelpActions
from .icons import app_icon
from .kernel_table import KernelSortProxy, KernelTableModel
from .kernel_view import KernelTableView
from .monitoring_panel import MonitoringPanel
from .notices import Notices
from .notifier import Notifier
from .servers_panel import ServersPanel
from .settings_controller import SettingsController
from .side_panel import SidePanel
from .start_dialog import StartKernelDialog
from .status_bar import KernelStatusBar
from .tasks import TaskRunner
from .tray import KernelTray
from .window_state import WindowState

logger = logging.getLogger(__name__)

#: How long quitting waits for running actions (a restart, a start) to end by themselves.
QUIT_WAIT = 15.0
#: Shows and hides the side panel (the details pane and the settings panels).
SIDE_PANEL_SHORTCUT = "Ctrl+D"


class MainWindow(QMainWindow):
    """kernelmon's window over a ``KernelMap``."""

    def __init__(
        self,
        kernel_map: KernelMap,
        *,
        use_tray: bool = True,
        settings_path: Path | str | None = None,
        window_state_path: Path | str | None = None,
        user_settings: Settings | None = None,
        run_folders: Sequence[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("kernelmon")
        self.setWindowIcon(app_icon())
        self.setObjectName("main_window")
        self.quitting = False
        self.is_finished = False
        self._finished_future: asyncio.Future[None] | None = None
        self._finish_task: asyncio.Task[None] | None = None
        self.start_dialog: StartKernelDialog | None = None
        self.window_state = QSettings(
            str(window_state_path or paths.window_state_file()), QSettings.Format.IniFormat
        )

        # The parts behind the widgets.
        self.tasks = TaskRunner(self)
        self.bridge = KernelBridge(kernel_map, parent=self)
        self.store = self.bridge.store
        self.event_log = EventLogView(self)
        self.event_log.attach(self.bridge)
        self.status = KernelStatusBar(self.bridge, self)
        self.setStatusBar(self.status)
        self.notifier = Notifier(self, self.status, self.event_log, self)
        self.consoles = ConsoleManager(kernel_map, self.tasks.spawn, self)
        self.commands = KernelCommands(
            kernel_map,
            self.bridge,
            self.notifier,
            Confirmations(self, self.window_state, self.store),
            self.consoles,
            self.tasks,
            self,
        )
        self.settings = SettingsController(
            kernel_map,
            self.notifier,
            Path(settings_path or paths.settings_file()),
            user_settings,
            run_folders,
            self,
        )
        self.notices = Notices(
            self.bridge, self.tasks, self.commands, self.notifier, self.status, self
        )

        # The widgets.
        self.table_model = KernelTableModel(self.bridge, self)
        self.proxy = KernelSortProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = KernelTableView(self.proxy, settings=self.window_state)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("splitter")
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.event_log)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)
        self.side_panel = SidePanel(self, SIDE_PANEL_SHORTCUT)
        self.details = KernelDetailsPane(self.bridge.history)
        self.details_dock = self.side_panel.make_dock("Details", "details_dock", self.details)
        self.culler_panel = CullerPanel(self.settings.user)
        self.culler_dock = self.side_panel.make_dock("Culling", "culler_dock", self.culler_panel)
        self.monitoring_panel = MonitoringPanel(
            self.settings.user, run_folders=self.settings.run_folders
        )
        self.monitoring_dock = self.side_panel.make_dock(
            "Discovery", "monitoring_dock", self.monitoring_panel
        )
        # Jupyter servers and gateways: a tab beside the others (see servers_panel.attach)
        self.servers_panel = ServersPanel(kernel_map, self.tasks.spawn, settings=self.settings)
        self.servers_dock = self.side_panel.make_dock("Servers", "servers_dock", self.servers_panel)
        self.servers_panel.attach(self.culler_panel, self.details)
        self.details_dock.raise_()
        self.help = HelpActions(self, self.notifier, self.store, lambda: self.settings.user)
        self.progress = self.status.progress
        self.actions_by_name = self._make_actions()
        self._tips = {name: a.toolTip() for name, a in self.actions_by_name.items()}
        self._make_menus_and_toolbar()
        self._connect()
        self.update_actions()
        self.update_culling_column()
        self.resize(1100, 600)
        self.saved_state = WindowState(self.window_state, self, self.splitter, self.table)
        self.saved_state.restore()
        self.side_panel.sync()
        self.update_culling_column()

        self.tray: KernelTray | None = None
        if use_tray and QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = self.create_tray()
            self.tray.show()

    # -- building ---------------------------------------------------------------------------

    def create_tray(self) -> KernelTray:
        """A tray icon over this window and its parts (not shown yet)."""
        return KernelTray(
            self, self.store, self.commands, self.settings, self.notifier, self.request_quit
        )

    def _make_actions(self) -> dict[str, QAction]:
        c, selected = self.commands, self.table.selected_kernel_ids
        acts = actions.make_actions(
            self,
            {
                "start": self.on_start_triggered,
                "restart": lambda: c.request_restart(selected()),
                "interrupt": lambda: c.request_interrupt(selected()),
                "shutdown": lambda: c.request_shutdown(selected()),
                "cleanup": lambda: c.request_cleanup(selected()),
                "shutdown_all": c.request_shutdown_all,
                "console": lambda: c.request_console(selected()),
                "copy_id": self.copy_selected_ids,
                "pause_culling": lambda: self.settings.set_paused(
                    self.actions_by_name["pause_culling"].isChecked()
                ),
                "quit": self.request_quit,
                "settings": lambda: self.side_panel.show_dock(self.culler_dock),
                "desktop_entry": lambda: self.help.set_entry(acts["desktop_entry"]),
                "autostart": lambda: self.help.set_autostart(acts["autostart"]),
                "about": self.help.show_about,
                "docs": self.help.open_docs,
                "diagnostics": self.help.copy_diagnostics,
            },
        )
        self.help.prepare(acts["desktop_entry"], acts["autostart"])
        acts["details"] = actions.details_toggle(self.details_dock)
        acts["side_panel"] = self.side_panel.action
        return acts

    def _make_menus_and_toolbar(self) -> None:
        actions.fill_window(self, self.actions_by_name, self.side_panel.views)

    def _connect(self) -> None:
        b, s, table = self.bridge, self.settings, self.table
        table.customContextMenuRequested.connect(self.on_table_context_menu_requested)
        table.doubleClicked.connect(lambda _i: self.actions_by_name["console"].trigger())
        table.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())
        table.selectionModel().selectionChanged.connect(lambda *_: self.update_details())
        b.kernel_removed.connect(self.consoles.on_kernel_removed)
        self.consoles.interrupt_requested.connect(lambda k: self.commands.request_interrupt([k]))
        self.consoles.restart_requested.connect(lambda k: self.commands.request_restart([k]))
        b.kernel_restarted.connect(self.consoles.on_kernel_restarted)
        # Once per burst of changes (the bridge's one throttle).
        self.store.kernels_changed.connect(lambda _ids: self.update_actions())
        b.kernel_changed.connect(lambda k, m, _f: self.details.update_model(k, m))
        b.kernel_removed.connect(lambda k, _r: self.details.kernel_removed(k))
        b.usage_sampled.connect(lambda *_: self.details.refresh_plots())
        self.commands.restarts_changed.connect(self.on_commands_restarts_changed)
        self.culler_panel.settings_changed.connect(s.apply_user)
        self.monitoring_panel.settings_changed.connect(s.apply_user)
        self.monitoring_panel.rescan_requested.connect(self.commands.request_rescan)
        s.settings_changed.connect(self.on_settings_settings_changed)
        s.paused_changed.connect(self.on_settings_paused_changed)
        s.run_folders_changed.connect(self.monitoring_panel.set_run_folders)

    # -- keeping the widgets current --------------------------------------------------------

    def select_kernel(self, kernel_id: str) -> None:
        """Select this kernel only."""
        self.select_kernels([kernel_id])

    def select_kernels(self, kernel_ids: list[str]) -> None:
        """Select these kernels (and no others)."""
        self.table.select_kernels(kernel_ids)

    def update_actions(self) -> None:
        """Enable the actions for the selected kernels, as the core allows."""
        models = [m for k in self.table.selected_kernel_ids() if (m := self.store.get(k))]
        actions.update_states(
            self.actions_by_name,
            self._tips,
            models,
            self.commands.restarting,
            bool(self.store.owned_ids()),
        )

    def update_details(self) -> None:
        """Show the first selected kernel in the details pane."""
        kid = self.table.selected_kernel_id()
        model = self.store.get(kid)
        if kid != self.details.kernel_id or model is None:
            self.details.show_kernel(kid, model)

    def update_culling_column(self) -> None:
        self.table.set_column_available(
            Column.CULL_ETA, self.bridge.culling or self.bridge.settings.cull_idle_timeout > 0
        )

    def on_commands_restarts_changed(self) -> None:
        self.progress.setVisible(bool(self.commands.restarting))
        self.update_actions()

    def on_settings_settings_changed(self, settings: Settings) -> None:
        self.culler_panel.set_settings(settings)
        self.monitoring_panel.set_settings(settings)
        self.update_culling_column()
        self.status.refresh()

    def on_settings_paused_changed(self, paused: bool) -> None:
        action = self.actions_by_name["pause_culling"]
        action.blockSignals(True)
        action.setChecked(paused)
        action.blockSignals(False)
        self.status.paused = paused
        self.status.refresh()
        self.update_culling_column()

    # -- what only the window does ----------------------------------------------------------

    def on_start_triggered(self) -> None:
        dialog = StartKernelDialog(self.bridge, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(
            lambda: self.commands.request_start(dialog.kernel_name, dialog.path)
        )
        self.start_dialog = dialog
        dialog.destroyed.connect(lambda *_: setattr(self, "start_dialog", None))
        dialog.open()

    def copy_selected_ids(self) -> None:
        """Copy the selected kernels' full ids, one a line."""
        ids = self.table.copy_selected_ids()
        if len(ids) == 1:
            self.notifier.status(f"Copied kernel id {ids[0]}")
        elif ids:
            self.notifier.status(f"Copied {len(ids)} kernel ids, one a line")

    def on_table_context_menu_requested(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        selection = self.table.selectionModel()
        if index.isValid() and not selection.isRowSelected(index.row(), QModelIndex()):
            self.table.selectRow(index.row())
        menu = self.build_context_menu()
        menu.exec(self.table.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def build_context_menu(self) -> QMenu:
        return actions.context_menu(self, self.actions_by_name)

    def raise_window(self) -> None:
        """Bring the window to the front: shown, restored if minimized (a maximized window
        stays maximized), raised and active."""
        if self.isMinimized():
            self.showNormal()
        else:
            self.show()
        self.raise_()
        self.activateWindow()

    # -- quitting ---------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_finished:
            event.accept()
            return
        event.ignore()
        if self.tray is not None and self.tray.isVisible() and not self.quitting:
            self.hide()
            self.tray.tell_still_running()
            return
        self.request_quit()

    def request_quit(self) -> None:
        """Quit: ask what to do with running kernels, then do all of it (or nothing)."""
        if self.quitting:
            return
        running = len(self.store.owned_ids())
        shut_down = True
        if running:
            choice = dialogs.ask_quit(self, running)
            if choice == dialogs.QuitChoice.CANCEL:
                return
            shut_down = choice == dialogs.QuitChoice.SHUT_DOWN
        self.quit_without_asking(shut_down)

    def quit_without_asking(self, shut_down: bool) -> None:
        """Quit, shutting the kernels down or leaving them running (e.g. on SIGTERM)."""
        if self.quitting:
            return
        logger.info("Quitting; %s", "shutting kernels down" if shut_down else "leaving kernels")
        self.quitting = True
        self.saved_state.save()
        self.hide()
        if self.tray is not None:
            self.tray.hide()
        self.notifier.status("Quitting…", lasting=True)
        self._finish_task = asyncio.get_running_loop().create_task(self._finish(shut_down))

    async def _finish(self, shut_down: bool) -> None:
        try:
            left = await self.commands.finish(QUIT_WAIT, shut_down)
            if not shut_down:
                logger.info("Left %d kernels running", left)
        except Exception:
            logger.exception("Quitting did not finish cleanly")
        finally:
            self.bridge.close()
            self.is_finished = True
            if self._finished_future is not None and not self._finished_future.done():
                self._finished_future.set_result(None)

    async def wait_finished(self) -> None:
        """Wait until the window has quit (``request_quit`` finished)."""
        if self.is_finished:
            return
        if self._finished_future is None:
            self._finished_future = asyncio.get_running_loop().create_future()
        await self._finished_future

    # -- for the app and tests --------------------------------------------------------------

    def save_window_state(self) -> None:
        self.saved_state.save()

    @property
    def kernel_map(self) -> Any:
        """The map the window was built over (the app's wiring and tests read it; nothing
        in the UI does: widgets read the store, actions go through ``commands``)."""
        return self.commands.kernel_map
