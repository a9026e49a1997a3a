"""Every kernel on the machine: discovered kernels, resource sampling, warnings.

The ``KernelMap`` part that runs a ``discovery.RuntimeWatcher`` over the Jupyter runtime
folder (and any folders the settings add) and a ``resources.ResourceSampler`` over every
kernel with a process. Kernels other applications started join the map as entries with
their own backend (``external.ExternalKernel``, or ``external.StaleKernel`` for a file with
no process) and their ``origin``; the table and the culler read them like kernelmon's own.

Sampling fills each record's ``cpu_percent`` / ``rss`` / ... (coalesced ``KernelChanged``)
and sends ``UsageSampled`` per tick; ``MemoryWarning`` and ``JobFinished`` are derived here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .backends.external import ExternalKernel, ExternalKernelError, read_connection_file
from .backends.stale import StaleKernel
from .events import (
    JobFinished,
    KernelAdded,
    KernelChanged,
    KernelRemoved,
    MemoryWarning,
    UsageSampled,
)
from .external_history import ExternalHistory
from .machine.discovery import (
    FoundKernel,
    FoundServer,
    RuntimeWatcher,
    Scan,
    ScanProblem,
    default_folders,
)
from .machine.resources import KernelHistory, KernelUsage, ResourceSampler
from .map_base import Entry, MapBase
from .periodic import Periodic
from .records import ExecutionState, KernelRecord, Origin

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: A warned kernel is warned again only after its memory fell below this share of the limit.
REARM = 0.9
USAGE_FIELDS = frozenset({"cpu_percent", "rss", "pss", "uss", "processes", "message_rate"})


def apply_found(record: KernelRecord, found: FoundKernel, owned: bool = False) -> set[str]:
    """Copy what a scan found onto a record; returns the names of the fields that changed.

    For kernelmon's own kernels (``owned``) only how they are reached is copied: their
    process is known better by their backend (a scan may see it mid-restart).
    """
    values: dict[str, object] = {
        "connection_file": found.connection_file,
        "transport": found.transport,
        "ip": found.ip,
        "ports": dict(found.ports),
    }
    if not owned:
        values.update(
            origin=found.origin,
            pid=found.pid,
            parent_pid=found.parent_pid,
            parent_app=found.parent_app,
            parent_alive=found.parent_alive,
            server_url=found.server_url,
            identity_problem=found.identity_problem,
        )
    changed = set()
    for name, value in values.items():
        if getattr(record, name) != value:
            setattr(record, name, value)
            changed.add(name)
    return changed


def owned_by_kernelmon(found: FoundKernel, kernelmon_pid: int) -> FoundKernel:
    """A kernel another kernelmon process that still runs recorded as its own: external,
    its application being that kernelmon (never an orphan, whatever its parent process)."""
    return dataclasses.replace(
        found,
        origin=Origin.EXTERNAL,
        parent_pid=kernelmon_pid,
        parent_name="kernelmon",
        parent_app="kernelmon",
        parent_alive=True,
        first_parent_pid=kernelmon_pid,
    )


class MonitoringMixin(MapBase):
    """Discovery of other applications' kernels and resource sampling for ``KernelMap``."""

    _runtime_dirs: list[str] | None
    _watcher: RuntimeWatcher | None
    _sampler: ResourceSampler
    _sampling: Periodic
    _background: set[asyncio.Task[object]]
    _mem_warned: set[str]
    _busy_since: dict[str, float]
    _monitoring_on: bool
    _discovery_lock: asyncio.Lock
    _unwatchable: dict[str, ScanProblem]

    def _init_monitoring(self, runtime_dirs: list[str] | None) -> None:
        self._runtime_dirs = runtime_dirs
        self._watcher = None
        self._sampler = ResourceSampler(interval=self._settings.sample_interval, full_memory=True)
        self._sampling = Periodic(
            self._sample_tick, lambda: self._settings.sample_interval, "Sampling kernel resources"
        )
        self._background = set()
        self._mem_warned = set()
        self._busy_since = {}
        self._display_names: dict[str, str] = {}
        self._monitoring_on = False
        self._discovery_lock = asyncio.Lock()
        #: connection files whose kernel could not be watched, by path
        self._unwatchable: dict[str, ScanProblem] = {}
        #: (connection file, pid) of the other applications' kernels watched now, and the
        #: connection info read for the others in the scan's worker thread (never on the
        #: loop: reading checks the file's address, which may resolve a host name)
        self._watched: frozenset[tuple[str, int | None]] = frozenset()
        self._prepared: dict[str, dict[str, Any] | ExternalKernelError] = {}
        self._seen: ExternalHistory | None = None

    def _history(self) -> ExternalHistory:
        """What kernelmons saw of other applications' kernels (see ``external_history``)."""
        if self._seen is None:
            self._seen = ExternalHistory(self.state_file.folder, self._clock)
        return self._seen

    def _note_history(self, force: bool = False) -> None:
        history = self._history()
        history.note_all(
            e.record for e in self._kernels.values() if isinstance(e.backend, ExternalKernel)
        )
        history.save(force)

    # -- reading ----------------------------------------------------------------------------

    @property
    def monitoring(self) -> bool:
        """Whether sampling (and, if on in the settings, discovery) runs."""
        return self._sampling.running

    @property
    def runtime_folders(self) -> list[Path]:
        """The folders searched for other applications' kernels."""
        if self._runtime_dirs is not None:
            return [Path(d) for d in self._runtime_dirs] + [
                Path(d) for d in self._settings.runtime_folders
            ]
        return default_folders(self._settings.runtime_folders)

    @property
    def servers(self) -> list[FoundServer]:
        """Jupyter servers found in the runtime folders by the last scan."""
        return list(self._watcher.scan.servers) if self._watcher is not None else []

    @property
    def discovery_problems(self) -> list[ScanProblem]:
        """Runtime files of the last scan that could not be used, and why (also connection
        files whose kernel could not be watched)."""
        if self._watcher is None:
            return []
        return [*self._watcher.problems.values(), *self._unwatchable.values()]

    def history(self, kernel_id: str) -> KernelHistory | None:
        """CPU, memory and message-rate history of a kernel (None before its first sample)."""
        self._get(kernel_id)
        return self._sampler.history(kernel_id) if kernel_id in self._sampler else None

    def usage(self, kernel_id: str) -> KernelUsage | None:
        """The kernel's latest resource sample, or None."""
        self._get(kernel_id)
        return self._sampler.latest(kernel_id)

    def total_usage(self) -> tuple[float | None, int]:
        """(CPU % summed over every kernel's latest sample or None, RSS bytes summed)."""
        cpu: float | None = None
        rss = 0
        for kid in self._kernels:
            usage = self._sampler.latest(kid)
            if usage is None:
                continue
            rss += usage.rss
            if usage.cpu_percent is not None:
                cpu = (cpu or 0.0) + usage.cpu_percent
        return cpu, rss

    # -- starting and stopping --------------------------------------------------------------

    async def start_monitoring(self) -> None:
        """Start sampling and (if ``discover_kernels``) discovery; the first scan and sample
        are done when this returns. Call it inside the running loop, after ``restore()``
        (kernels of an earlier run are kernelmon's, not orphans)."""
        self._monitoring_on = True
        await self._apply_discovery()
        await self._sample_tick()
        self._sampling.start()

    async def stop_monitoring(self) -> None:
        """Stop sampling and discovery; discovered kernels leave the map (and keep running)."""
        self._monitoring_on = False
        await self._sampling.stop()
        await self._apply_discovery()
        self._note_history(force=True)
        for task in list(self._background):
            task.cancel()
        self._background.clear()

    async def rescan(self) -> None:
        """Scan the runtime folders now (no-op while discovery is off)."""
        if self._watcher is not None:
            await self._watcher.rescan()

    async def _apply_discovery(self) -> None:
        """Make discovery what the settings say: start or stop the watcher, or give it the
        new folders and interval. Serialised, and always reading the current settings, so
        that quick toggles end in the state last asked for."""
        async with self._discovery_lock:
            settings = self._settings
            wanted = self._monitoring_on and settings.discover_kernels
            watcher = self._watcher
            if wanted and watcher is None:
                watcher = RuntimeWatcher(
                    self.runtime_folders,
                    interval=max(settings.sample_interval, 1.0),
                    owned=self._scan_starting,
                )
                watcher.on_scanned = lambda scan, w=watcher: self._reconcile(w, scan)
                watcher.prepare = self._prepare_found
                self._watcher = watcher
                await watcher.rescan()
                watcher.start()
            elif not wanted and watcher is not None:
                self._watcher = None
                await watcher.stop()
                for entry in list(self._kernels.values()):
                    if entry.record.origin != Origin.OWNED and not self._shutting_down(entry):
                        self._forget(entry, "kernel discovery was turned off")
            elif watcher is not None:
                watcher.interval = max(settings.sample_interval, 1.0)
                folders = self.runtime_folders
                if folders != watcher.folders:
                    watcher.folders = folders
                    await watcher.rescan()

    def _monitoring_settings_changed(self) -> None:
        """Apply discovery settings (called by ``apply_settings``)."""
        if not self._monitoring_on:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop: what can be done without it
            if self._watcher is not None:
                self._watcher.interval = max(self._settings.sample_interval, 1.0)
                self._watcher.folders = self.runtime_folders
            return
        self._in_background(self._apply_discovery())

    def _in_background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- discovered kernels -----------------------------------------------------------------

    @staticmethod
    def _shutting_down(entry: Entry) -> bool:
        return entry.shutdown_task is not None and not entry.shutdown_task.done()

    def _prepare_found(self, scan: Scan) -> None:
        """In the scan's worker thread: read the connection files of the kernels found that
        are not watched yet (``_entry_for`` takes them on the loop)."""
        for kernel in scan.kernels.values():
            path = kernel.connection_file
            if kernel.origin in (Origin.STALE, Origin.OWNED) or (path, kernel.pid) in self._watched:
                continue
            try:
                self._prepared[path] = read_connection_file(path)
            except ExternalKernelError as e:
                self._prepared[path] = e

    def _scan_starting(self) -> set[str]:
        """On the loop, as a scan starts: what its worker thread needs to know (the kernels
        watched now); returns kernelmon's own kernels' ids."""
        self._prepared.clear()
        self._watched = frozenset(
            (e.backend.connection_file, e.record.pid)
            for e in self._kernels.values()
            if isinstance(e.backend, ExternalKernel)
        )
        return self._owned_ids()

    def _reconcile(self, watcher: RuntimeWatcher, scan: Scan) -> None:
        """Make the map's other-application kernels what a scan found."""
        try:
            self._reconcile_scan(watcher, scan)
        finally:
            self._prepared.clear()

    def _reconcile_scan(self, watcher: RuntimeWatcher, scan: Scan) -> None:
        if watcher is not self._watcher:
            return  # a scan of a watcher stopped (or replaced) since: not news
        owned = self._owned_ids()
        others = self.state_file.live_kernels()
        found: dict[str, FoundKernel] = {}
        for kernel in scan.kernels.values():
            kid = kernel.kernel_id
            owner = others.get(kid) or others.get(kernel.connection_file)
            if owner is not None and kid not in owned and kernel.pid is not None:
                kernel = owned_by_kernelmon(kernel, owner)
            if kid in owned:
                record = self._kernels[kid].record
                if record.connection_file in (None, kernel.connection_file):
                    fields = apply_found(record, kernel, owned=True)
                    if fields:
                        self._changed(record, fields, None)
                continue
            # one id in several files (several folders): the one with a live process wins
            other = found.get(kid)
            if other is None or (other.pid is None and kernel.pid is not None):
                found[kid] = kernel
        for kid, entry in list(self._kernels.items()):
            if (
                entry.record.origin != Origin.OWNED
                and kid not in found
                and not self._shutting_down(entry)
            ):
                self._forget(entry, "its connection file was removed")
        self._unwatchable = {
            path: problem for path, problem in self._unwatchable.items() if path in scan.kernels
        }
        for kernel in found.values():
            try:  # one kernel that cannot be watched never stops the others
                self._found(kernel)
            except Exception as e:
                logger.exception("Kernel %s cannot be watched", kernel.kernel_id)
                self._unwatchable[kernel.connection_file] = ScanProblem(
                    kernel.connection_file, f"names a kernel kernelmon cannot watch: {e}"
                )

    def _owned_ids(self) -> set[str]:
        return {kid for kid, e in self._kernels.items() if e.record.origin == Origin.OWNED}

    def _found(self, found: FoundKernel) -> None:
        kid = found.kernel_id
        entry = self._kernels.get(kid)
        if entry is not None and (
            entry.record.origin == Origin.OWNED or self._shutting_down(entry)
        ):
            return
        stale = found.origin == Origin.STALE
        if entry is not None:
            same_kind = isinstance(entry.backend, StaleKernel) == stale
            if (
                same_kind
                and entry.record.pid == found.pid
                and entry.record.connection_file == found.connection_file
            ):
                fields = apply_found(entry.record, found)
                if "origin" in fields and isinstance(entry.backend, ExternalKernel):
                    self._history().note(entry.record)  # orphan_since
                    fields.add("orphan_since")
                if fields:
                    self._changed(entry.record, fields, None)
                if found.origin == Origin.ORPHAN:
                    self._probe_orphan(entry)
                return
        new = self._entry_for(found)
        if new is None:
            return
        if entry is not None:  # the same kernel id, now another kind: keep its row
            entry.backend.close()
            self._kernels[kid] = new
            model = new.record.to_model()
            self._emit(KernelChanged(kid, frozenset(model), model))
        else:
            self._kernels[kid] = new
            self._emit(KernelAdded(kid, new.record.to_model()))
            self._ensure_culler()
        logger.info("Found %s", found.summary())
        if found.origin == Origin.ORPHAN:
            self._probe_orphan(new)

    def _entry_for(self, found: FoundKernel) -> Entry | None:
        if found.origin == Origin.STALE:
            record = KernelRecord(
                id=found.kernel_id,
                name=found.kernel_name or "",
                display_name=self._display_name(found.kernel_name),
            )
            backend: StaleKernel | ExternalKernel = StaleKernel(record, found.connection_file)
            apply_found(record, found)
            return Entry(record, backend)
        info = self._prepared.pop(found.connection_file, None)
        if info is None:  # not read in the scan's thread: the next scan reads it
            return None
        try:
            if isinstance(info, ExternalKernelError):
                raise info
            ext = ExternalKernel.from_found(
                found,
                info=info,
                on_change=self._changed,
                on_exit=self._external_exited,
                shutdown_wait=self._shutdown_wait,
                untracked=lambda: self._settings.untracked_message_types,
            )
        except ExternalKernelError as e:
            logger.warning("Not watching kernel %s: %s", found.kernel_id, e)
            self._unwatchable[found.connection_file] = ScanProblem(found.connection_file, str(e))
            return None
        record = ext.record
        apply_found(record, found)
        record.display_name = self._display_name(found.kernel_name)
        # Its idle clock: the last activity a kernelmon saw, else when one first saw it
        # (never its process's start, nor this launch's "now").
        self._history().restore(record)
        ext.attach()
        return Entry(record, ext)

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

    def _probe_orphan(self, entry: Entry) -> None:
        backend = entry.backend
        if (
            isinstance(backend, ExternalKernel)
            and entry.record.execution_state == ExecutionState.UNKNOWN
            and not backend.probing
        ):
            self._in_background(backend.probe_state())

    def _external_exited(self, ext: ExternalKernel) -> None:
        # Its file is either gone (vanishes) or left behind (stale): look again soon.
        if self._watcher is not None:
            self._in_background(self._watcher.rescan())

    def _forget(self, entry: Entry, reason: str) -> None:
        kid = entry.record.id
        if isinstance(entry.backend, ExternalKernel):
            self._history().note(entry.record)
        entry.backend.close()
        if self._kernels.get(kid) is entry:
            del self._kernels[kid]
            self._let_go(kid)
            self._emit(KernelRemoved(kid, reason=reason))

    def _let_go(self, kernel_id: str) -> None:
        """Drop what is kept about a kernel that left the map (changes, samples, warnings)."""
        self._pending_changes.pop(kernel_id, None)
        self._sampler.untrack(kernel_id)
        self._mem_warned.discard(kernel_id)
        self._busy_since.pop(kernel_id, None)
        if self._seen is not None:
            self._seen.forget_if_gone(kernel_id)

    # -- resources --------------------------------------------------------------------------

    async def _sample_tick(self) -> None:
        self._sync_tracking()
        result = await self._sampler.sample()
        for kid, usage in result.items():
            entry = self._kernels.get(kid)
            if entry is None:
                continue
            record = entry.record
            fields = set()
            for name in USAGE_FIELDS:
                value = getattr(usage, name)
                if getattr(record, name) != value:
                    setattr(record, name, value)
                    fields.add(name)
            if fields:
                self._changed(record, fields, None)
        self._check_memory(result)
        self._note_history()
        cpu, rss = self.total_usage()
        self._emit(UsageSampled("", total_cpu=cpu, total_rss=rss))

    def _sync_tracking(self) -> None:
        for kid, entry in self._kernels.items():
            pid = entry.record.pid
            if pid is None or isinstance(entry.backend, StaleKernel):
                self._sampler.untrack(kid)
            elif self._sampler.pid_of(kid) != pid:
                record = entry.record
                self._sampler.track(kid, pid, messages=lambda r=record: r.messages)  # type: ignore[misc]
        for kid in self._sampler.tracked():
            if kid not in self._kernels:
                self._sampler.untrack(kid)

    def _check_memory(self, result: dict[str, KernelUsage]) -> None:
        settings = self._settings
        limit = settings.memory_warn_kernel_mb * MIB
        for kid, usage in result.items():
            if limit and usage.rss > limit:
                if kid not in self._mem_warned:
                    self._mem_warned.add(kid)
                    logger.warning("Kernel %s uses %d MiB of memory", kid, usage.rss // MIB)
                    self._emit(MemoryWarning(kid, rss=usage.rss, limit=limit))
            elif not limit or usage.rss < limit * REARM:
                self._mem_warned.discard(kid)
        total_limit = settings.memory_warn_total_mb * MIB
        _cpu, total = self.total_usage()
        if total_limit and total > total_limit:
            if "" not in self._mem_warned:
                self._mem_warned.add("")
                logger.warning("All kernels together use %d MiB of memory", total // MIB)
                self._emit(MemoryWarning("", rss=total, limit=total_limit, total=True))
        elif not total_limit or total < total_limit * REARM:
            self._mem_warned.discard("")

    # -- jobs -------------------------------------------------------------------------------

    def _state_changed(self, record: KernelRecord) -> None:
        kid = record.id
        state = record.execution_state
        now = self._clock().timestamp()
        if state == ExecutionState.BUSY:
            self._busy_since.setdefault(kid, now)
            return
        since = self._busy_since.pop(kid, None)
        wanted = self._settings.notify_job_seconds
        if since is None or state != ExecutionState.IDLE or wanted <= 0:
            return
        seconds = now - since
        if seconds >= wanted:
            logger.info("Kernel %s finished a job of %.0f s", kid, seconds)
            self._emit(JobFinished(kid, seconds=seconds))
