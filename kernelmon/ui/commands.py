"""What the user asks of kernels, from a click to the core: ``KernelCommands``.

Each ``request_*`` verb reads the kernels' latest models from the store, leaves out what the
core refuses (telling the user the core's own sentence), asks what it must ask
(``Confirmations``), then starts the core's coroutine as a task (``TaskRunner``) and returns
the tasks; it never waits. What happens next comes back as core events through the bridge
(the store, the event log); the outcome of each task is told through the ``Notifier``. The
restarts under way are tracked here (``restarting``), so the actions and the progress bar
can show them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..core import KernelMap, RestartFailed, RestartTimeout
from .bridge import KernelBridge
from .confirmations import Confirmations
from .console import ConsoleWindow
from .console_manager import ConsoleManager
from .figures import is_owned, plural
from .notifier import Level, Notifier
from .ownership import is_foreign, is_stale
from .refusals import CONNECT, INTERRUPT, RESTART, SHUTDOWN, refusal
from .tasks import TaskRunner

logger = logging.getLogger(__name__)

#: The most consoles one "Open console" opens at once (one per selected kernel).
MAX_CONSOLES = 8


class KernelCommands(QObject):
    """The actions on kernels; the only writer to the ``KernelMap`` besides settings."""

    #: The set of kernels being restarted changed (``restarting``).
    restarts_changed = Signal()

    def __init__(
        self,
        kernel_map: KernelMap,
        bridge: KernelBridge,
        notifier: Notifier,
        confirmations: Confirmations,
        consoles: ConsoleManager,
        tasks: TaskRunner,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        #: The map the commands act on (only they, and the settings controller, write to it).
        self.kernel_map = kernel_map
        self._bridge = bridge
        self._store = bridge.store
        self._notifier = notifier
        self.confirmations = confirmations
        self._consoles = consoles
        self.tasks = tasks
        #: Kernels whose restart was asked and has not ended yet.
        self.restarting: set[str] = set()

    # -- reading ----------------------------------------------------------------------------

    def label(self, kernel_id: str) -> str:
        return self.confirmations.label(kernel_id)

    def _known(self, kernel_ids: Sequence[str | None]) -> list[str]:
        return [k for k in dict.fromkeys(kernel_ids) if k is not None and k in self._store]

    def _allowed(self, action: str, kernel_ids: list[str], verb: str) -> list[str]:
        """The kernels the core allows ``action`` on; the user is told why the others are
        left alone (the core's sentence of the first one)."""
        refused = [(k, why) for k in kernel_ids if (why := self.refusal(k, action))]
        if refused:
            kid, why = refused[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            self._notifier.status(f"Not {verb} {self.label(kid)}{more}: {why}")
        left_alone = {k for k, _ in refused}
        return [k for k in kernel_ids if k not in left_alone]

    def _spawn_each(
        self, kernel_ids: list[str], run: Callable[[str, str], Coroutine[Any, Any, Any]], doing: str
    ) -> list[Any]:
        """``run(kernel_id, label)`` as a task per kernel, concurrently; the tasks."""
        labels = [self.label(k) for k in kernel_ids]
        return [
            self.tasks.spawn(run(k, label), f"{doing} {label}")
            for k, label in zip(kernel_ids, labels, strict=True)
        ]

    def refusal(self, kernel_id: str, action: str) -> str | None:
        """The core's sentence for why ``action`` is refused on this kernel (None: allowed)."""
        return refusal(self._store.get(kernel_id), action)

    # -- starting and watching --------------------------------------------------------------

    def request_start(self, kernel_name: str | None = None, path: str | None = None) -> Any:
        """Start a kernel of this spec (the default one) for ``path``; the task."""
        name = kernel_name or self.kernel_map.default_kernel_name
        self._notifier.status(f"Starting {name}…")
        return self.tasks.spawn(self._start(name, path), f"Starting kernel {name!r}")

    async def _start(self, name: str, path: str | None) -> str:
        kid = await self.kernel_map.start_kernel(name, path or None)
        self._notifier.status(f"{self.label(kid)} started")
        return kid

    def restore_and_monitor(self) -> Any:
        """Take over the kernels an earlier run left running, then start watching every
        kernel on the machine and sampling their resources (in this order: an earlier
        run's kernels are kernelmon's own, not orphans); the task."""
        return self.tasks.spawn(self._restore_and_monitor(), "Starting to watch kernels")

    async def _restore_and_monitor(self) -> None:
        await self.kernel_map.check_state_folder()  # its problems are told as events
        try:
            adopted = await self.kernel_map.restore()
            if adopted:
                n = plural(len(adopted), "kernel")
                text = f"Took over {n} an earlier kernelmon left running"
                self._notifier.notify(Level.INFO, "", text)
        except Exception as e:  # still watch the others
            logger.exception("Taking over an earlier run's kernels failed")
            self._notifier.notify(
                Level.ERROR, "Taking over kernels of an earlier run failed", str(e), dialog=True
            )
        await self.start_monitoring()

    async def start_monitoring(self) -> None:
        """Start discovery (if on in the settings) and resource sampling."""
        await self.kernel_map.start_monitoring()
        self._bridge.set_usage(*self.kernel_map.total_usage())

    def request_rescan(self) -> Any:
        """Look for other applications' kernels now; the task."""
        self._notifier.status("Looking for kernels…")
        return self.tasks.spawn(self.kernel_map.rescan(), "Looking for kernels")

    def request_state_check(self) -> Any:
        """Look at the state folder again (off the loop; its problems come as events)."""
        return self.tasks.spawn(self.kernel_map.check_state_folder(), "Checking the state folder")

    # -- restart, interrupt -----------------------------------------------------------------

    def request_restart(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Restart these kernels concurrently after one confirmation; their tasks. What
        the core refuses to restart is left alone, saying why."""
        known = self._allowed(RESTART, self._known(kernel_ids), "restarting")
        ids = [k for k in known if k not in self.restarting]
        if not ids or not self.confirmations.ask_kernels(
            "restart",
            "Restart",
            ids,
            "Its variables and running code are lost.",
            "Their variables and running code are lost.",
        ):
            return []
        # Progress shows from the click until the kernels answer (or fail).
        self.restarting.update(ids)
        self.restarts_changed.emit()
        what = self.label(ids[0]) if len(ids) == 1 else f"{len(ids)} kernels"
        them = "it" if len(ids) == 1 else "them"
        self._notifier.status(f"Restarting {what}; waiting for {them} to answer…", lasting=True)
        return self._spawn_each(ids, self._restart, "Restarting")

    async def _restart(self, kernel_id: str, label: str) -> None:
        try:
            await self.kernel_map.restart_kernel(kernel_id)
        except (RestartTimeout, RestartFailed) as e:
            # The core's ActionFailed puts it in the event log already.
            self._notifier.notify(
                Level.ERROR, f"Restart of {label} failed", str(e), kernel_id, log=False, dialog=True
            )
            return
        finally:
            self.restarting.discard(kernel_id)
            self.restarts_changed.emit()
        self._notifier.status(f"{label} restarted and answers again")

    def request_interrupt(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Interrupt these kernels concurrently (other applications' kernels after a
        warning); their tasks."""
        ids = self._allowed(INTERRUPT, self._known(kernel_ids), "interrupting")
        if not ids or not self.confirmations.ask_foreign("Interrupt", "interrupting it", ids):
            return []
        return self._spawn_each(ids, self._interrupt, "Interrupting")

    async def _interrupt(self, kernel_id: str, label: str) -> None:
        await self.kernel_map.interrupt_kernel(kernel_id)
        self._notifier.status(f"Interrupted {label}")

    # -- shutting down, cleaning up ---------------------------------------------------------

    def request_shutdown(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Shut these kernels down concurrently after one confirmation (and a warning for
        other applications' kernels); their tasks. Stale ones are cleaned up instead."""
        known = self._known(kernel_ids)
        stale = [k for k in known if is_stale(self._store.get(k) or {})]
        ids = self._allowed(SHUTDOWN, [k for k in known if k not in stale], "shutting down")
        owned = [k for k in ids if is_owned(self._store.get(k) or {})]
        if owned and not self.confirmations.ask_kernels(
            "shutdown", "Shut down", owned, "Its variables are lost.", "Their variables are lost."
        ):
            return []
        if not self.confirmations.ask_foreign("Shut down", "shutting it down", ids):
            return []
        cleanups = self.request_cleanup(stale) if stale else []
        if not ids:
            return cleanups
        labels = [self.label(k) for k in ids]
        what = labels[0] if len(ids) == 1 else f"{len(ids)} kernels"
        self._notifier.status(f"Shutting {what} down…")
        return cleanups + [
            self.tasks.spawn(self._shutdown(kid, f"{label} shut down"), f"Shutting {label} down")
            for kid, label in zip(ids, labels, strict=True)
        ]

    def request_cleanup(self, kernel_ids: Sequence[str | None]) -> list[Any]:
        """Remove the connection files stale kernels left behind; their tasks."""
        ids = [k for k in self._known(kernel_ids) if is_stale(self._store.get(k) or {})]
        if not ids:
            return []
        files = [str((self._store.get(k) or {}).get("connection_file") or "") for k in ids]
        if not self.confirmations.ask_cleanup(files):
            return []
        done = "Removed the connection file of {}"
        return [
            self.tasks.spawn(self._shutdown(k, done.format(self.label(k))), "Cleaning up")
            for k in ids
        ]

    async def _shutdown(self, kernel_id: str, done: str) -> None:
        await self.kernel_map.shutdown_kernel(kernel_id)
        self._notifier.status(done)

    def request_shutdown_all(self) -> Any:
        """Shut down every kernel kernelmon started (never other applications'); the task."""
        n = len(self._store.owned_ids())
        if n == 0:
            return None
        # Stale connection files have no process: they are not kernels that keep running.
        others = sum(is_foreign(m) for m in self._store.models())
        if not self.confirmations.ask_shutdown_all(n, others):
            return None
        self._notifier.status(f"Shutting {plural(n, 'kernel')} down…")
        return self.tasks.spawn(self.kernel_map.shutdown_all(), "Shutting all kernels down")

    # -- consoles ---------------------------------------------------------------------------

    def request_console(self, kernel_ids: Sequence[str | None]) -> list[ConsoleWindow]:
        """A console per kernel the core lets connect, at most ``MAX_CONSOLES`` (on other
        applications' kernels after a warning, as for interrupting them)."""
        ids = self._allowed(CONNECT, self._known(kernel_ids), "opening a console on")
        if len(ids) > MAX_CONSOLES:
            self._notifier.status(
                f"Opened consoles on the first {MAX_CONSOLES} of {len(ids)} kernels; "
                "select fewer to open the others"
            )
            ids = ids[:MAX_CONSOLES]
        new = [k for k in ids if k not in self._consoles.consoles]
        if not self.confirmations.ask_foreign(
            "Open a console on", "running code in it from a console", new, "Open console"
        ):
            ids = [k for k in ids if k not in new]
        consoles = [self._consoles.open(kid) for kid in ids]
        for console in consoles:
            kid = console.kernel_id
            console.set_refusals(self.refusal(kid, INTERRUPT), self.refusal(kid, RESTART))
        return consoles

    # -- quitting ---------------------------------------------------------------------------

    async def finish(self, timeout: float, shut_down: bool) -> int:
        """Let running actions end (up to ``timeout`` s), close the consoles, then close the
        map, shutting kernelmon's kernels down or leaving them; how many were left."""
        await self.tasks.finish(timeout=timeout)
        await self._consoles.close_all()
        left = len(self._store.owned_ids())  # others' kernels are never shut down
        await self.kernel_map.close(shutdown_kernels=shut_down)
        return 0 if shut_down else left
