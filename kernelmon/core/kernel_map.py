"""The map of running kernels: start, watch, buffer, restart, interrupt, shut down, cull.

This is the desktop counterpart of the classic notebook server's MappingKernelManager, on
an asyncio loop (plain or qasync). A ``KernelMap`` is created outside a running loop
without starting anything, and used inside one. Its parts: map_base.py (shared state,
reading, events), frontends.py, adoption.py and cull_pass.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

from .adoption import AdoptionMixin
from .backends.external import ExternalKernel
from .backends.local import LocalKernel
from .backends.stale import StaleKernel
from .cull_pass import CullingMixin
from .errors import (
    KernelDead,
    KernelNotFound,
    NotRestartable,
    RestartFailed,
    RestartRefused,
    RestartTimeout,
)
from .events import (
    ActionFailed,
    EventHub,
    KernelAdded,
    KernelDied,
    KernelInterrupted,
    KernelRemoved,
    KernelRestarted,
    KernelShutDown,
    KernelStarted,
)
from .frontends import FrontendsMixin
from .machine.kernel_files import remove_connection_files
from .map_base import KERNEL_ID, Entry
from .monitoring import MonitoringMixin
from .records import ExecutionState, KernelRecord, Origin, utcnow
from .settings import Settings
from .state import StateFile
from .threads import run_in_thread

logger = logging.getLogger(__name__)


class KernelMap(FrontendsMixin, AdoptionMixin, CullingMixin, MonitoringMixin):
    """Every kernel kernelmon manages or watches, by id.

    Kernels kernelmon starts have origin ``owned``; after ``start_monitoring()``, kernels
    other applications started (found in the runtime folders) join with origin
    ``external``, ``orphan`` or ``stale`` (see monitoring.py).

    Parameters beyond ``settings`` are for tests and embedding: ``clock`` (what "now" is
    for the culler), ``restart_poll`` and ``restart_limit`` (jupyter_client's
    auto-restarter: how often it checks the process, how many restarts in a row it tries),
    ``shutdown_wait`` (how long a shutdown waits for the kernel to exit by itself before
    SIGTERM, at half of it, and SIGKILL, at the end), ``connection_dir`` (where connection
    files go; the Jupyter runtime folder by default), ``transport`` ("ipc" or "tcp"; by default
    IPC where the platform has Unix sockets, so no TCP port is open to other users, else TCP
    on 127.0.0.1), ``state_dir`` (where the crash-safe record of running kernels is kept;
    ``$KERNELMON_STATE_DIR`` or the user's state folder by default), ``runtime_dirs`` (the
    folders searched for other applications' kernels instead of the Jupyter runtime
    folder; ``Settings.runtime_folders`` are searched too).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        restart_poll: float = 3.0,
        restart_limit: int = 5,
        shutdown_wait: float = 5.0,
        connection_dir: str | None = None,
        kernel_spec_manager: KernelSpecManager | None = None,
        transport: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        runtime_dirs: list[str] | None = None,
    ) -> None:
        self._settings = settings if settings is not None else Settings()
        self._clock = clock
        self._restart_poll = restart_poll
        self._restart_limit = restart_limit
        self._shutdown_wait = shutdown_wait
        self._connection_dir = connection_dir
        self._ksm = kernel_spec_manager
        self._transport = transport
        self._state_dir = state_dir
        self._state: StateFile | None = None
        self._kernels: dict[str, Entry] = {}
        self._hub = EventHub()
        self._pending_changes: dict[str, set[str]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._culler_task: asyncio.Task[None] | None = None
        self._state_check: asyncio.TimerHandle | None = None
        #: When the culler's next pass runs (UTC), or None while culling is off.
        self.next_cull: datetime | None = None
        #: The latest activity on any kernel (shutdowns included), UTC.
        self.last_kernel_activity: datetime = utcnow()
        self.default_kernel_name = NATIVE_KERNEL_NAME
        self._init_monitoring(runtime_dirs)

    # -- starting ---------------------------------------------------------------------------

    async def start_kernel(
        self,
        kernel_name: str | None = None,
        path: str | None = None,
        kernel_id: str | None = None,
    ) -> str:
        """Start a kernel and return its id once it answers a ``kernel_info_request``.

        Raises ``KernelSpecNotFound``, ``PathOutsideRoot``, ``KernelStartFailed`` or
        ``KernelStartTimeout``; after a failure no process and no map entry are left.
        """
        if kernel_id is not None:
            if kernel_id in self._kernels:
                entry = self._kernels[kernel_id]
                if entry.ready is not None and not entry.ready.done():
                    await asyncio.shield(entry.ready)
                return kernel_id
            if not isinstance(kernel_id, str) or not KERNEL_ID.match(kernel_id):
                raise ValueError(
                    f"{kernel_id!r} cannot be a kernel id: use letters, digits, '.', '_' "
                    "and '-' (a UUID is best)."
                )
        name = kernel_name or self.default_kernel_name
        spec = self._resolve_spec(name)
        cwd = self.cwd_for_path(path)
        await self._ensure_recordable()  # a kernel that cannot be recorded could be orphaned
        kid = kernel_id or str(uuid.uuid4())
        record = KernelRecord(id=kid, name=name, display_name=spec.display_name, cwd=cwd)
        backend = self._new_backend(record)
        loop = asyncio.get_running_loop()
        entry = Entry(record, backend, ready=loop.create_future())
        self._kernels[kid] = entry
        self._emit(KernelAdded(kid, record.to_model()))
        self._ensure_culler()
        self._ensure_state_check()
        timeout = self._settings.kernel_info_timeout
        try:
            await backend.start(cwd, timeout)
            self._ensure_recorded()
        except BaseException as e:
            await self._discard_failed_start(entry, e)
            raise
        if record.execution_state in (ExecutionState.STARTING, ExecutionState.UNKNOWN):
            record.execution_state = ExecutionState.IDLE
        assert entry.ready is not None
        entry.ready.set_result(None)
        self._changed(record, {"execution_state"}, None)
        logger.info("Started kernel %s (%s) in %s", kid, name, cwd)
        self._emit(KernelStarted(kid))
        return kid

    async def _discard_failed_start(self, entry: Entry, error: BaseException) -> None:
        kid = entry.record.id
        logger.warning("Kernel %s failed to start: %s", kid, error)
        try:
            await entry.backend.shutdown(now=True)
        except Exception:
            logger.exception("Could not stop kernel %s after its failed start", kid)
        entry.backend.close()
        if isinstance(entry.backend, LocalKernel):
            entry.backend.remove_log()
        if self._kernels.get(kid) is entry:
            del self._kernels[kid]
            self._let_go(kid)
            self._save_state()
        if entry.ready is not None and not entry.ready.done():
            entry.ready.set_exception(
                error if isinstance(error, Exception) else RuntimeError("start cancelled")
            )
            entry.ready.exception()  # retrieved: nobody else may be waiting
        self._emit(KernelRemoved(kid, reason=f"failed to start: {error}"))

    # -- acting on kernels ------------------------------------------------------------------

    async def restart_kernel(self, kernel_id: str) -> None:
        """Restart (same id, same folder); resolves when the new process answers.

        Kernels kernelmon did not start raise ``NotRestartable`` and stay as they are.
        """
        entry = self._get(kernel_id)
        record = entry.record
        if not entry.backend.can_restart:
            owner = f"{record.parent_app} (process {record.parent_pid})"
            where = (
                f"restart it from {owner}"
                if record.origin == Origin.EXTERNAL and record.parent_app
                else "shut it down and start a new kernel"
            )
            raise NotRestartable(
                f"Kernel {kernel_id} was not started by kernelmon ({record.origin}), so "
                f"kernelmon cannot restart it: {where}."
            )
        before = record.execution_state, record.reason
        record.execution_state = ExecutionState.RESTARTING
        record.reason = None
        self._changed(record, {"execution_state", "reason"}, None)
        try:
            await entry.backend.restart(self._settings.kernel_info_timeout)
        except RestartRefused as e:  # nothing changed: the kernel runs on
            record.execution_state, record.reason = before
            self._changed(record, {"execution_state", "reason"}, None)
            self._emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise
        except RestartTimeout as e:
            record.execution_state = ExecutionState.UNKNOWN
            record.reason = str(e)
            self._changed(record, {"execution_state", "reason"}, None)
            self._emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise
        except (RestartFailed, Exception) as e:
            if not isinstance(e, RestartFailed):
                e = RestartFailed(f"Kernel {kernel_id} could not be restarted: {e}")
            record.execution_state = ExecutionState.DEAD
            record.reason = str(e)
            self._changed(record, {"execution_state", "reason"}, None)
            self._emit(KernelDied(kernel_id, reason=str(e), will_restart=False))
            self._emit(ActionFailed(kernel_id, action="restart", message=str(e)))
            raise e from None
        record.restarts += 1
        if record.execution_state in (
            ExecutionState.RESTARTING,
            ExecutionState.STARTING,
            ExecutionState.UNKNOWN,
        ):
            record.execution_state = ExecutionState.IDLE
        self._changed(record, {"execution_state", "restarts"}, None)
        logger.info("Restarted kernel %s", kernel_id)
        self._emit(KernelRestarted(kernel_id, auto=False))

    async def interrupt_kernel(self, kernel_id: str) -> None:
        entry = self._get(kernel_id)
        if entry.record.execution_state == ExecutionState.DEAD:
            why = f" ({entry.record.reason})" if entry.record.reason else ""
            raise KernelDead(f"Kernel {kernel_id} is dead{why}; there is nothing to interrupt.")
        await entry.backend.interrupt()
        logger.info("Interrupted kernel %s (%s)", kernel_id, entry.record.origin)
        self._emit(KernelInterrupted(kernel_id))

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        """Stop the kernel (shutdown_request, then terminate, then kill) and forget it."""
        entry = self._get(kernel_id)
        if entry.shutdown_task is None:
            entry.shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(entry, now))
        await asyncio.shield(entry.shutdown_task)

    async def _shutdown(self, entry: Entry, now: bool) -> None:
        kid = entry.record.id
        for conn in list(entry.connections):
            conn.closed = True
            conn.channels.close()
        entry.connections.clear()
        self._discard_buffer(entry)
        dead = entry.record.execution_state == ExecutionState.DEAD
        backend = entry.backend
        if not isinstance(backend, LocalKernel):
            await self._shutdown_other(entry, now or dead)
            return
        try:
            await backend.shutdown(now=now or dead)
            backend.remove_log()
        except Exception:
            logger.exception("Shutdown of kernel %s failed; killing it", kid)
            with contextlib.suppress(Exception):
                await entry.backend.shutdown(now=True)
        finally:
            entry.backend.close()
            if self._kernels.get(kid) is entry:
                del self._kernels[kid]
                self._save_state()
            self._let_go(kid)
            self.last_kernel_activity = max(self.last_kernel_activity, utcnow())
        logger.info("Shut down kernel %s", kid)
        self._emit(KernelShutDown(kid))
        self._emit(KernelRemoved(kid, reason="shut down"))

    async def _shutdown_other(self, entry: Entry, now: bool) -> None:
        """Shut down (or, stale, clean up) a kernel kernelmon did not start. A failure keeps
        it listed and watched and is raised: it is another application's kernel, so
        kernelmon never claims it gone when it is not."""
        kid = entry.record.id
        backend = entry.backend
        try:
            await backend.shutdown(now=now)
            if isinstance(backend, ExternalKernel) and entry.record.origin == Origin.ORPHAN:
                # Its application is gone, so nobody else will remove its files.
                await run_in_thread(remove_connection_files, backend.connection_file)
        except Exception as e:
            entry.shutdown_task = None
            if isinstance(backend, ExternalKernel) and self._kernels.get(kid) is entry:
                backend.attach()  # still there: keep watching it
            logger.warning("Shutting down kernel %s (%s) failed: %s", kid, entry.record.origin, e)
            self._emit(ActionFailed(kid, action="shutdown", message=str(e)))
            raise
        backend.close()
        if self._kernels.get(kid) is entry:
            del self._kernels[kid]
            self._save_state()  # a kernel that could not be adopted was recorded there
        self._let_go(kid)
        what = "Cleaned up" if isinstance(backend, StaleKernel) else "Shut down"
        logger.info("%s kernel %s (%s)", what, kid, entry.record.origin)
        self._emit(KernelShutDown(kid))
        self._emit(KernelRemoved(kid, reason="shut down"))
        if self._watcher is not None:  # its file may be left behind: show it as stale
            self._in_background(self._watcher.rescan())

    async def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel kernelmon owns down, concurrently (never other applications')."""
        ids = [k for k, e in self._kernels.items() if e.record.origin == Origin.OWNED]
        results = await asyncio.gather(
            *(self.shutdown_kernel(k, now=now) for k in ids), return_exceptions=True
        )
        for kid, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, KernelNotFound):
                logger.error("Shutting down kernel %s failed: %s", kid, result)

    async def close(self, shutdown_kernels: bool = True) -> None:
        """Stop the culler and (by default) every kernel; the map is empty afterwards.

        With ``shutdown_kernels=False`` the kernels keep running and stay in the state file,
        so the next run's ``restore()`` adopts them. Kernels other applications started are
        only forgotten (they keep running).
        """
        self._stop_culler()
        await self.stop_monitoring()
        if shutdown_kernels:
            await self.shutdown_all()
        else:
            self._save_state(released=True)
            for entry in list(self._kernels.values()):
                for conn in entry.connections:
                    conn.closed = True
                    conn.channels.close()
                self._discard_buffer(entry)
                entry.backend.close()
            self._kernels.clear()
        if self._state_check is not None:
            self._state_check.cancel()
            self._state_check = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    # -- settings ---------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings from now on; a new culler interval takes effect at once."""
        if not isinstance(settings, Settings):
            raise TypeError("apply_settings needs a Settings object")
        old, self._settings = self._settings, settings
        for entry in self._kernels.values():
            if entry.buffered is None or entry.buffered.buffer is None:
                continue
            if not settings.buffer_offline_messages:
                self._discard_buffer(entry)
            else:
                entry.buffered.buffer.set_caps(
                    settings.buffer_max_messages, settings.buffer_max_bytes
                )
                self._buffer_changed(entry)
        culling_changed = (old.cull_idle_timeout, old.cull_interval) != (
            settings.cull_idle_timeout,
            settings.cull_interval,
        )
        if culling_changed or self._culler_task is None:
            self._stop_culler()
            self._ensure_culler()
        if (old.discover_kernels, old.runtime_folders, old.sample_interval) != (
            settings.discover_kernels,
            settings.runtime_folders,
            settings.sample_interval,
        ):
            self._monitoring_settings_changed()
