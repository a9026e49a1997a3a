"""What the window does to kernels: start, restart, interrupt, shut down, clean up, and the
questions it asks first. A mixin of ``MainWindow`` (which provides the attributes below).

Slots never wait: an action asks what it must ask (through ``dialogs``), then starts the
core's coroutine as a task (``TaskRunner``). kernelmon's own kernels are asked about once,
with "don't ask again"; before acting on another application's kernel the window always
warns, naming that application.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from ..core import RestartFailed, RestartTimeout
from . import dialogs
from .figures import is_owned
from .ownership import can_restart, can_shut_down, foreign_warning, is_foreign, restart_refusal
from .start_dialog import StartKernelDialog

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings, SignalInstance
    from PySide6.QtWidgets import QProgressBar

    from ..core import KernelMap
    from .console import ConsoleManager
    from .event_log import EventLogView
    from .status_bar import KernelStatusBar
    from .store import KernelStore
    from .tasks import TaskRunner

logger = logging.getLogger(__name__)

MESSAGE_MS = 8000
#: The most consoles one "Open console" opens at once (one per selected kernel).
MAX_CONSOLES = 8
#: How many kernels a confirmation names before "and N more".
NAMED_IN_CONFIRMATION = 10


class KernelActionsMixin:
    """The actions of ``MainWindow`` on kernels."""

    def _widget(self) -> QWidget:
        """The window, as the parent of the questions it asks."""
        return cast(QWidget, self)

    if TYPE_CHECKING:
        kernel_map: KernelMap
        store: KernelStore
        window_state: QSettings
        tasks: TaskRunner
        status: KernelStatusBar
        progress: QProgressBar
        event_log: EventLogView
        consoles: ConsoleManager
        notified: SignalInstance
        start_dialog: StartKernelDialog | None
        _restarting: set[str]

        def kernel_label(self, kernel_id: str) -> str: ...
        def _model(self, kernel_id: str) -> dict[str, Any]: ...
        def can_restart(self, kernel_id: str) -> bool: ...
        def is_stale(self, kernel_id: str) -> bool: ...
        def owned_kernel_ids(self) -> list[str]: ...
        def update_actions(self) -> None: ...
        def selected_kernel_ids(self) -> list[str]: ...
        def report_problem(
            self,
            title: str,
            text: str,
            *,
            dialog: bool = True,
            log: bool = True,
            kernel_id: str | None = None,
        ) -> None: ...

    # -- confirmations ----------------------------------------------------------------------

    def confirm(self, key: str, title: str, text: str, ok_text: str) -> bool:
        """Ask through ``dialogs.confirm`` unless the user said not to ask again."""
        setting = f"dont_ask/{key}"
        if str(self.window_state.value(setting, "false")).lower() == "true":
            return True
        accepted, dont_ask = dialogs.confirm(self._widget(), title, text, ok_text=ok_text)
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

    def confirm_foreign(self, verb: str, doing: str, kernel_ids: list[str]) -> bool:
        """Ask before acting on kernels other applications started, naming each one's
        owner. Never skipped by "don't ask again": the risk is another application's."""
        foreign = [k for k in kernel_ids if is_foreign(self._model(k))]
        if not foreign:
            return True
        lines = [
            f"{self.kernel_label(k)}: {foreign_warning(self._model(k), doing)}"
            for k in foreign[:NAMED_IN_CONFIRMATION]
        ]
        if len(foreign) > NAMED_IN_CONFIRMATION:
            lines.append(f"… and {len(foreign) - NAMED_IN_CONFIRMATION} more.")
        if len(foreign) == 1:
            title = f"{verb} another application's kernel"
            question = f"{verb} {self.kernel_label(foreign[0])} anyway?"
            lines = [foreign_warning(self._model(foreign[0]), doing)]
        else:
            title = f"{verb} other applications' kernels"
            question = f"{verb} these {len(foreign)} kernels anyway?"
        text = "\n".join(lines) + "\n\n" + question
        accepted, _ = dialogs.confirm(
            self._widget(), title, text, ok_text=verb, can_skip=False, warning=True
        )
        return accepted

    # -- actions ----------------------------------------------------------------------------

    def on_start_triggered(self) -> None:
        dialog = StartKernelDialog(self.kernel_map, self._widget())
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

    def restore_and_monitor(self) -> Any:
        """Take over an earlier run's kernels, then start watching every kernel on the
        machine and sampling their resources (in this order: an earlier run's kernels are
        kernelmon's own, not orphans)."""
        return self.tasks.spawn(self._restore_and_monitor(), "Starting to watch kernels")

    async def _restore_and_monitor(self) -> None:
        await self.kernel_map.check_state_folder()  # its problems are told as events
        try:
            await self._restore()
        except Exception as e:  # still watch the others
            logger.exception("Taking over an earlier run's kernels failed")
            self.report_problem("Taking over kernels of an earlier run failed", str(e))
        await self.start_monitoring()

    async def start_monitoring(self) -> None:
        """Start discovery (if on in the settings) and resource sampling."""
        await self.kernel_map.start_monitoring()
        self.status.set_usage(*self.kernel_map.total_usage())

    def rescan(self) -> Any:
        """Look for other applications' kernels now; the task."""
        self.status.showMessage("Looking for kernels…", MESSAGE_MS)
        return self.tasks.spawn(self.kernel_map.rescan(), "Looking for kernels")

    def _known(self, kernel_ids: Sequence[str | None]) -> list[str]:
        return [k for k in dict.fromkeys(kernel_ids) if k is not None and k in self.store]

    def restart_kernel(self, kernel_id: str | None) -> Any:
        """Restart one kernel (asks first); its task, or None."""
        tasks = self.restart_kernels([kernel_id])
        return tasks[0] if tasks else None

    def restart_kernels(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Restart these kernels concurrently after one confirmation; their tasks. Kernels
        kernelmon did not start are left alone (it cannot start them again)."""
        known = self._known(kernel_ids)
        refused = [k for k in known if not can_restart(self._model(k))]
        if refused:
            label = self.kernel_label(refused[0])
            why = restart_refusal(self._model(refused[0]))
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            self.status.showMessage(f"Not restarting {label}{more}: {why}", MESSAGE_MS * 2)
        ids = [k for k in known if self.can_restart(k)]
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
        """Interrupt these kernels concurrently (other applications' kernels after a
        warning); their tasks."""
        ids = [k for k in self._known(kernel_ids) if not self.is_stale(k)]
        if not self.confirm_foreign("Interrupt", "interrupting it", ids):
            return []
        tasks = []
        for kid in ids:
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
        """Shut these kernels down concurrently after one confirmation (and a warning for
        other applications' kernels); their tasks. Stale ones are cleaned up instead."""
        known = self._known(kernel_ids)
        stale = [k for k in known if self.is_stale(k)]
        ids = [k for k in known if can_shut_down(self._model(k))]
        owned = [k for k in ids if is_owned(self._model(k))]
        if owned and not self.confirm_kernels(
            "shutdown", "Shut down", owned, "Its variables are lost.", "Their variables are lost."
        ):
            return []
        if not self.confirm_foreign("Shut down", "shutting it down", ids):
            return []
        cleanups = self.clean_up_kernels(stale) if stale else []
        if not ids:
            return cleanups
        labels = [self.kernel_label(k) for k in ids]
        what = labels[0] if len(ids) == 1 else f"{len(ids)} kernels"
        self.status.showMessage(f"Shutting {what} down…", MESSAGE_MS)
        return cleanups + [
            self.tasks.spawn(self._shutdown(kid, label), f"Shutting {label} down")
            for kid, label in zip(ids, labels, strict=True)
        ]

    def clean_up_kernels(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Remove the connection files stale kernels left behind; their tasks."""
        ids = [k for k in self._known(kernel_ids) if self.is_stale(k)]
        if not ids:
            return []
        files = [str(self._model(k).get("connection_file") or "") for k in ids]
        named = "\n".join(f for f in files[:NAMED_IN_CONFIRMATION] if f)
        if not self.confirm(
            "cleanup",
            "Clean up connection files",
            f"No process runs for {len(ids)} kernel(s); remove what is left of them?\n\n{named}",
            "Clean up",
        ):
            return []
        return [
            self.tasks.spawn(self._clean_up(kid, self.kernel_label(kid)), "Cleaning up")
            for kid in ids
        ]

    async def _clean_up(self, kernel_id: str, label: str) -> None:
        await self.kernel_map.shutdown_kernel(kernel_id)
        self.status.showMessage(f"Removed the connection file of {label}", MESSAGE_MS)

    async def _shutdown(self, kernel_id: str, label: str) -> None:
        await self.kernel_map.shutdown_kernel(kernel_id)
        self.status.showMessage(f"{label} shut down", MESSAGE_MS)

    def shutdown_all(self) -> Any:
        """Shut down every kernel kernelmon started (never other applications')."""
        n = len(self.owned_kernel_ids())
        if n == 0:
            return None
        # Stale connection files have no process: they are not kernels that keep running.
        others = sum(is_foreign(m) for m in self.store.models())
        keep = f" The {others} kernel(s) other applications started keep running." if others else ""
        if not self.confirm(
            "shutdown_all",
            "Shut down all kernels",
            f"Shut all {n} kernel(s) kernelmon started down? Their variables are lost.{keep}",
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
        # A stale kernel has no process to talk to: only its connection file is left.
        ids = [k for k in self._known(kernel_ids) if not self.is_stale(k)]
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
