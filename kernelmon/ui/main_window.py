"""The main window: the kernel table, the event log, the culler panel, actions, status bar.

Slots never wait: an action asks what it must ask (through ``dialogs``), then starts the
core's coroutine as a task (``TaskRunner``). Failures reach the user as sentences in the
status bar, the event log and, for failed actions, a dialog; the app keeps running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QSettings,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QSystemTrayIcon,
    QWidget,
)

from .. import paths
from ..core import KernelMap, Settings
from ..settings_file import save_settings
from . import actions, dialogs
from .bridge import KernelBridge
from .console import ConsoleManager
from .culler_panel import CullerPanel
from .details_pane import KernelDetailsPane
from .event_log import EventLogView
from .icons import app_icon, icon
from .kernel_actions import MESSAGE_MS, KernelActionsMixin
from .kernel_table import Column, KernelSortProxy, KernelTableModel, short_id
from .kernel_view import KernelTableView
from .monitoring_panel import MonitoringPanel
from .ownership import (
    can_interrupt,
    can_restart,
    is_stale,
    job_finished_text,
    memory_warning_text,
    restart_refusal,
)
from .start_dialog import StartKernelDialog
from .status_bar import KernelStatusBar
from .tasks import TaskRunner

logger = logging.getLogger(__name__)

#: How long quitting waits for running actions (a restart, a start) to end by themselves.
QUIT_WAIT = 15.0
#: While the state folder has a problem, it is looked at again this often (ms), so the
#: warning goes by itself once the folder is fixed.
STATE_RECHECK_MS = 30_000
#: Shows and hides the kernel details pane.
DETAILS_SHORTCUT = "Ctrl+D"


class MainWindow(QMainWindow, KernelActionsMixin):
    """kernelmon's window over a ``KernelMap``."""

    #: The window finished quitting (kernels shut down or left running as the user chose).
    finished = Signal()
    #: ``(title, text)``: something the user should hear about (the tray shows it).
    notified = Signal(str, str)

    def __init__(
        self,
        kernel_map: KernelMap,
        *,
        use_tray: bool = True,
        settings_path: Any = None,
        window_state_path: Any = None,
        user_settings: Settings | None = None,
        run_folders: Sequence[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.kernel_map = kernel_map
        self.settings_path = settings_path or paths.settings_file()
        self.window_state = QSettings(
            str(window_state_path or paths.window_state_file()), QSettings.Format.IniFormat
        )
        self.setWindowTitle("kernelmon")
        self.setWindowIcon(app_icon())
        self.setObjectName("main_window")
        self._quitting = False
        self.is_finished = False
        self._finished_future: asyncio.Future[None] | None = None
        self._finish_task: asyncio.Task[None] | None = None
        #: The settings the user chose (saved); the map runs them with culling off while
        #: paused and with the folders of ``--runtime-dir`` added.
        self._user_settings = user_settings or kernel_map.settings
        self._paused = False
        self.run_folders = tuple(run_folders)
        self._restarting: set[str] = set()
        self._state_problem_shown = False
        self.state_recheck_timer = QTimer(self)
        self.state_recheck_timer.setInterval(STATE_RECHECK_MS)
        self.state_recheck_timer.timeout.connect(self.recheck_state_folder)
        self.start_dialog: StartKernelDialog | None = None

        self.tasks = TaskRunner(self)
        self.tasks.task_failed.connect(self.on_tasks_task_failed)
        self.bridge = KernelBridge(kernel_map, parent=self)
        self.store = self.bridge.store
        self.table_model = KernelTableModel(self.bridge, self)
        self.proxy = KernelSortProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.table = self._make_table()
        self.event_log = EventLogView(self)
        self.event_log.attach(self.bridge)
        self.consoles = ConsoleManager(kernel_map, self.tasks.spawn, self)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("splitter")
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.event_log)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

        self.details = KernelDetailsPane(self.bridge.history)
        self.details_dock = self._make_dock("Kernel details", "details_dock", self.details)
        self.culler_panel = CullerPanel(self._user_settings)
        self.culler_panel.settings_changed.connect(self.on_culler_panel_settings_changed)
        self.culler_dock = self._make_dock("Culler and buffering", "culler_dock", self.culler_panel)
        self.monitoring_panel = MonitoringPanel(self._user_settings, run_folders=self.run_folders)
        self.monitoring_panel.settings_changed.connect(self.on_monitoring_panel_settings_changed)
        self.monitoring_panel.rescan_requested.connect(self.rescan)
        self.monitoring_dock = self._make_dock(
            "Discovery and resources", "monitoring_dock", self.monitoring_panel
        )
        self.tabifyDockWidget(self.details_dock, self.culler_dock)
        self.tabifyDockWidget(self.culler_dock, self.monitoring_dock)
        self.details_dock.raise_()

        self.status = KernelStatusBar(self.bridge, self)
        self.setStatusBar(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setToolTip("Waiting for a restarted kernel to answer")
        self.progress.hide()
        self.status.addPermanentWidget(self.progress)

        self.actions_by_name: dict[str, QAction] = {}
        self._make_actions()
        self._make_menus_and_toolbar()
        self._connect_bridge()
        self.update_actions()
        self.update_culling_column()
        self.resize(1100, 600)
        self.restore_window_state()

        self.tray: Any = None
        if use_tray and QSystemTrayIcon.isSystemTrayAvailable():
            from .tray import KernelTray

            self.tray = KernelTray(self)
            self.tray.show()

    # -- building ---------------------------------------------------------------------------

    def _make_dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        scroll = QScrollArea()
        scroll.setWidget(widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _make_table(self) -> KernelTableView:
        table = KernelTableView(self.proxy)
        table.customContextMenuRequested.connect(self.on_table_context_menu_requested)
        table.doubleClicked.connect(lambda _i: self.actions_by_name["console"].trigger())
        table.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())
        table.selectionModel().selectionChanged.connect(lambda *_: self.update_details())
        return table

    def _make_actions(self) -> None:
        self.actions_by_name = actions.make_actions(
            self,
            {
                "start": self.on_start_triggered,
                "restart": lambda: self.restart_kernels(self.selected_kernel_ids()),
                "interrupt": lambda: self.interrupt_kernels(
                    [k for k in self.selected_kernel_ids() if self.can_interrupt(k)]
                ),
                "shutdown": lambda: self.shutdown_kernels(self.selected_kernel_ids()),
                "cleanup": lambda: self.clean_up_kernels(
                    [k for k in self.selected_kernel_ids() if self.is_stale(k)]
                ),
                "shutdown_all": self.shutdown_all,
                "console": lambda: self.open_consoles(
                    [k for k in self.selected_kernel_ids() if self.can_open_console(k)]
                ),
                "copy_id": self.copy_selected_ids,
                "pause_culling": lambda: self.set_culling_paused(
                    self.actions_by_name["pause_culling"].isChecked()
                ),
                "quit": self.request_quit,
            },
        )
        details = self.details_dock.toggleViewAction()
        details.setObjectName("details")
        details.setIcon(icon("action-details"))
        details.setText("Kernel &details")
        details.setShortcut(QKeySequence(DETAILS_SHORTCUT))
        details.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = details.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        details.setToolTip(f"Show or hide the selected kernel's details and plots ({keys})")
        self.addAction(details)
        self.actions_by_name["details"] = details
        self._restart_tip = self.actions_by_name["restart"].toolTip()

    def _make_menus_and_toolbar(self) -> None:
        acts = self.actions_by_name
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(acts["quit"])
        actions.fill(self.menuBar().addMenu("&Kernel"), acts, actions.KERNEL_MENU)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(acts["details"])
        view_menu.addAction(self.culler_dock.toggleViewAction())
        view_menu.addAction(self.monitoring_dock.toggleViewAction())
        toolbar = self.addToolBar("Kernels")
        toolbar.setObjectName("toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        actions.fill(toolbar, acts, actions.TOOLBAR)

    def _connect_bridge(self) -> None:
        b = self.bridge
        b.kernel_removed.connect(self.consoles.on_kernel_removed)
        b.kernel_restarted.connect(self.consoles.on_kernel_restarted)
        # Once per burst of changes (the bridge's one throttle); figures alone change no
        # action and are not in a burst.
        self.store.kernels_changed.connect(lambda _ids: self.update_actions())
        b.kernel_changed.connect(lambda k, m, _f: self.details.update_model(k, m))
        b.kernel_removed.connect(lambda k, _r: self.details.kernel_removed(k))
        b.usage_sampled.connect(self.on_bridge_usage_sampled)
        b.memory_warning.connect(self.on_bridge_memory_warning)
        b.job_finished.connect(self.on_bridge_job_finished)
        b.kernel_died.connect(self.on_bridge_kernel_died)
        b.state_problem.connect(self.on_bridge_state_problem)
        b.kernel_culled.connect(
            lambda k, r: self.notified.emit("Kernel culled", f"{self.kernel_label(k)}: {r}")
        )

    # -- reading ----------------------------------------------------------------------------

    def selected_kernel_id(self) -> str | None:
        """The first selected kernel (in table order)."""
        return self.table.selected_kernel_id()

    def selected_kernel_ids(self) -> list[str]:
        """Every selected kernel, in table order."""
        return self.table.selected_kernel_ids()

    def select_kernel(self, kernel_id: str) -> None:
        """Select this kernel only."""
        self.select_kernels([kernel_id])

    def select_kernels(self, kernel_ids: list[str]) -> None:
        """Select these kernels (and no others)."""
        selection = QItemSelection()
        for kid in kernel_ids:
            row = self.table_model.row_of(kid)
            if row >= 0:
                index = self.proxy.mapFromSource(self.table_model.index(row, 0))
                selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag
        selection_model = self.table.selectionModel()
        selection_model.select(selection, flags.ClearAndSelect | flags.Rows)
        if not selection.isEmpty():
            selection_model.setCurrentIndex(selection.indexes()[0], flags.NoUpdate)

    def kernel_label(self, kernel_id: str) -> str:
        model = self.store.get(kernel_id) or {}
        return f"{model.get('display_name') or 'kernel'} {short_id(kernel_id)}"

    def _model(self, kernel_id: str) -> dict[str, Any]:
        return self.store.get(kernel_id) or {}

    def _state(self, kernel_id: str) -> str | None:
        model = self.store.get(kernel_id)
        return None if model is None else str(model.get("execution_state"))

    def is_stale(self, kernel_id: str) -> bool:
        return is_stale(self._model(kernel_id))

    def can_restart(self, kernel_id: str) -> bool:
        return can_restart(self._model(kernel_id)) and kernel_id not in self._restarting

    def can_interrupt(self, kernel_id: str) -> bool:
        return can_interrupt(self._model(kernel_id))

    def can_open_console(self, kernel_id: str) -> bool:
        model = self._model(kernel_id)
        return self._state(kernel_id) not in (None, "dead", "starting") and not is_stale(model)

    def owned_kernel_ids(self) -> list[str]:
        """The kernels kernelmon started (what quitting and "Shut down all" act on)."""
        return self.store.owned_ids()

    def update_actions(self) -> None:
        ids = [k for k in self.selected_kernel_ids() if self._state(k) is not None]
        acts = self.actions_by_name
        restart = acts["restart"]
        restart.setEnabled(any(self.can_restart(k) for k in ids))
        refused = [k for k in ids if not can_restart(self._model(k))]
        if refused and len(refused) == len(ids):
            tip = restart_refusal(self._model(refused[0]))
            restart.setToolTip(f"Cannot restart: {tip}.")
        elif refused:
            restart.setToolTip(
                f"{self._restart_tip}. {len(refused)} selected kernel(s) kernelmon did not "
                "start are left alone."
            )
        else:
            restart.setToolTip(self._restart_tip)
        restart.setStatusTip(restart.toolTip())
        acts["interrupt"].setEnabled(any(self.can_interrupt(k) for k in ids))
        acts["shutdown"].setEnabled(bool(ids))
        acts["cleanup"].setEnabled(any(self.is_stale(k) for k in ids))
        acts["console"].setEnabled(any(self.can_open_console(k) for k in ids))
        acts["copy_id"].setEnabled(bool(ids))
        acts["shutdown_all"].setEnabled(bool(self.owned_kernel_ids()))

    def update_details(self) -> None:
        """Show the first selected kernel in the details pane."""
        kid = self.selected_kernel_id()
        model = self.store.get(kid)
        if kid != self.details.kernel_id or model is None:
            self.details.show_kernel(kid, model)

    def update_culling_column(self) -> None:
        self.table.setColumnHidden(
            Column.CULL_ETA,
            not self.bridge.culling and self.bridge.settings.cull_idle_timeout <= 0,
        )

    # -- telling the user -------------------------------------------------------------------

    def report_problem(
        self,
        title: str,
        text: str,
        *,
        dialog: bool = True,
        log: bool = True,
        kernel_id: str | None = None,
    ) -> None:
        """A failure in words: status bar, event log, (a dialog), and the tray."""
        logger.warning("%s: %s", title, text)
        self.status.showMessage(f"{title}: {text}", MESSAGE_MS * 2)
        if log:
            self.event_log.add(kernel_id, f"{title}: {text}", "error")
        if dialog:
            dialogs.show_error(self, title, text)

    def show_internal_error(self, detail: str) -> None:
        self.report_problem("Internal error", detail + "\n\nDetails are in the log file.")

    def on_tasks_task_failed(self, what: str, message: str, expected: bool) -> None:
        if not expected:
            self.show_internal_error(f"{what} failed unexpectedly: {message}")
        else:
            self.report_problem(f"{what} failed", message)

    def tell(
        self, title: str, text: str, kernel_id: str | None = None, level: str = "info"
    ) -> None:
        """Something the user should hear about: a tray message when there is a tray, else
        the status bar; the event log keeps it either way."""
        self.event_log.add(kernel_id, text, level)
        if self.tray is not None:
            self.notified.emit(title, text)
        else:
            self.status.showMessage(f"{title}: {text}", MESSAGE_MS * 2)

    def on_bridge_memory_warning(self, kernel_id: str, rss: int, limit: int, total: bool) -> None:
        label = self.kernel_label(kernel_id) if kernel_id else ""
        title, text = memory_warning_text(label, int(rss), int(limit), total)
        self.tell(title, text, kernel_id or None, "warning")

    def on_bridge_job_finished(self, kernel_id: str, seconds: float) -> None:
        title, text = job_finished_text(self.kernel_label(kernel_id), seconds)
        self.tell(title, text, kernel_id)

    def on_bridge_usage_sampled(self, total_cpu: float | None, total_rss: int) -> None:
        self.status.set_usage(total_cpu, total_rss)
        self.details.refresh_plots()

    def recheck_state_folder(self) -> None:
        """Look at the state folder again (off the loop; its problems come as events)."""
        self.tasks.spawn(self.kernel_map.check_state_folder(), "Checking the state folder")

    def on_bridge_state_problem(self, text: str) -> None:
        """The state folder's problem (or "" once it is over): a lasting warning in the
        status bar, the event log, and a dialog the first time."""
        self.status.set_problem(text)
        if not text:
            self.state_recheck_timer.stop()
            self.event_log.add(None, "kernelmon's state folder works again")
            return
        self.state_recheck_timer.start()
        first = not self._state_problem_shown
        self._state_problem_shown = True
        self.report_problem("kernelmon's state folder", text, dialog=first)

    def on_bridge_kernel_died(self, kernel_id: str, reason: str, will_restart: bool) -> None:
        then = "; restarting it" if will_restart else ""
        self.status.showMessage(f"{self.kernel_label(kernel_id)} died: {reason}{then}", MESSAGE_MS)
        self.notified.emit("Kernel died", f"{self.kernel_label(kernel_id)}: {reason}{then}")

    # -- the context menu -------------------------------------------------------------------

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

    # -- another launch ---------------------------------------------------------------------

    def raise_window(self) -> None:
        """Bring the window to the front: shown, restored if minimized (a maximized window
        stays maximized), raised and active."""
        if self.isMinimized():
            self.showNormal()
        else:
            self.show()
        self.raise_()
        self.activateWindow()

    def take_launch(
        self,
        *,
        root_dir: str | None = None,
        run_folders: Sequence[str] = (),
        no_tray: bool = False,
        log_level: str | None = None,
        apply_log_level: Callable[[str], None] | None = None,
        launcher_pid: int | None = None,
    ) -> tuple[list[str], list[str]]:
        """Another launch of kernelmon handed its options over: apply what can be applied
        (the folders absolute already), raise the window and say in the event log and the
        status bar what was applied and what was ignored; returns both lists."""
        applied: list[str] = []
        ignored: list[str] = []
        if root_dir is not None and root_dir != self._user_settings.root_dir:
            if os.path.isdir(root_dir):
                self.apply_user_settings(
                    dataclasses.replace(self._user_settings, root_dir=root_dir)
                )
                applied.append(f"--root-dir {root_dir} (new kernels work under it)")
            else:
                ignored.append(f"--root-dir {root_dir} (not a folder)")
        new = [f for f in dict.fromkeys(run_folders) if f not in self.run_folders]
        missing = [f for f in new if not os.path.isdir(f)]
        ignored += [f"--runtime-dir {f} (not a folder)" for f in missing]
        new = [f for f in new if f not in missing]
        if new:
            self.run_folders += tuple(new)
            self.monitoring_panel.set_run_folders(self.run_folders)
            self.kernel_map.apply_settings(self.effective_settings(self._user_settings))
            applied += [f"--runtime-dir {f} (watched for this run)" for f in new]
        if log_level is not None and apply_log_level is not None:
            apply_log_level(log_level)
            applied.append(f"--log-level {log_level}")
        if no_tray and self.tray is not None:
            ignored.append("--no-tray (the tray icon stays until kernelmon is restarted)")
        self.raise_window()
        who = f" (pid {launcher_pid})" if launcher_pid else ""
        text = f"Another launch of kernelmon{who} was handed over to this window"
        if applied:
            text += "; applied: " + "; ".join(applied)
        if ignored:
            text += "; ignored: " + "; ".join(ignored)
        self.event_log.add(None, text, "warning" if ignored else "info")
        self.status.showMessage(text, MESSAGE_MS * 2)
        logger.info("%s", text)
        return applied, ignored

    # -- settings ---------------------------------------------------------------------------

    @property
    def culling_paused(self) -> bool:
        return self._paused

    def user_settings(self) -> Settings:
        """The settings the user chose (while culling is paused, not the applied ones)."""
        return self._user_settings

    def effective_settings(self, settings: Settings) -> Settings:
        """What the kernel map runs for the user's ``settings``: culling off while paused,
        and the folders given on the command line watched too."""
        changes: dict[str, Any] = {}
        if self._paused:
            changes["cull_idle_timeout"] = 0
        if self.run_folders:
            folders = tuple(getattr(settings, "runtime_folders", ()))
            changes["runtime_folders"] = folders + tuple(
                f for f in self.run_folders if f not in folders
            )
        return dataclasses.replace(settings, **changes) if changes else settings

    def on_culler_panel_settings_changed(self, settings: Settings) -> None:
        self.apply_user_settings(settings)

    def on_monitoring_panel_settings_changed(self, settings: Settings) -> None:
        self.apply_user_settings(settings)

    def apply_user_settings(self, settings: Settings) -> None:
        """Use and save settings the user chose."""
        self._user_settings = settings
        self.culler_panel.set_settings(settings)
        self.monitoring_panel.set_settings(settings)
        self.kernel_map.apply_settings(self.effective_settings(settings))
        problem = save_settings(settings, self.settings_path)
        if problem:
            self.report_problem("Settings not saved", problem)
        else:
            self.status.showMessage("Settings applied and saved", MESSAGE_MS)
        self.update_culling_column()
        self.status.refresh()

    def set_culling_paused(self, paused: bool) -> None:
        """Pause culling without changing the saved settings (resumed on the next launch)."""
        if paused == self.culling_paused:
            return
        self._paused = paused
        self.kernel_map.apply_settings(self.effective_settings(self._user_settings))
        self.event_log.add(None, "culling paused" if paused else "culling resumed")
        action = self.actions_by_name["pause_culling"]
        action.blockSignals(True)
        action.setChecked(paused)
        action.blockSignals(False)
        self.status.paused = paused
        self.status.refresh()
        self.update_culling_column()

    # -- window state -----------------------------------------------------------------------

    def restore_window_state(self) -> None:
        ws = self.window_state
        for key, restore in (
            ("geometry", self.restoreGeometry),
            ("window_state", self.restoreState),
            ("splitter", self.splitter.restoreState),
            ("table_header", self.table.horizontalHeader().restoreState),
        ):
            value = ws.value(key)
            if key == "table_header" and str(ws.value("table_columns")) != str(len(Column)):
                continue  # saved by a version with other columns
            if value is not None:
                try:
                    restore(value)
                except (TypeError, ValueError):
                    logger.info("Ignoring saved %s", key)
        self.update_culling_column()

    def save_window_state(self) -> None:
        ws = self.window_state
        ws.setValue("geometry", self.saveGeometry())
        ws.setValue("window_state", self.saveState())
        ws.setValue("splitter", self.splitter.saveState())
        ws.setValue("table_header", self.table.horizontalHeader().saveState())
        ws.setValue("table_columns", len(Column))
        ws.sync()

    # -- quitting ---------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_finished:
            event.accept()
            return
        event.ignore()
        if self.tray is not None and self.tray.isVisible() and not self._quitting:
            self.hide()
            self.tray.tell_still_running()
            return
        self.request_quit()

    @property
    def quitting(self) -> bool:
        """Quitting has begun (kernels are being shut down or left)."""
        return self._quitting

    def request_quit(self) -> None:
        """Quit: ask what to do with running kernels, then do all of it (or nothing)."""
        if self._quitting:
            return
        running = len(self.owned_kernel_ids())
        shut_down = True
        if running:
            choice = dialogs.ask_quit(self, running)
            if choice == dialogs.QuitChoice.CANCEL:
                return
            shut_down = choice == dialogs.QuitChoice.SHUT_DOWN
        self.quit_without_asking(shut_down)

    def quit_without_asking(self, shut_down: bool) -> None:
        """Quit, shutting the kernels down or leaving them running (e.g. on SIGTERM)."""
        if self._quitting:
            return
        logger.info("Quitting; %s", "shutting kernels down" if shut_down else "leaving kernels")
        self._quitting = True
        self.save_window_state()
        self.hide()
        if self.tray is not None:
            self.tray.hide()
        self.status.showMessage("Quitting…")
        self._finish_task = asyncio.get_running_loop().create_task(self._finish(shut_down))

    async def _finish(self, shut_down: bool) -> None:
        try:
            await self.tasks.finish(timeout=QUIT_WAIT)
            await self.consoles.close_all()
            left = len(self.owned_kernel_ids())  # others' kernels are never shut down
            await self.kernel_map.close(shutdown_kernels=shut_down)
            if not shut_down:
                logger.info("Left %d kernel(s) running", left)
        except Exception:
            logger.exception("Quitting did not finish cleanly")
        finally:
            self.bridge.close()
            self.is_finished = True
            self.finished.emit()
            if self._finished_future is not None and not self._finished_future.done():
                self._finished_future.set_result(None)

    async def wait_finished(self) -> None:
        """Wait until the window has quit (``request_quit`` finished)."""
        if self.is_finished:
            return
        if self._finished_future is None:
            self._finished_future = asyncio.get_running_loop().create_future()
        await self._finished_future
