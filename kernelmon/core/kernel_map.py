"""The map of running kernels: start, watch, buffer, restart, interrupt, shut down, cull.

This is the desktop counterpart of the classic notebook server's MappingKernelManager, on
an asyncio loop (plain or qasync). A ``KernelMap`` is created outside a running loop
without starting anything, and used inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_runtime_dir

from .backend import KernelBackend
from .buffering import MessageBuffer
from .channels import OnMessage, SessionChannels
from .connection import KernelConnection
from .culler import cull_eta, cull_reason
from .errors import (
    KernelDead,
    KernelNotFound,
    KernelSpecNotFound,
    RestartFailed,
    RestartTimeout,
)
from .events import (
    ActionFailed,
    EventHub,
    KernelAdded,
    KernelAdopted,
    KernelChanged,
    KernelCulled,
    KernelDied,
    KernelEvent,
    KernelInterrupted,
    KernelRemoved,
    KernelRestarted,
    KernelShutDown,
    KernelStarted,
    Subscriber,
)
from .local import LocalKernel, remove_connection_files
from .process import process_matches
from .records import ExecutionState, KernelRecord, utcnow
from .settings import Settings
from .state import StateFile, default_state_dir
from .workdir import cwd_for_path

logger = logging.getLogger(__name__)

#: Fields whose change is sent to subscribers at once; others are coalesced.
URGENT_FIELDS = frozenset({"execution_state", "connections", "reason", "pid", "restarts"})
#: How long connect() waits at most for a new frontend's iopub subscription to be live.
NUDGE_TIMEOUT = 2.0
#: How long restore() waits for an adopted kernel to answer before calling it unresponsive.
ADOPT_TIMEOUT = 5.0
_KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(eq=False)
class _Entry:
    record: KernelRecord
    backend: KernelBackend
    ready: asyncio.Future[None] | None = None
    connections: list[KernelConnection] = field(default_factory=list)
    buffered: SessionChannels | None = None
    shutdown_task: asyncio.Task[None] | None = None
    #: execute_requests sent through kernelmon's connections and not answered yet
    executing: set[str] = field(default_factory=set)


def kernel_survives(connection_file: str, pid: int, started: object) -> bool:
    """Whether a recorded kernel's connection file and process (not a reused PID) remain."""
    return os.path.exists(connection_file) and process_matches(
        pid, connection_file, started if isinstance(started, int | float) else None
    )


