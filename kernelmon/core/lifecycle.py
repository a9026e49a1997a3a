"""The commands on one kernel: start, restart, interrupt, shut down (the core side of a
kernel action), and the backends of the kernels kernelmon starts or adopts.

``Lifecycle`` owns how kernelmon's own kernels are launched (kernel specs, connection
folder, transport, the auto-restarter's limits, the shutdown's grace) and the shutdowns in
progress (``Entry.shutdown_task``). A command comes in from ``KernelMap``, asks the kernel's
backend first whether it can be done (``KernelBackend.refusal``: the refusal's sentence is
raised in the matching error, e.g. ``NotRestartable``), then acts through the backend and
tells subscribers through the registry (``KernelRestarted``, ``ActionFailed``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_runtime_dir

from .backends.base import Action, KernelBackend
from .backends.factory import BackendFactory
from .errors import (
    KernelDead,
    KernelmonError,
    KernelNotFound,
    KernelSpecNotFound,
    KernelStartFailed,
    NotRestartable,
    RestartFailed,
    RestartRefused,
    RestartTimeout,
)
from .events import (
    ActionFailed,
    KernelDied,
    KernelInterrupted,
    KernelRemoved,
    KernelRestarted,
    KernelShutDown,
    KernelStarted,
)
from .found import DisplayNames
from .frontends import Frontends
from .keeper import StateKeeper
from .machine.kernel_files import make_private, remove_connection_files
from .records import ExecutionState, KernelRecord, Origin
from .registry import KERNEL_ID, Changing, Entry
from .threads import run_in_thread
from .workdir import cwd_for_path

logger = logging.getLogger(__name__)


class LifecycleRegistry(Changing, Protocol):
    """What the commands read of the registry and change in it."""

    def new_record(
        self, kernel_id: str, name: str, display_name: str = "", cwd: str | None = None
    ) -> KernelRecord: ...
    def get(self, kernel_id: str) -> Entry: ...
    def add(self, entry: Entry) -> None: ...
    def discard(self, entry: Entry) -> bool: ...
    def let_go(self, kernel_id: str) -> None: ...
    def active(self, now: datetime) -> None: ...


class Lifecycle:
    """Start, restart, interrupt and shut down kernels (see the module).

    ``after_shutdown_of_others()`` is called after another application's kernel was shut
    down (its file may be left behind: discovery looks again)."""

    def __init__(
        self,
        registry: LifecycleRegistry,
        keeper: StateKeeper,
        frontends: Frontends,
        backends: BackendFactory,
        *,
        after_shutdown_of_others: Callable[[], None],
        kernel_spec_manager: KernelSpecManager | None,
        connection_dir: str | None,
        transport: str | None,
        restart_poll: float,
        restart_limit: int,
        shutdown_wait: float,
    ) -> None:
        self.registry = registry
        self._keeper = keeper
        self._frontends = frontends
        self._backends = backends
        self._after_shutdown_of_others = after_shutdown_of_others
        self._ksm = kernel_spec_manager
        self._connection_dir = connection_dir
        self._transport = transport
        self._restart_poll = restart_poll
        self._restart_limit = restart_limit
        self.shutdown_wait = shutdown_wait
        #: The installed kernel spec's display name of a kernel name ("" if there is no
        #: such spec).
        self.display_name = DisplayNames(lambda: self.kernel_spec_manager)
        #: before a kernel is shut down: the entry to act on (a found kernel of a live local
        #: server is that server's row, polled now), or ``ActionRefused``
        #: (``servers.parents.LocalParents.hand_over``)
        self.hand_over: Callable[[Entry], Awaitable[Entry]] | None = None

    @property
    def kernel_spec_manager(self) -> KernelSpecManager:
        if self._ksm is None:
            self._ksm = KernelSpecManager()
        return self._ksm

    # -- backends (also what adoption asks: ``adoption.Backends``) --------------------------

    def resolve_spec(self, kernel_name: str) -> Any:
        """The installed kernel spec ``kernel_name`` (``KernelSpecNotFound``)."""
        try:
            return self.kernel_spec_manager.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            available = list(self.kernel_spec_manager.find_kernel_specs())
            raise KernelSpecNotFound(kernel_name, available) from None

    def local(self, record: KernelRecord) -> KernelBackend:
        """A backend for a kernel kernelmon starts or adopts (``KernelStartFailed`` if its
        connection folder cannot be made private)."""
        conn_dir = self._connection_dir or jupyter_runtime_dir()
        try:  # private even when the folder already existed with group or other access
            make_private(conn_dir)
        except OSError as e:
            raise KernelStartFailed(
                f"The connection folder {conn_dir} cannot be made private: {e.strerror or e}"
            ) from e
        registry = self.registry  # its settings are read when used: they change
        return self._backends.local(
            record,
            kernel_spec_manager=self.kernel_spec_manager,
            connection_dir=conn_dir,
            on_change=self.registry.changed,
            emit=self.registry.emit,
            restart_poll=self._restart_poll,
            restart_limit=self._restart_limit,
            shutdown_wait=self.shutdown_wait,
            transport=self._transport,
            log_dir=self._keeper.kernel_log_dir(conn_dir),
            save_state=self._keeper.save,
            kernel_info_timeout=lambda: registry.settings.kernel_info_timeout,
            untracked=lambda: registry.settings.untracked_message_types,
        )

    def unadopted(self, record: KernelRecord, *args: Any) -> KernelBackend:
        """A backend for a kernel of an earlier run that runs but cannot be adopted."""
        return self._backends.unadopted(record, *args)

    # -- starting ---------------------------------------------------------------------------

    async def start_kernel(
        self,
        kernel_name: str | None,
        path: str | None,
        kernel_id: str | None,
        default_kernel_name: str,
    ) -> str:
        """Start a kernel and return its id once it answers a ``kernel_info_request``.

        Raises ``KernelSpecNotFound``, ``PathOutsideRoot``, ``KernelStartFailed`` or
        ``KernelStartTimeout``; after a failure no process and no map entry are left.
        """
        registry = self.registry
        if kernel_id is not None:
            existing = registry.find(kernel_id) if isinstance(kernel_id, str) else None
            if existing is not None:
                if existing.ready is not None and not existing.ready.done():
                    await asyncio.shield(existing.ready)
                return kernel_id
            if not isinstance(kernel_id, str) or not KERNEL_ID.match(kernel_id):
                raise ValueError(
                    f"{kernel_id!r} cannot be a kernel id: use letters, digits, '.', '_' "
                    "and '-' (a UUID is best)."
                )
        name = kernel_name or default_kernel_name
        spec = self.resolve_spec(name)
        cwd = cwd_for_path(self.registry.settings.root_dir, path)
        await self._keeper.ensure_recordable()  # a kernel that cannot be recorded is orphaned
        kid = kernel_id or str(uuid.uuid4())
        record = registry.new_record(kid, name, spec.display_name, cwd)
        backend = self.local(record)
        entry = Entry(record, backend, ready=asyncio.get_running_loop().create_future())
        registry.add(entry)
        try:
            await backend.start(cwd, self.registry.settings.kernel_info_timeout)
            self._keeper.ensure_recorded()
        except BaseException as e:
            await self._discard_failed_start(entry, e)
            raise
        if record.execution_state in (ExecutionState.STARTING, ExecutionState.UNKNOWN):
            record.execution_state = ExecutionState.IDLE
        assert entry.ready is not None
        entry.ready.set_result(None)
        registry.changed(record, {"execution_state"}, None)
        logger.info("Started kernel %s (%s) in %s", kid, name, cwd)
        registry.emit(KernelStarted(kid))
        return kid

    async def _discard_failed_start(self, entry: Entry, error: BaseException) -> None:
        kid = entry.record.id
        logger.warning("Kernel %s failed to start: %s", kid, error)
        try:
            await entry.backend.shutdown(now=True)
        except Exception:
            logger.exception("Could not stop kernel %s after its failed start", kid)
        entry.backend.close()
        entry.backend.remove_log()
        if self.registry.discard(entry):
            self.registry.let_go(kid)
            self._keeper.save()
        if entry.ready is not None and not entry.ready.done():
            entry.ready.set_exception(
                error if isinstance(error, Exception) else RuntimeError("start cancelled")
            )
            entry.ready.exception()  # retrieved: nobody else may be waiting
        self.registry.emit(KernelRemoved(kid, reason=f"failed to start: {error}"))

    # -- acting on kernels ------------------------------------------------------------------

    async def restart_kernel(self, kernel_id: str) -> None:
        """Restart (same id, same folder); resolves when the new process answers.

        A kernel whose backend refuses a restart (kernels kernelmon did not start) raises
        ``NotRestartable`` with the backend's sentence and stays as it is.
        """
        registry = self.registry
        entry = registry.get(kernel_id)
        record = entry.record
        refused = entry.backend.refusal(Action.RESTART)
        if refused is not None:
            raise NotRestartable(f"Kernel {kernel_id} cannot be restarted: {refused}.")
        before = record.execution_state, record.reason
        record.execution_state = ExecutionState.RESTARTING
        record.reason = None
        registry.changed(record, {"execution_state", "reason"}, None)
        try:
            await entry.backend.restart(self.registry.settings.kernel_info_timeout)
        except RestartRefused as e:  # nothing changed: the kernel runs on
            record.execution_state, record.reason = before
            registry.changed(record, {"execution_state", "reason"}, None)
            registry.emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise
        except RestartTimeout as e:
            record.execution_state = ExecutionState.UNKNOWN
            record.reason = str(e)
            registry.changed(record, {"execution_state", "reason"}, None)
            registry.emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise
        except (RestartFailed, Exception) as e:
            if not isinstance(e, RestartFailed):
                e = RestartFailed(f"Kernel {kernel_id} could not be restarted: {e}")
            record.execution_state = ExecutionState.DEAD
            record.reason = str(e)
            registry.changed(record, {"execution_state", "reason"}, None)
            registry.emit(KernelDied(kernel_id, reason=str(e), will_restart=False))
            registry.emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise e from None
        record.restarts += 1
        if record.execution_state in (
            ExecutionState.RESTARTING,
            ExecutionState.STARTING,
            ExecutionState.UNKNOWN,
        ):
            record.execution_state = ExecutionState.IDLE
        registry.changed(record, {"execution_state", "restarts"}, None)
        logger.info("Restarted kernel %s", kernel_id)
        registry.emit(KernelRestarted(kernel_id, auto=False))

    async def interrupt_kernel(self, kernel_id: str) -> None:
        """Interrupt the kernel; ``KernelDead`` (a dead kernel) or ``KernelmonError`` with
        the backend's sentence when it refuses."""
        entry = self.registry.get(kernel_id)
        refused = entry.backend.refusal(Action.INTERRUPT)
        if refused is not None:
            error = (
                KernelDead
                if entry.record.execution_state == ExecutionState.DEAD
                else KernelmonError
            )
            raise error(f"Kernel {kernel_id} cannot be interrupted: {refused}.")
        await entry.backend.interrupt()
        logger.info("Interrupted kernel %s (%s)", kernel_id, entry.record.origin)
        self.registry.emit(KernelInterrupted(kernel_id))

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        """Stop the kernel (shutdown_request, then terminate, then kill) and forget it.

        A kernel a live local Jupyter server started is stopped by that server (its
        restarter would undo signals), or not at all: ``ActionRefused`` says why
        (``hand_over``). The culler and the command line come this way too."""
        entry = self.registry.get(kernel_id)
        if entry.shutdown_task is None and self.hand_over is not None:
            entry = await self.hand_over(entry)
        if entry.shutdown_task is None:
            entry.shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(entry, now))
        await asyncio.shield(entry.shutdown_task)

    async def _shutdown(self, entry: Entry, now: bool) -> None:
        """Shut a kernel down (a stale one: clean its file up). A failure of a backend that
        does not kill on failure (``kill_if_shutdown_fails``: another application's kernel)
        keeps it listed and watched and is raised: kernelmon never claims it gone when it
        is not."""
        kid, record, backend = entry.record.id, entry.record, entry.backend
        self._frontends.close(entry)
        now = now or record.execution_state == ExecutionState.DEAD
        kills = backend.kill_if_shutdown_fails
        try:
            try:
                await backend.shutdown(now=now)
                backend.remove_log()
                if record.origin == Origin.ORPHAN and record.connection_file:
                    # Its application is gone, so nobody else will remove its files.
                    await run_in_thread(remove_connection_files, record.connection_file)
            except Exception as e:
                if not kills:
                    entry.shutdown_task = None
                    if self.registry.find(kid) is entry:
                        backend.attach()  # still there: keep watching it
                    logger.warning("Shutting down kernel %s (%s) failed: %s", kid, record.origin, e)
                    self.registry.emit(ActionFailed(kid, action="shutdown", message=str(e)))
                    raise
                logger.exception("Shutdown of kernel %s failed; killing it", kid)
                with contextlib.suppress(Exception):
                    await backend.shutdown(now=True)
        except BaseException:
            if kills:  # kernelmon's own kernel is gone from the map whatever happened
                self._forget_shut_down(entry)
            raise
        self._forget_shut_down(entry)
        what = "Cleaned up" if record.origin == Origin.STALE else "Shut down"
        logger.info("%s kernel %s (%s)", what, kid, record.origin)
        self.registry.emit(KernelShutDown(kid))
        self.registry.emit(KernelRemoved(kid, reason="shut down"))
        if not kills:  # its file may be left behind: show it as stale
            self._after_shutdown_of_others()

    def _forget_shut_down(self, entry: Entry) -> None:
        entry.backend.close()
        if self.registry.discard(entry):
            self._keeper.save()  # a kernel that could not be adopted was recorded there
        self.registry.let_go(entry.record.id)
        self.registry.active(self.registry.now())

    async def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel kernelmon owns down, concurrently (never other applications')."""
        ids = [e.record.id for e in self.registry if e.record.origin == Origin.OWNED]
        results = await asyncio.gather(
            *(self.shutdown_kernel(k, now=now) for k in ids), return_exceptions=True
        )
        for kid, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, KernelNotFound):
                logger.error("Shutting down kernel %s failed: %s", kid, result)
