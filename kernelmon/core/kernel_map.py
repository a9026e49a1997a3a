"""The map of running kernels: start, watch, buffer, restart, interrupt, shut down, cull.

This is the desktop counterpart of the classic notebook server's MappingKernelManager, on
an asyncio loop (plain or qasync). A ``KernelMap`` is created outside a running loop
without starting anything, and used inside one.

``KernelMap`` is a facade: it owns nothing but its parts and delegates to them. The parts
share one ``Registry`` (entries, events, settings, clock, change notification), each through
a narrow protocol of its own: the ``StateKeeper`` (keeper.py: the crash-safe state file),
the ``Culler`` (culling.py), ``Discovery`` (discovery.py: other applications' kernels),
the ``Sampler`` (sampling.py: one process-table read per tick for discovery and resources),
``Alerts`` (alerts.py: memory warnings, finished jobs), ``Frontends`` (frontends.py) and
``BusyChecks`` (busy_checks.py); adoption is the function ``adoption.restore``. Backends
come from the injected ``BackendFactory`` and are asked what they can do
(``KernelBackend.refusal``), never what type they are. The commands on one kernel (start,
restart, interrupt, shut down) are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_runtime_dir

from . import adoption
from .alerts import Alerts
from .backends.base import Action, KernelBackend
from .backends.factory import BackendFactory
from .backends.local import remove_connection_files
from .busy_checks import BusyChecks
from .culler import cull_eta
from .culling import Culler
from .discovery import Discovery
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
    Subscriber,
)
from .frontends import Frontends
from .keeper import StateKeeper
from .machine.discovery import FoundServer, ScanProblem
from .machine.identity import make_private
from .machine.resources import KernelHistory, KernelUsage
from .protocol.channels import OnMessage
from .protocol.connection import KernelConnection
from .records import ExecutionState, KernelRecord, Origin, as_dict, utcnow
from .registry import KERNEL_ID, Entry, Registry
from .sampling import Sampler
from .settings import Settings
from .state import StateFile
from .threads import run_in_thread
from .workdir import cwd_for_path

logger = logging.getLogger(__name__)


class KernelMap:
    """Every kernel kernelmon manages or watches, by id.

    Kernels kernelmon starts have origin ``owned``; after ``start_monitoring()``, kernels
    other applications started (found in the runtime folders) join with origin
    ``external``, ``orphan`` or ``stale`` (see discovery.py).

    Parameters beyond ``settings`` are for tests and embedding: ``clock`` (what "now" is
    for every timestamp a decision compares: culling, jobs, activity, records), ``backends``
    (the factory of kernel backends; by default ``BackendFactory(clock=clock)``),
    ``restart_poll`` and ``restart_limit`` (jupyter_client's auto-restarter: how often it
    checks the process, how many restarts in a row it tries), ``shutdown_wait`` (how long a
    shutdown waits for the kernel to exit by itself before SIGTERM, at half of it, and
    SIGKILL, at the end), ``connection_dir`` (where connection files go; the Jupyter runtime
    folder by default), ``transport`` ("ipc" or "tcp"; by default IPC where the platform has
    Unix sockets, so no TCP port is open to other users, else TCP on 127.0.0.1),
    ``state_dir`` (where the crash-safe record of running kernels is kept;
    ``$KERNELMON_STATE_DIR`` or the user's state folder by default), ``runtime_dirs`` (the
    folders searched for other applications' kernels instead of the Jupyter runtime
    folder; ``Settings.runtime_folders`` are searched too).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        backends: BackendFactory | None = None,
        restart_poll: float = 3.0,
        restart_limit: int = 5,
        shutdown_wait: float = 5.0,
        connection_dir: str | None = None,
        kernel_spec_manager: KernelSpecManager | None = None,
        transport: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        runtime_dirs: list[str] | None = None,
    ) -> None:
        self._restart_poll = restart_poll
        self._restart_limit = restart_limit
        self._shutdown_wait = shutdown_wait
        self._connection_dir = connection_dir
        self._ksm = kernel_spec_manager
        self._transport = transport
        self._display_names: dict[str, str] = {}
        self.default_kernel_name = NATIVE_KERNEL_NAME
        self.backends = backends if backends is not None else BackendFactory(clock=clock)
        self.registry = Registry(settings if settings is not None else Settings(), clock)
        registry = self.registry
        self.keeper = StateKeeper(registry, state_dir)
        self.alerts = Alerts(registry)
        self.frontends = Frontends(registry)
        self.culler = Culler(registry, lambda kernel_id: self.shutdown_kernel(kernel_id))
        self.busy_checks = BusyChecks(registry)
        self.discovery = Discovery(
            registry,
            self.backends,
            state_folder=lambda: self.keeper.state_file.folder,
            live_kernels=lambda: self.keeper.state_file.live_kernels(),
            display_name=self._display_name,
            runtime_dirs=runtime_dirs,
            shutdown_wait=shutdown_wait,
        )
        self.sampler = Sampler(
            registry,
            self.alerts,
            scan=self.discovery.scanner,
            after=self.discovery.note_history,
        )
        # what follows a change, in this order: the state file, then finished jobs
        registry.on_change(self.keeper.on_change)
        registry.on_change(self.alerts.on_change)
        for forget in (self.sampler.forget, self.alerts.forget, self.discovery.forget):
            registry.on_forget(forget)

    # -- reading ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.registry.settings

    @property
    def kernel_spec_manager(self) -> KernelSpecManager:
        if self._ksm is None:
            self._ksm = KernelSpecManager()
        return self._ksm

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self.registry

    def __len__(self) -> int:
        return len(self.registry.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.registry.entries))

    @property
    def _kernels(self) -> dict[str, Entry]:
        """The registry's entries by id (kept for tests that reach into a kernel's entry)."""
        return self.registry.entries

    def record(self, kernel_id: str) -> KernelRecord:
        """The live record of a kernel (read it, do not change it)."""
        return self.registry.get(kernel_id).record

    def backend(self, kernel_id: str) -> KernelBackend:
        return self.registry.get(kernel_id).backend

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """A JSON-safe dict describing the kernel (its keys: ``records.KernelModel``)."""
        return as_dict(self.registry.get(kernel_id).record.to_model())

    def list_kernels(self) -> list[dict[str, Any]]:
        """Every kernel's model (see ``kernel_model``)."""
        return [as_dict(e.record.to_model()) for e in self.registry]

    def cull_eta(self, kernel_id: str) -> float | None:
        """Seconds until the kernel becomes cullable (see ``culler.cull_eta``)."""
        record = self.registry.get(kernel_id).record
        return cull_eta(record, self.settings, self.registry.now())

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
        return cwd_for_path(self.settings.root_dir, path)

    @property
    def last_kernel_activity(self) -> datetime:
        """The latest activity on any kernel (shutdowns included), UTC."""
        return self.registry.last_kernel_activity

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``KernelEvent``; returns an unsubscribe."""
        return self.registry.subscribe(callback)

    # -- the parts' public faces ------------------------------------------------------------

    @property
    def state_file(self) -> StateFile:
        """This map's record of its kernels (see ``state``)."""
        return self.keeper.state_file

    @property
    def problems(self) -> list[str]:
        """What is wrong with kernelmon's record of its kernels now (see ``StateKeeper``)."""
        return self.keeper.problems

    async def check_state_folder(self) -> list[str]:
        """Look at the state folder now; returns ``problems`` (see ``StateKeeper``)."""
        return await self.keeper.check_folder()

    @property
    def culling(self) -> bool:
        """Whether the periodic cull pass is running."""
        return self.culler.running

    @property
    def next_cull(self) -> datetime | None:
        """When the culler's next pass runs (UTC), or None while culling is off."""
        return self.culler.next_cull

    async def cull_kernels(self) -> dict[str, str]:
        """One cull pass now (see ``Culler.cull_kernels``)."""
        return await self.culler.cull_kernels()

    async def restore(self) -> list[str]:
        """Adopt the kernels of earlier kernelmon runs (see ``adoption.restore``)."""
        return await adoption.restore(self.registry, self.keeper, self, self._shutdown_wait)

    async def connect(
        self, kernel_id: str, session_key: str, on_message: OnMessage
    ) -> KernelConnection:
        """Attach a frontend (see ``Frontends.connect``)."""
        return await self.frontends.connect(kernel_id, session_key, on_message)

    def notify_connect(self, kernel_id: str) -> None:
        """A frontend connected (counts in ``connections``)."""
        self.frontends.notify_connect(kernel_id)

    def notify_disconnect(self, kernel_id: str) -> None:
        """A frontend disconnected."""
        self.frontends.notify_disconnect(kernel_id)

    @property
    def monitoring(self) -> bool:
        """Whether sampling (and, if on in the settings, discovery) runs."""
        return self.sampler.running

    @property
    def runtime_folders(self) -> list[Path]:
        """The folders searched for other applications' kernels."""
        return self.discovery.folders

    @property
    def servers(self) -> list[FoundServer]:
        """Jupyter servers found in the runtime folders by the last scan."""
        return self.discovery.servers

    @property
    def discovery_problems(self) -> list[ScanProblem]:
        """Runtime files of the last scan that could not be used, and why."""
        return self.discovery.problems

    def history(self, kernel_id: str) -> KernelHistory | None:
        """CPU, memory and message-rate history of a kernel (None before its first sample)."""
        self.registry.get(kernel_id)
        return self.sampler.history(kernel_id)

    def usage(self, kernel_id: str) -> KernelUsage | None:
        """The kernel's latest resource sample, or None."""
        self.registry.get(kernel_id)
        return self.sampler.latest(kernel_id)

    def total_usage(self) -> tuple[float | None, int]:
        """(CPU % summed over every kernel's latest sample or None, RSS bytes summed)."""
        return self.sampler.total_usage()

    async def start_monitoring(self) -> None:
        """Start sampling and (if ``discover_kernels``) discovery; the first scan and sample
        are done when this returns. Call it inside the running loop, after ``restore()``
        (kernels of an earlier run are kernelmon's, not orphans)."""
        await self.discovery.start()
        await self.sampler.tick()
        self.sampler.start()

    async def stop_monitoring(self) -> None:
        """Stop sampling and discovery; discovered kernels leave the map (and keep running)."""
        await self.sampler.stop()
        await self.discovery.stop()

    async def rescan(self) -> None:
        """Scan the runtime folders now (no-op while discovery is off)."""
        await self.discovery.rescan()

    # -- what adoption asks of the map (``adoption.Backends``) ------------------------------

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
        return self.backends.local(
            record,
            kernel_spec_manager=self.kernel_spec_manager,
            connection_dir=conn_dir,
            on_change=self.registry.changed,
            emit=self.registry.emit,
            restart_poll=self._restart_poll,
            restart_limit=self._restart_limit,
            shutdown_wait=self._shutdown_wait,
            transport=self._transport,
            log_dir=self.keeper.kernel_log_dir(conn_dir),
            save_state=self.keeper.save,
            kernel_info_timeout=lambda: registry.settings.kernel_info_timeout,
            untracked=lambda: registry.settings.untracked_message_types,
        )

    def unadopted(self, record: KernelRecord, *args: Any) -> KernelBackend:
        """A backend for a kernel of an earlier run that runs but cannot be adopted."""
        return self.backends.unadopted(record, *args)

    def _display_name(self, kernel_name: str | None) -> str:
        """The installed kernel spec's display name ("" if there is no such spec)."""
        if not kernel_name:
            return ""
        if kernel_name not in self._display_names:
            try:
                spec = self.kernel_spec_manager.get_kernel_spec(kernel_name)
                self._display_names[kernel_name] = str(spec.display_name or "")
            except Exception:
                return ""  # not installed (yet): look again next time
        return self._display_names[kernel_name]

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
        name = kernel_name or self.default_kernel_name
        spec = self.resolve_spec(name)
        cwd = self.cwd_for_path(path)
        await self.keeper.ensure_recordable()  # a kernel that cannot be recorded is orphaned
        kid = kernel_id or str(uuid.uuid4())
        now = registry.now()
        record = KernelRecord(
            id=kid,
            name=name,
            display_name=spec.display_name,
            cwd=cwd,
            last_activity=now,
            started=now,
        )
        backend = self.local(record)
        entry = Entry(record, backend, ready=asyncio.get_running_loop().create_future())
        registry.add(entry)
        try:
            await backend.start(cwd, self.settings.kernel_info_timeout)
            self.keeper.ensure_recorded()
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
            self.keeper.save()
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
            await entry.backend.restart(self.settings.kernel_info_timeout)
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
        """Stop the kernel (shutdown_request, then terminate, then kill) and forget it."""
        entry = self.registry.get(kernel_id)
        if entry.shutdown_task is None:
            entry.shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(entry, now))
        await asyncio.shield(entry.shutdown_task)

    async def _shutdown(self, entry: Entry, now: bool) -> None:
        """Shut a kernel down (a stale one: clean its file up). A failure of a backend that
        does not kill on failure (``kill_if_shutdown_fails``: another application's kernel)
        keeps it listed and watched and is raised: kernelmon never claims it gone when it
        is not."""
        kid, record, backend = entry.record.id, entry.record, entry.backend
        self.frontends.close(entry)
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
            self.discovery.rescan_soon()

    def _forget_shut_down(self, entry: Entry) -> None:
        entry.backend.close()
        if self.registry.discard(entry):
            self.keeper.save()  # a kernel that could not be adopted was recorded there
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

    async def close(self, shutdown_kernels: bool = True) -> None:
        """Stop the culler and (by default) every kernel; the map is empty afterwards.

        With ``shutdown_kernels=False`` the kernels keep running and stay in the state file,
        so the next run's ``restore()`` adopts them. Kernels other applications started are
        only forgotten (they keep running).
        """
        self.culler.stop()
        await self.stop_monitoring()
        if shutdown_kernels:
            await self.shutdown_all()
        else:
            self.keeper.save(released=True)
            for entry in self.registry:
                self.frontends.close(entry)
                entry.backend.close()
            self.registry.entries.clear()
        self.busy_checks.stop()
        self.registry.close()

    # -- settings ---------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings from now on; a new culler interval takes effect at once."""
        if not isinstance(settings, Settings):
            raise TypeError("apply_settings needs a Settings object")
        old, self.registry.settings = self.registry.settings, settings
        self.frontends.settings_changed(list(self.registry))
        self.culler.settings_changed(old)
        self.discovery.settings_changed(old)