class KernelMap:
    """Every kernel kernelmon manages, by id.

    Parameters beyond ``settings`` are for tests and embedding: ``clock`` (what "now" is
    for the culler), ``restart_poll`` and ``restart_limit`` (jupyter_client's
    auto-restarter: how often it checks the process, how many restarts in a row it tries),
    ``shutdown_wait`` (how long a shutdown waits for the kernel to exit by itself before
    SIGTERM, at half of it, and SIGKILL, at the end), ``connection_dir`` (where connection
    files go; the Jupyter runtime folder by default), ``transport`` ("ipc" or "tcp"; by default
    IPC where the platform has Unix sockets, so no TCP port is open to other users, else TCP
    on 127.0.0.1), ``state_dir`` (where the crash-safe record of running kernels is kept;
    ``$KERNELMON_STATE_DIR`` or the user's state folder by default).
    """

    #: Coalescing period for activity-only change events, in seconds.
    change_interval = 0.1
    #: How often kernels shown busy are checked (see ``LocalKernel.confirm_idle_soon``).
    state_check_interval = 0.2

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
        self._kernels: dict[str, _Entry] = {}
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

    # -- reading ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def kernel_spec_manager(self) -> KernelSpecManager:
        if self._ksm is None:
            self._ksm = KernelSpecManager()
        return self._ksm

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._kernels

    def __len__(self) -> int:
        return len(self._kernels)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._kernels))

    def _get(self, kernel_id: str) -> _Entry:
        try:
            return self._kernels[kernel_id]
        except (KeyError, TypeError):
            raise KernelNotFound(str(kernel_id)) from None

    def record(self, kernel_id: str) -> KernelRecord:
        """The live record of a kernel (read it, do not change it)."""
        return self._get(kernel_id).record

    def backend(self, kernel_id: str) -> KernelBackend:
        return self._get(kernel_id).backend

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """A JSON-safe dict describing the kernel."""
        return self._get(kernel_id).record.to_model()

    def list_kernels(self) -> list[dict[str, Any]]:
        return [e.record.to_model() for e in self._kernels.values()]

    def cull_eta(self, kernel_id: str) -> float | None:
        """Seconds until the kernel becomes cullable (see ``culler.cull_eta``)."""
        return cull_eta(self._get(kernel_id).record, self._settings, self._clock())

    def kernel_specs(self) -> dict[str, dict[str, Any]]:
        """Installed kernel specs: name -> display_name, language, resource_dir."""
        specs = self.kernel_spec_manager.get_all_specs()
        return {
            name: {
                "name": name,
                "display_name": s["spec"].get("display_name", name),
                "language": s["spec"].get("language", ""),
                "resource_dir": s.get("resource_dir", ""),
            }
            for name, s in specs.items()
        }

    def cwd_for_path(self, path: str | None) -> str:
        """The working folder under ``root_dir`` for API ``path`` (``PathOutsideRoot``)."""
        return cwd_for_path(self._settings.root_dir, path)

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``KernelEvent``; returns an unsubscribe."""
        return self._hub.subscribe(callback)

    def _emit(self, event: KernelEvent) -> None:
        self._hub.emit(event)

    def _changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None:
        if now is not None and now > self.last_kernel_activity:
            self.last_kernel_activity = now
        if record.id not in self._kernels:
            return
        if "pid" in fields or "restarts" in fields:
            self._save_state()
        pending = self._pending_changes.setdefault(record.id, set())
        pending.update(fields)
        if not URGENT_FIELDS.isdisjoint(fields):
            self._flush_one(record.id)
        elif self._flush_handle is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(self.change_interval, self._flush_changes)

    def _flush_one(self, kernel_id: str) -> None:
        fields = self._pending_changes.pop(kernel_id, None)
        entry = self._kernels.get(kernel_id)
        if fields and entry is not None:
            self._emit(KernelChanged(kernel_id, frozenset(fields), entry.record.to_model()))

    def _flush_changes(self) -> None:
        self._flush_handle = None
        for kernel_id in list(self._pending_changes):
            self._flush_one(kernel_id)

    # -- starting ---------------------------------------------------------------------------

    def _resolve_spec(self, kernel_name: str) -> Any:
        try:
            return self.kernel_spec_manager.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            available = list(self.kernel_spec_manager.find_kernel_specs())
            raise KernelSpecNotFound(kernel_name, available) from None

    def _new_backend(self, record: KernelRecord) -> LocalKernel:
        conn_dir = self._connection_dir or jupyter_runtime_dir()
        os.makedirs(conn_dir, mode=0o700, exist_ok=True)
        return LocalKernel(
            record,
            kernel_spec_manager=self.kernel_spec_manager,
            connection_dir=conn_dir,
            on_change=self._changed,
            emit=self._emit,
            restart_poll=self._restart_poll,
            restart_limit=self._restart_limit,
            shutdown_wait=self._shutdown_wait,
            transport=self._transport,
            log_dir=str(self.state_file.folder / "kernel-logs"),
            kernel_info_timeout=lambda: self._settings.kernel_info_timeout,
        )

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
            if not isinstance(kernel_id, str) or not _KERNEL_ID.match(kernel_id):
                raise ValueError(
                    f"{kernel_id!r} cannot be a kernel id: use letters, digits, '.', '_' "
                    "and '-' (a UUID is best)."
                )
        name = kernel_name or self.default_kernel_name
        spec = self._resolve_spec(name)
        cwd = self.cwd_for_path(path)
        kid = kernel_id or str(uuid.uuid4())
        record = KernelRecord(id=kid, name=name, display_name=spec.display_name, cwd=cwd)
        backend = self._new_backend(record)
        loop = asyncio.get_running_loop()
        entry = _Entry(record, backend, ready=loop.create_future())
        self._kernels[kid] = entry
        self._emit(KernelAdded(kid, record.to_model()))
        self._ensure_culler()
        self._ensure_state_check()
        timeout = self._settings.kernel_info_timeout
        try:
            await backend.start(cwd, timeout)
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

    async def _discard_failed_start(self, entry: _Entry, error: BaseException) -> None:
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
            self._pending_changes.pop(kid, None)
            self._save_state()
        if entry.ready is not None and not entry.ready.done():
            entry.ready.set_exception(
                error if isinstance(error, Exception) else RuntimeError("start cancelled")
            )
            entry.ready.exception()  # retrieved: nobody else may be waiting
        self._emit(KernelRemoved(kid, reason=f"failed to start: {error}"))

    # -- acting on kernels ------------------------------------------------------------------

    async def restart_kernel(self, kernel_id: str) -> None:
        """Restart (same id, same folder); resolves when the new process answers."""
        entry = self._get(kernel_id)
        record = entry.record
        record.execution_state = ExecutionState.RESTARTING
        record.reason = None
        self._changed(record, {"execution_state", "reason"}, None)
        try:
            await entry.backend.restart(self._settings.kernel_info_timeout)
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
            raise KernelDead(f"Kernel {kernel_id} is dead; there is nothing to interrupt.")
        await entry.backend.interrupt()
        logger.info("Interrupted kernel %s", kernel_id)
        self._emit(KernelInterrupted(kernel_id))

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        """Stop the kernel (shutdown_request, then terminate, then kill) and forget it."""
        entry = self._get(kernel_id)
        if entry.shutdown_task is None:
            entry.shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(entry, now))
        await asyncio.shield(entry.shutdown_task)

    async def _shutdown(self, entry: _Entry, now: bool) -> None:
        kid = entry.record.id
        for conn in list(entry.connections):
            conn.closed = True
            conn.channels.close()
        entry.connections.clear()
        self._discard_buffer(entry)
        dead = entry.record.execution_state == ExecutionState.DEAD
        try:
            await entry.backend.shutdown(now=now or dead)
            if isinstance(entry.backend, LocalKernel):
                entry.backend.remove_log()
        except Exception:
            logger.exception("Shutdown of kernel %s failed; killing it", kid)
            with contextlib.suppress(Exception):
                await entry.backend.shutdown(now=True)
        finally:
            entry.backend.close()
            if self._kernels.get(kid) is entry:
                del self._kernels[kid]
                self._save_state()
            self._pending_changes.pop(kid, None)
            self.last_kernel_activity = max(self.last_kernel_activity, utcnow())
        logger.info("Shut down kernel %s", kid)
        self._emit(KernelShutDown(kid))
        self._emit(KernelRemoved(kid, reason="shut down"))

    async def shutdown_all(self, now: bool = False) -> None:
        """Shut every kernel down, concurrently."""
        ids = list(self._kernels)
        results = await asyncio.gather(
            *(self.shutdown_kernel(k, now=now) for k in ids), return_exceptions=True
        )
        for kid, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, KernelNotFound):
                logger.error("Shutting down kernel %s failed: %s", kid, result)

    async def close(self, shutdown_kernels: bool = True) -> None:
        """Stop the culler and (by default) every kernel; the map is empty afterwards.

        With ``shutdown_kernels=False`` the kernels keep running and stay in the state file,
        so the next run's ``restore()`` adopts them.
        """
        self._stop_culler()
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

    # -- keeping shown states true ----------------------------------------------------------

    def _ensure_state_check(self) -> None:
        if self._state_check is None:
            loop = asyncio.get_running_loop()
            self._state_check = loop.call_later(self.state_check_interval, self._check_states)

    def _check_states(self) -> None:
        """Queue an idle check behind busy kernels' code (see LocalKernel.confirm_idle_soon)."""
        self._state_check = None
        if not self._kernels:
            return
        for entry in self._kernels.values():
            if isinstance(entry.backend, LocalKernel):
                entry.backend.confirm_idle_soon()
        self._ensure_state_check()

    # -- crash safety -----------------------------------------------------------------------

    @property
    def state_file(self) -> StateFile:
        """This map's record of its kernels (see ``state``)."""
        if self._state is None:
            folder = Path(self._state_dir) if self._state_dir else default_state_dir()
            self._state = StateFile(folder)
        return self._state

    def _save_state(self, released: bool = False) -> None:
        records = [
            e.backend.state()
            for e in self._kernels.values()
            if isinstance(e.backend, LocalKernel) and e.record.pid is not None
        ]
        self.state_file.save(records, released=released)

    async def restore(self) -> list[str]:
        """Adopt the kernels of earlier kernelmon runs that crashed or were killed.

        Kernels whose process still runs come back under their id, name and folder, watched
        again, and can be restarted, interrupted and shut down as before; one that runs but
        does not answer is listed as ``unresponsive`` (shut it down to kill it). Records of
        kernels that are gone are dropped and their connection files removed. Returns the
        adopted kernels' ids.
        """
        adopted: list[str] = []
        for path, kernels in self.state_file.others():
            for saved in kernels:
                try:
                    kid = await self._adopt(saved)
                except Exception:
                    logger.exception("Could not adopt kernel %r", saved.get("id"))
                    continue
                if kid is not None:
                    adopted.append(kid)
            self._save_state()
            with contextlib.suppress(OSError):
                path.unlink()
        if adopted:
            self._ensure_culler()
            self._ensure_state_check()
        return adopted

    async def _adopt(self, saved: dict[str, Any]) -> str | None:
        kid, name = saved.get("id"), saved.get("kernel_name")
        conn_file, pid = saved.get("connection_file"), saved.get("pid")
        if not (
            isinstance(kid, str)
            and _KERNEL_ID.match(kid)
            and isinstance(name, str)
            and isinstance(conn_file, str)
            and isinstance(pid, int)
        ):
            logger.warning("Ignoring a malformed kernel record: %r", saved)
            return None
        if kid in self._kernels:
            return None
        started = saved.get("pid_started")
        if not kernel_survives(conn_file, pid, started):
            logger.info("Kernel %s of an earlier run is gone; cleaning up after it", kid)
            remove_connection_files(conn_file)
            return None
        try:
            spec = self._resolve_spec(name)
        except KernelSpecNotFound:
            logger.warning(
                "Kernel %s (pid %s) runs, but its kernel spec %r is gone; leaving it alone",
                kid,
                pid,
                name,
            )
            return None
        cwd = saved.get("cwd") if isinstance(saved.get("cwd"), str) else None
        record = KernelRecord(id=kid, name=name, display_name=spec.display_name, cwd=cwd)
        with contextlib.suppress(TypeError, ValueError):
            record.started = datetime.fromisoformat(str(saved["started"]).replace("Z", "+00:00"))
        if isinstance(saved.get("restarts"), int):
            record.restarts = saved["restarts"]
        backend = self._new_backend(record)
        entry = _Entry(record, backend)
        self._kernels[kid] = entry
        self._emit(KernelAdded(kid, record.to_model()))
        timeout = min(self._settings.kernel_info_timeout, ADOPT_TIMEOUT)
        answered = await backend.adopt(saved, timeout)
        if answered:
            if record.execution_state == ExecutionState.STARTING:
                record.execution_state = ExecutionState.IDLE
        else:
            record.execution_state = ExecutionState.UNRESPONSIVE
            record.reason = (
                f"it runs (pid {pid}) but did not answer within {timeout:g} s; "
                "shut it down to kill it"
            )
        self._changed(record, {"execution_state", "reason"}, None)
        logger.info("Adopted kernel %s (%s, pid %s) from an earlier run", kid, name, pid)
        self._emit(KernelAdopted(kid, answered=answered))
        return kid

    # -- frontends and offline buffering ----------------------------------------------------

    def notify_connect(self, kernel_id: str) -> None:
        """A frontend connected (counts in ``connections``)."""
        record = self._get(kernel_id).record
        record.connections += 1
        self._changed(record, {"connections"}, None)

    def notify_disconnect(self, kernel_id: str) -> None:
        """A frontend disconnected."""
        record = self._get(kernel_id).record
        record.connections = max(0, record.connections - 1)
        self._changed(record, {"connections"}, None)

    def _touch(self, kernel_id: str) -> None:
        """A frontend sent the kernel a request: that is activity."""
        entry = self._kernels.get(kernel_id)
        if entry is not None:
            now = utcnow()
            entry.record.last_activity = now
            self._changed(entry.record, {"last_activity"}, now)

    async def connect(
        self, kernel_id: str, session_key: str, on_message: OnMessage
    ) -> KernelConnection:
        """Attach a frontend. With the session key of a frontend that left while buffering
        was on, the buffered messages are delivered first, in order, then live ones; a
        different session key discards that buffer."""
        entry = self._get(kernel_id)
        if entry.record.execution_state == ExecutionState.DEAD:
            raise KernelDead(f"Kernel {kernel_id} is dead; shut it down or restart it first.")
        if not isinstance(session_key, str) or not session_key:
            raise ValueError("A frontend connection needs a non-empty session key.")
        channels: SessionChannels | None = None
        replayed = dropped = 0
        if entry.buffered is not None:
            if entry.buffered.session_key == session_key:
                channels, entry.buffered = entry.buffered, None
            else:
                self._discard_buffer(entry)
        if channels is None:
            channels = SessionChannels(
                entry.backend.connection_info, session_key, lambda: self._touch(kernel_id)
            )
            channels.on_request = lambda msg_type, msg_id: self._request_sent(
                entry, msg_type, msg_id
            )
            channels.on_reply = lambda msg_type, parent: self._reply_seen(entry, msg_type, parent)
            try:
                await self._nudge(entry, channels)
            except BaseException:
                channels.close()
                raise
        conn = KernelConnection(kernel_id, channels, self._close_connection)
        entry.connections.append(conn)
        self.notify_connect(kernel_id)
        channels.handler = on_message
        if channels.buffer is not None:
            dropped = channels.buffer.dropped
            replayed = channels.replay()
            channels.buffer = None
            self._buffer_changed(entry)
        conn.replayed, conn.dropped = replayed, dropped
        return conn

    async def _nudge(self, entry: _Entry, channels: SessionChannels) -> None:
        """Wait until a new frontend's iopub subscription is live, so that nothing the kernel
        publishes after ``connect`` returns is lost (a SUB socket misses what is sent before
        its subscription reaches the kernel). kernelmon's probe asks kernel_info until the
        new socket sees a message; probe traffic is not activity. Gives up after
        ``NUDGE_TIMEOUT`` (a kernel busy with silent code answers late)."""
        probe = getattr(entry.backend, "probe", None)
        if probe is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NUDGE_TIMEOUT
        sent: list[asyncio.Future[dict[str, Any]]] = []
        live = asyncio.ensure_future(channels.iopub_live.wait())
        pause = 0.02
        try:
            while not live.done() and loop.time() < deadline:
                sent.append(probe.send_kernel_info())
                await asyncio.wait([live], timeout=min(pause, max(0.0, deadline - loop.time())))
                pause = min(pause * 2, 0.25)
        finally:
            live.cancel()
            for fut in sent:
                fut.cancel()
        if not channels.iopub_live.is_set():
            logger.debug("IOPub of kernel %s silent while connecting", entry.record.id)

    async def _close_connection(self, conn: KernelConnection) -> None:
        channels = conn.channels
        channels.handler = None
        entry = self._kernels.get(conn.kernel_id)
        if entry is None or conn not in entry.connections:
            channels.close()
            return
        entry.connections.remove(conn)
        self.notify_disconnect(conn.kernel_id)
        same_session = any(c.session_key == conn.session_key for c in entry.connections)
        if self._settings.buffer_offline_messages and not same_session:
            self._start_buffering(entry, channels)
        else:
            channels.close()

    def _request_sent(self, entry: _Entry, msg_type: str, msg_id: str) -> None:
        if msg_type == "execute_request":
            entry.executing.add(msg_id)

    def _reply_seen(self, entry: _Entry, msg_type: str, parent_id: str) -> None:
        """The reply to the last execute_request sent through kernelmon means the kernel is
        idle, even if its IOPub stream is still far behind (a flood)."""
        if msg_type != "execute_reply" or parent_id not in entry.executing:
            return
        entry.executing.discard(parent_id)
        watcher = getattr(entry.backend, "watcher", None)
        if watcher is not None:
            watcher.request_finished(parent_id)
        record = entry.record
        if not entry.executing and record.execution_state == ExecutionState.BUSY:
            record.execution_state = ExecutionState.IDLE
            self._changed(record, {"execution_state"}, None)

    def _start_buffering(self, entry: _Entry, channels: SessionChannels) -> None:
        if entry.buffered is not None:
            self._discard_buffer(entry)
        s = self._settings
        buffer = MessageBuffer(s.buffer_max_messages, s.buffer_max_bytes)
        channels.buffer = buffer
        channels.on_buffered = lambda: self._buffer_changed(entry)
        entry.buffered = channels
        self._buffer_changed(entry)

    def _discard_buffer(self, entry: _Entry) -> None:
        if entry.buffered is not None:
            entry.buffered.close()
            entry.buffered = None
            self._buffer_changed(entry)

    def _buffer_changed(self, entry: _Entry) -> None:
        buf = entry.buffered.buffer if entry.buffered is not None else None
        record = entry.record
        buffered = len(buf) if buf is not None else 0
        dropped = buf.dropped if buf is not None else record.buffer_dropped
        if (buffered, dropped) != (record.buffered, record.buffer_dropped):
            record.buffered, record.buffer_dropped = buffered, dropped
            self._changed(record, {"buffered", "buffer_dropped"}, None)

    # -- settings and culling ---------------------------------------------------------------

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

    def _ensure_culler(self) -> None:
        if self._settings.cull_idle_timeout <= 0 or self._culler_task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside a loop yet: the first start_kernel starts it
        self._culler_task = loop.create_task(self._cull_periodically(self._settings.cull_interval))

    def _stop_culler(self) -> None:
        if self._culler_task is not None:
            self._culler_task.cancel()
            self._culler_task = None
        self.next_cull = None

    @property
    def culling(self) -> bool:
        """Whether the periodic cull pass is running."""
        return self._culler_task is not None

    async def _cull_periodically(self, interval: float) -> None:
        logger.info(
            "Culling kernels idle for more than %g s, every %g s",
            self._settings.cull_idle_timeout,
            interval,
        )
        loop = asyncio.get_running_loop()
        passes: set[asyncio.Task[dict[str, str]]] = set()
        due = loop.time() + interval
        try:
            while True:
                wait = max(0.0, due - loop.time())
                self.next_cull = utcnow() + timedelta(seconds=wait)
                await asyncio.sleep(wait)
                # A fixed cadence: a pass busy shutting kernels down never delays the next.
                due = max(due + interval, loop.time())
                task = loop.create_task(self.cull_kernels())
                passes.add(task)
                task.add_done_callback(self._cull_pass_done(passes))
        finally:
            for task in passes:
                task.cancel()

    @staticmethod
    def _cull_pass_done(
        passes: set[asyncio.Task[dict[str, str]]],
    ) -> Callable[[asyncio.Task[dict[str, str]]], None]:
        def done(task: asyncio.Task[dict[str, str]]) -> None:
            passes.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("A cull pass failed: %s", task.exception())

        return done

    async def cull_kernels(self) -> dict[str, str]:
        """One cull pass: shut down every kernel the rules say to, concurrently.

        Returns the culled kernels' ids with the reasons. One kernel's failure never stops
        the pass (it is logged and reported as ``ActionFailed``).
        """
        now = self._clock()
        victims = {
            kid: reason
            for kid, entry in list(self._kernels.items())
            if entry.shutdown_task is None
            and (reason := cull_reason(entry.record, self._settings, now)) is not None
        }
        if not victims:
            return {}
        results = await asyncio.gather(
            *(self._cull_one(kid, reason) for kid, reason in victims.items()),
            return_exceptions=True,
        )
        return {kid: victims[kid] for kid, ok in zip(victims, results, strict=True) if ok is True}

    async def _cull_one(self, kernel_id: str, reason: str) -> bool:
        logger.warning("Culling kernel %s: %s", kernel_id, reason)
        try:
            await self.shutdown_kernel(kernel_id)
        except KernelNotFound:
            return False
        except Exception as e:
            logger.exception("Culling kernel %s failed", kernel_id)
            self._emit(ActionFailed(kernel_id, action="cull", message=str(e)))
            return False
        self._emit(KernelCulled(kernel_id, reason=reason))
        return True
