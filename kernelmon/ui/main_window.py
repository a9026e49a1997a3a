"""The main window: the kernel table, the event log, the culler panel, actions, status bar.

Slots never wait: an action asks what it must ask (through ``dialogs``), then starts the
core's coroutine as a task (``TaskRunner``). Failures reach the user as sentences in the
status bar, the event log and, for failed actions, a dialog; the app keeps running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QSettings,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QProgressBar,
    QSplitter,
    QSystemTrayIcon,
    QWidget,
)

from .. import paths
from ..core import KernelMap, RestartFailed, RestartTimeout, Settings
from ..settings_file import save_settings
from . import actions, dialogs
from .bridge import KernelBridge
from .console import ConsoleManager
from .culler_panel import CullerPanel
from .event_log import EventLogView
from .icons import app_icon
from .kernel_table import Column, KernelSortProxy, KernelTableModel, short_id
from .kernel_view import KernelTableView
from .start_dialog import StartKernelDialog
from .status_bar import KernelStatusBar
from .tasks import TaskRunner

logger = logging.getLogger(__name__)

MESSAGE_MS = 8000
#: The most consoles one "Open console" opens at once (one per selected kernel).
MAX_CONSOLES = 8
#: How many kernels a confirmation names before "and N more".
NAMED_IN_CONFIRMATION = 10
#: How long quitting waits for running actions (a restart, a start) to end by themselves.
QUIT_WAIT = 15.0


class MainWindow(QMainWindow):
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
        self._resume_settings: Settings | None = None
        self._restarting: set[str] = set()
        self.start_dialog: StartKernelDialog | None = None

        self.tasks = TaskRunner(self)
        self.tasks.task_failed.connect(self.on_tasks_task_failed)
        self.bridge = KernelBridge(kernel_map, parent=self)
        self.table_model = KernelTableModel(kernel_map, self)
        self.table_model.attach(self.bridge)
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

        self.culler_panel = CullerPanel(kernel_map.settings)
        self.culler_panel.settings_changed.connect(self.on_culler_panel_settings_changed)
        self.culler_dock = QDockWidget("Culler and buffering", self)
        self.culler_dock.setObjectName("culler_dock")
        self.culler_dock.setWidget(self.culler_panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.culler_dock)

        self.status = KernelStatusBar(kernel_map, self)
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

    def _make_table(self) -> KernelTableView:
        table = KernelTableView(self.proxy)
        table.customContextMenuRequested.connect(self.on_table_context_menu_requested)
        table.doubleClicked.connect(lambda _i: self.actions_by_name["console"].trigger())
        table.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())
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

    def _make_menus_and_toolbar(self) -> None:
        acts = self.actions_by_name
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(acts["quit"])
        actions.fill(self.menuBar().addMenu("&Kernel"), acts, actions.KERNEL_MENU)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.culler_dock.toggleViewAction())
        toolbar = self.addToolBar("Kernels")
        toolbar.setObjectName("toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        actions.fill(toolbar, acts, actions.TOOLBAR)

    def _connect_bridge(self) -> None:
        b = self.bridge
        b.kernel_removed.connect(self.consoles.on_kernel_removed)
        b.kernel_restarted.connect(self.consoles.on_kernel_restarted)
        for signal in (b.kernel_added, b.kernel_removed, b.kernel_changed):
            signal.connect(lambda *_: self.update_actions())
        for signal in (b.kernel_added, b.kernel_removed, b.kernel_changed):
            signal.connect(lambda *_: self.status.refresh())
        b.kernel_died.connect(self.on_bridge_kernel_died)
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
        model = self.table_model.kernel_model(kernel_id) or {}
        return f"{model.get('display_name') or 'kernel'} {short_id(kernel_id)}"

    def _state(self, kernel_id: str) -> str | None:
        model = self.table_model.kernel_model(kernel_id)
        return None if model is None else str(model.get("execution_state"))

    def can_interrupt(self, kernel_id: str) -> bool:
        return self._state(kernel_id) not in (None, "dead", "starting", "restarting")

    def can_open_console(self, kernel_id: str) -> bool:
        return self._state(kernel_id) not in (None, "dead", "starting")

    def update_actions(self) -> None:
        ids = [k for k in self.selected_kernel_ids() if self._state(k) is not None]
        acts = self.actions_by_name
        acts["restart"].setEnabled(any(k not in self._restarting for k in ids))
        acts["interrupt"].setEnabled(any(self.can_interrupt(k) for k in ids))
        acts["shutdown"].setEnabled(bool(ids))
        acts["console"].setEnabled(any(self.can_open_console(k) for k in ids))
        acts["copy_id"].setEnabled(bool(ids))
        acts["shutdown_all"].setEnabled(len(self.kernel_map) > 0)

    def update_culling_column(self) -> None:
        self.table.setColumnHidden(
            Column.CULL_ETA,
            not self.kernel_map.culling and self.kernel_map.settings.cull_idle_timeout <= 0,
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

    def on_bridge_kernel_died(self, kernel_id: str, reason: str, will_restart: bool) -> None:
        then = "; restarting it" if will_restart else ""
        self.status.showMessage(f"{self.kernel_label(kernel_id)} died: {reason}{then}", MESSAGE_MS)
        self.notified.emit("Kernel died", f"{self.kernel_label(kernel_id)}: {reason}{then}")

    # -- confirmations ----------------------------------------------------------------------

    def confirm(self, key: str, title: str, text: str, ok_text: str) -> bool:
        """Ask through ``dialogs.confirm`` unless the user said not to ask again."""
        setting = f"dont_ask/{key}"
        if str(self.window_state.value(setting, "false")).lower() == "true":
            return True
        accepted, dont_ask = dialogs.confirm(self, title, text, ok_text=ok_text)
        if accepted and dont_ask:
            self.window_state.setValue(setting, "true")
        return accepted

    def confirm_kernels(
        self, key: str, verb: str, kernel_ids: list[str], one: str, many: str
    ) -> bool:
        """One confirmation for ``verb`` on all of ``kernel_ids``, naming them."""
        labels = [self.kernel_label(k) for k in kernel_ids]
        if len(labels) == 1:
            return self.confirm(key, f"{verb} kernel", f"{verb} {labels[0]}? {one}", verb)
        named = ", ".join(labels[:NAMED_IN_CONFIRMATION])
        if len(labels) > NAMED_IN_CONFIRMATION:
            named += f" and {len(labels) - NAMED_IN_CONFIRMATION} more"
        return self.confirm(
            key, f"{verb} kernels", f"{verb} {len(labels)} kernels: {named}? {many}", verb
        )

    # -- actions ----------------------------------------------------------------------------

    def on_start_triggered(self) -> None:
        dialog = StartKernelDialog(self.kernel_map, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.start_kernel(dialog.kernel_name, dialog.path))
        self.start_dialog = dialog
        dialog.destroyed.connect(lambda *_: setattr(self, "start_dialog", None))
        dialog.open()

    def start_kernel(self, kernel_name: str | None = None, path: str | None = None) -> Any:
        name = kernel_name or self.kernel_map.default_kernel_name
        self.status.showMessage(f"Starting {name}…", MESSAGE_MS)
        return self.tasks.spawn(self._start(name, path), f"Starting kernel {name!r}")

    async def _start(self, name: str, path: str | None) -> str:
        kid = await self.kernel_map.start_kernel(name, path or None)
        self.status.showMessage(f"{self.kernel_label(kid)} started", MESSAGE_MS)
        return kid

    def restore_kernels(self) -> Any:
        """Take over the kernels an earlier kernelmon run left running (or crashed on)."""
        return self.tasks.spawn(self._restore(), "Taking over kernels of an earlier run")

    async def _restore(self) -> list[str]:
        adopted = await self.kernel_map.restore()
        if adopted:
            text = f"Took over {len(adopted)} kernel(s) left running by an earlier kernelmon"
            self.status.showMessage(text, MESSAGE_MS)
            self.event_log.add(None, text)
        return adopted

    def _known(self, kernel_ids: Sequence[str | None]) -> list[str]:
        return [k for k in dict.fromkeys(kernel_ids) if k is not None and k in self.kernel_map]

    def restart_kernel(self, kernel_id: str | None) -> Any:
        """Restart one kernel (asks first); its task, or None."""
        tasks = self.restart_kernels([kernel_id])
        return tasks[0] if tasks else None

    def restart_kernels(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Restart these kernels concurrently after one confirmation; their tasks."""
        ids = [k for k in self._known(kernel_ids) if k not in self._restarting]
        if not ids or not self.confirm_kernels(
            "restart",
            "Restart",
            ids,
            "Its variables and running code are lost.",
            "Their variables and running code are lost.",
        ):
            return []
        # Progress shows from the click until the kernels answer (or fail).
        self._restarting.update(ids)
        self.progress.show()
        self.update_actions()
        if len(ids) == 1:
            self.status.showMessage(
                f"Restarting {self.kernel_label(ids[0])}; waiting for it to answer…"
            )
        else:
            self.status.showMessage(f"Restarting {len(ids)} kernels; waiting for them to answer…")
        tasks = []
        for kid in ids:
            label = self.kernel_label(kid)
            tasks.append(self.tasks.spawn(self._restart(kid, label), f"Restarting {label}"))
        return tasks

    async def _restart(self, kernel_id: str, label: str) -> None:
        try:
            await self.kernel_map.restart_kernel(kernel_id)
        except (RestartTimeout, RestartFailed) as e:
            # The core logs it in the event log (ActionFailed); say it here too.
            self.report_problem(f"Restart of {label} failed", str(e), log=False)
            self.notified.emit("Restart failed", f"{label}: {e}")
            return
        finally:
            self._restarting.discard(kernel_id)
            self.progress.setVisible(bool(self._restarting))
            self.update_actions()
        self.status.showMessage(f"{label} restarted and answers again", MESSAGE_MS)

    def interrupt_kernel(self, kernel_id: str | None) -> Any:
        """Interrupt one kernel; its task, or None."""
        tasks = self.interrupt_kernels([kernel_id])
        return tasks[0] if tasks else None

    def interrupt_kernels(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Interrupt these kernels concurrently; their tasks."""
        tasks = []
        for kid in self._known(kernel_ids):
            label = self.kernel_label(kid)
            tasks.append(self.tasks.spawn(self._interrupt(kid, label), f"Interrupting {label}"))
        return tasks

    async def _interrupt(self, kernel_id: str, label: str) -> None:
        await self.kernel_map.interrupt_kernel(kernel_id)
        self.status.showMessage(f"Interrupted {label}", MESSAGE_MS)

    def shutdown_kernel(self, kernel_id: str | None) -> Any:
        """Shut one kernel down (asks first); its task, or None."""
        tasks = self.shutdown_kernels([kernel_id])
        return tasks[0] if tasks else None

    def shutdown_kernels(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Shut these kernels down concurrently after one confirmation; their tasks."""
        ids = self._known(kernel_ids)
        if not ids or not self.confirm_kernels(
            "shutdown", "Shut down", ids, "Its variables are lost.", "Their variables are lost."
        ):
            return []
        labels = [self.kernel_label(k) for k in ids]
        what = labels[0] if len(ids) == 1 else f"{len(ids)} kernels"
        self.status.showMessage(f"Shutting {what} down…", MESSAGE_MS)
        return [
            self.tasks.spawn(self._shutdown(kid, label), f"Shutting {label} down")
            for kid, label in zip(ids, labels, strict=True)
        ]

    async def _shutdown(self, kernel_id: str, label: str) -> None:
        await self.kernel_map.shutdown_kernel(kernel_id)
        self.status.showMessage(f"{label} shut down", MESSAGE_MS)

    def shutdown_all(self) -> Any:
        n = len(self.kernel_map)
        if n == 0:
            return None
        if not self.confirm(
            "shutdown_all",
            "Shut down all kernels",
            f"Shut all {n} kernel(s) down? Their variables are lost.",
            "Shut down all",
        ):
            return None
        self.status.showMessage(f"Shutting {n} kernel(s) down…", MESSAGE_MS)
        return self.tasks.spawn(self.kernel_map.shutdown_all(), "Shutting all kernels down")

    def open_console(self, kernel_id: str | None) -> Any:
        """Open (or raise) the console on one kernel; the console, or None."""
        consoles = self.open_consoles([kernel_id])
        return consoles[0] if consoles else None

    def open_consoles(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """A console per kernel, at most ``MAX_CONSOLES`` of them; the consoles."""
        ids = self._known(kernel_ids)
        if len(ids) > MAX_CONSOLES:
            self.status.showMessage(
                f"Opened consoles on the first {MAX_CONSOLES} of {len(ids)} kernels; "
                "select fewer to open the others",
                MESSAGE_MS,
            )
            ids = ids[:MAX_CONSOLES]
        return [self.consoles.open(kid) for kid in ids]

    def copy_selected_ids(self) -> None:
        """Copy the selected kernels' full ids, one a line."""
        ids = self.selected_kernel_ids()
        if not ids:
            return
        QGuiApplication.clipboard().setText("\n".join(ids))
        if len(ids) == 1:
            self.status.showMessage(f"Copied kernel id {ids[0]}", MESSAGE_MS)
        else:
            self.status.showMessage(f"Copied {len(ids)} kernel ids, one a line", MESSAGE_MS)

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

    # -- settings ---------------------------------------------------------------------------

    @property
    def culling_paused(self) -> bool:
        return self._resume_settings is not None

    def user_settings(self) -> Settings:
        """The settings the user chose (while culling is paused, not the applied ones)."""
        return self._resume_settings or self.kernel_map.settings

    def on_culler_panel_settings_changed(self, settings: Settings) -> None:
        self.apply_user_settings(settings)

    def apply_user_settings(self, settings: Settings) -> None:
        """Use and save settings the user chose."""
        self.culler_panel.set_settings(settings)
        if self._resume_settings is not None:
            self._resume_settings = settings
            self.kernel_map.apply_settings(dataclasses.replace(settings, cull_idle_timeout=0))
        else:
            self.kernel_map.apply_settings(settings)
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
        if paused:
            self._resume_settings = self.kernel_map.settings
            self.kernel_map.apply_settings(
                dataclasses.replace(self._resume_settings, cull_idle_timeout=0)
            )
            self.event_log.add(None, "culling paused")
        else:
            resume, self._resume_settings = self._resume_settings, None
            assert resume is not None
            self.kernel_map.apply_settings(resume)
            self.event_log.add(None, "culling resumed")
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

    def request_quit(self) -> None:
        """Quit: ask what to do with running kernels, then do all of it (or nothing)."""
        if self._quitting:
            return
        running = len(self.kernel_map)
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
            left = len(self.kernel_map)
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
