"""Discovery: other applications' kernels found in the runtime folders join the map.

``Discovery`` owns the ``RuntimeWatcher`` (machine/watcher.py) over the Jupyter runtime
folder and the folders the settings add, what kernelmons saw of other applications' kernels
(``ExternalHistory``), and the connection files whose kernel cannot be watched. Each scan is
*reconciled* with the map: a kernel found joins as an entry with its own backend (from the
backend factory: ``external`` for a live kernel, ``stale`` for a file with no process), one
that changed is updated, one whose file is gone leaves. kernelmon's own kernels are only
updated with how they are reached. The table and the culler read these entries like
kernelmon's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from .backends.base import KernelBackend
from .backends.external import ExternalKernel, ExternalKernelError, read_connection_file
from .backends.factory import BackendFactory
from .external_history import ExternalHistory
from .found import (
    OTHERS_LIVE,
    apply_found,
    apply_process,
    descends_from,
    found_backend,
    one_per_kernel,
)
from .machine.discovery import (
    FoundKernel,
    FoundServer,
    ProcessFacts,
    Scan,
    ScanProblem,
    default_folders,
)
from .machine.watcher import RuntimeWatcher
from .records import ExecutionState, KernelRecord, Origin
from .registry import Entry, Membership
from .settings import Settings

logger = logging.getLogger(__name__)


#: What discovery reads of the registry and changes in it.
DiscoveryRegistry = Membership


class Discovery:
    """Other applications' kernels in the map (see the module).

    ``state_folder()`` is where the history of other applications' kernels is kept,
    ``live_kernels()`` the kernels other kernelmons that still run recorded (id or
    connection file -> their PID), ``display_name(kernel_name)`` an installed spec's name.
    """

    def __init__(
        self,
        registry: DiscoveryRegistry,
        backends: BackendFactory,
        *,
        state_folder: Callable[[], Path],
        live_kernels: Callable[[], dict[str, int]],
        display_name: Callable[[str | None], str],
        runtime_dirs: list[str] | None,
        shutdown_wait: float,
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._state_folder = state_folder
        self._live_kernels = live_kernels
        self._display_name = display_name
        self._runtime_dirs = runtime_dirs
        self._shutdown_wait = shutdown_wait
        self.watcher: RuntimeWatcher | None = None
        self._wanted = False
        self._lock = asyncio.Lock()
        self.background: set[asyncio.Task[object]] = set()
        #: connection files whose kernel could not be watched, by path
        self._unwatchable: dict[str, ScanProblem] = {}
        #: (connection file, pid) of the other applications' kernels watched now, and the
        #: connection info read for the others in the scan's worker thread (never on the
        #: loop: reading checks the file's address, which may resolve a host name)
        self._watched: frozenset[tuple[str | None, int | None]] = frozenset()
        self._prepared: dict[str, dict[str, Any] | ExternalKernelError] = {}
        self._seen: ExternalHistory | None = None
        #: kernels that left the map while a scan ran: what that scan saw of them is old
        #: (e.g. the file of a kernel shut down meanwhile, about to be deleted)
        self._left_during_scan: set[str] | None = None
        #: called with the servers each scan found (the map's servers part adds the live
        #: local servers)
        self.on_servers: Callable[[list[FoundServer]], None] | None = None
        #: why a found kernel's shutdown is refused, its parent being a live local server
        #: kernelmon cannot ask (``servers.parents.LocalParents.refusal``)
        self.parent_refusal: Callable[[KernelRecord], str | None] | None = None
        #: a server's local process by the server's id (None: not on this machine): a
        #: found process's facts are a server row's only if that process started it
        self.server_pid: Callable[[str], int | None] = lambda _server_id: None

    # -- reading ----------------------------------------------------------------------------

    @property
    def folders(self) -> list[Path]:
        """The folders searched for other applications' kernels."""
        extra = self._registry.settings.runtime_folders
        if self._runtime_dirs is not None:
            return [Path(d) for d in self._runtime_dirs] + [Path(d) for d in extra]
        return default_folders(extra)

    @property
    def servers(self) -> list[FoundServer]:
        """Jupyter servers found in the runtime folders by the last scan."""
        return list(self.watcher.scan.servers) if self.watcher is not None else []

    @property
    def problems(self) -> list[ScanProblem]:
        """Runtime files of the last scan that could not be used, and why (also connection
        files whose kernel could not be watched)."""
        if self.watcher is None:
            return []
        return [*self.watcher.problems.values(), *self._unwatchable.values()]

    def history(self) -> ExternalHistory:
        """What kernelmons saw of other applications' kernels (see ``external_history``)."""
        if self._seen is None:
            self._seen = ExternalHistory(self._state_folder(), self._registry.now)
        return self._seen

    def note_history(self, force: bool = False) -> None:
        """Keep what was seen of the other applications' kernels now (saved now and then)."""
        history = self.history()
        history.note_all(e.record for e in self._registry if e.record.origin in OTHERS_LIVE)
        history.save(force)

    def forget(self, kernel_id: str) -> None:
        """The kernel left the map."""
        if self._seen is not None:
            self._seen.forget_if_gone(kernel_id)
        if self._left_during_scan is not None:
            self._left_during_scan.add(kernel_id)

    # -- turning it on and off --------------------------------------------------------------

    async def start(self) -> None:
        """Discovery on (if the settings want it); the first scan is done on return."""
        self._wanted = True
        await self.apply()

    async def stop(self) -> None:
        """Discovery off: found kernels leave the map (and keep running)."""
        self._wanted = False
        await self.apply()
        self.note_history(force=True)
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        self.background.clear()
        # awaited, so that none is left cancelled but never run when the loop ends (its
        # coroutine would be dropped unawaited)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def rescan(self) -> None:
        """Scan the runtime folders now (no-op while discovery is off)."""
        if self.watcher is not None:
            await self.watcher.rescan()

    def scanner(self) -> Callable[[], Awaitable[Mapping[int, ProcessFacts]]] | None:
        """For the sampler's tick: a scan that returns the process table it read, if
        discovery is on and its interval (``max(sample_interval, 1)`` s) has passed."""
        watcher = self.watcher
        if watcher is None or not watcher.due:
            return None

        async def scan() -> Mapping[int, ProcessFacts]:
            return (await watcher.rescan()).table

        return scan

    def rescan_soon(self) -> None:
        """Scan again in the background (a kernel's file may be left behind, or gone).
        Nothing while no loop runs (qasync hands out Qt events once more after its loop
        stopped, and a kernel's exit callback may come then): the next start scans anyway."""
        if self.watcher is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._in_background(self.watcher.rescan())

    async def apply(self) -> None:
        """Make discovery what the settings say: start or stop the watcher, or give it the
        new folders and interval. Serialised, and always reading the current settings, so
        that quick toggles end in the state last asked for."""
        async with self._lock:
            settings = self._registry.settings
            wanted = self._wanted and settings.discover_kernels
            watcher = self.watcher
            if wanted and watcher is None:
                watcher = RuntimeWatcher(
                    self.folders,
                    interval=max(settings.sample_interval, 1.0),
                    owned=self._scan_starting,
                )
                watcher.on_scanned = lambda scan, w=watcher: self._reconcile(w, scan)
                watcher.prepare = self._prepare_found
                self.watcher = watcher
                await watcher.rescan()
            elif not wanted and watcher is not None:
                self.watcher = None
                if self.on_servers is not None:
                    self.on_servers([])  # no scans, no local servers known to be alive
                for entry in self._registry:
                    if (
                        entry.record.origin != Origin.OWNED
                        and not entry.shutting_down
                        and entry.backend.server_id() is None
                    ):
                        self._forget(entry, "kernel discovery was turned off")
            elif watcher is not None:
                watcher.interval = max(settings.sample_interval, 1.0)
                folders = self.folders
                if folders != watcher.folders:
                    watcher.folders = folders
                    await watcher.rescan()

    def settings_changed(self, old: Settings) -> None:
        """Apply new discovery settings (folders, interval, on or off)."""
        new = self._registry.settings
        if not self._wanted or (old.discover_kernels, old.runtime_folders, old.sample_interval) == (
            new.discover_kernels,
            new.runtime_folders,
            new.sample_interval,
        ):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop: what can be done without it
            if self.watcher is not None:
                self.watcher.interval = max(new.sample_interval, 1.0)
                self.watcher.folders = self.folders
            return
        self._in_background(self.apply())

    def _in_background(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- a scan -----------------------------------------------------------------------------

    def _owned_ids(self) -> set[str]:
        return {e.record.id for e in self._registry if e.record.origin == Origin.OWNED}

    def _scan_starting(self) -> set[str]:
        """On the loop, as a scan starts: what its worker thread needs to know (the kernels
        watched now); returns kernelmon's own kernels' ids."""
        self._prepared.clear()
        self._left_during_scan = set()
        self._watched = frozenset(
            (e.record.connection_file, e.record.pid)
            for e in self._registry
            if e.record.origin in OTHERS_LIVE or e.backend.server_id() is not None
        )
        return self._owned_ids()

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

    def _reconcile(self, watcher: RuntimeWatcher, scan: Scan) -> None:
        """Make the map's other-application kernels what a scan found."""
        try:
            if watcher is self.watcher:  # else a scan of a watcher stopped since: not news
                self._reconcile_scan(scan)
                if self.on_servers is not None:
                    self.on_servers(list(scan.servers))
        finally:
            self._prepared.clear()
            self._left_during_scan = None

    def _reconcile_scan(self, scan: Scan) -> None:
        owned = self._owned_ids()
        left = self._left_during_scan or set()
        others: list[FoundKernel] = []
        for kernel in scan.kernels.values():
            kid = kernel.kernel_id
            if kid in owned:
                entry = self._registry.find(kid)
                if entry is not None and entry.record.connection_file in (
                    None,
                    kernel.connection_file,
                ):
                    fields = apply_found(entry.record, kernel, owned=True)
                    if fields:
                        self._registry.changed(entry.record, fields, None)
            elif kid not in left:  # else seen before it left: the next scan says what is left
                others.append(kernel)
        found = one_per_kernel(others, self._live_kernels())
        for entry in self._registry:
            if (
                entry.record.origin != Origin.OWNED
                and entry.record.id not in found
                and not entry.shutting_down
                and entry.backend.server_id() is None  # its server says when it is gone
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

    def _found(self, found: FoundKernel) -> None:
        entry = self._registry.find(found.kernel_id)
        if entry is not None and (entry.record.origin == Origin.OWNED or entry.shutting_down):
            return
        stale = found.origin == Origin.STALE
        server_id = entry.backend.server_id() if entry is not None else None
        if entry is not None and server_id is not None:
            # a server's kernel: its server tells its state; the scan, its process, if that
            # server's process started it
            if stale:
                return
            server_pid = self.server_pid(server_id)
            if descends_from(found.pid, found.parent_pid, server_pid):
                fields = apply_process(entry.record, found)
                if fields:
                    self._registry.changed(entry.record, fields, None)
                return
            if server_pid is None or found.pid is None:
                return  # a remote server's kernel (a process here with its id is not it),
                # or no process known: nothing to tell
            # a local server listed the id of a kernel its process did not start (its
            # runtime file names any pid it likes): the kernel is another application's
            logger.warning(
                "Kernel %s was listed by server %s, which did not start it",
                found.kernel_id,
                entry.record.server_url,
            )
        if entry is not None:
            record = entry.record
            if (
                record.origin != Origin.SERVER  # its server stopped: another kind now
                and (record.origin == Origin.STALE) == stale
                and record.pid == found.pid
                and record.connection_file == found.connection_file
            ):
                # an identity problem a proof before an action found stays unless this
                # scan proved the process the backend acts on (the scan may have started
                # before that proof, or proved a process started at another time)
                backend = entry.backend
                keep = (
                    isinstance(backend, ExternalKernel)
                    and record.identity_problem is not None
                    and not backend.proven_by(found)
                )
                fields = apply_found(record, found, keep_problem=keep)
                if "origin" in fields and not stale:
                    self.history().note(record)  # orphan_since
                    fields.add("orphan_since")
                if fields:
                    self._registry.changed(record, fields, None)
                if found.origin == Origin.ORPHAN:
                    self._probe_orphan(entry)
                return
        new = self._entry_for(found)
        if new is None:
            return
        if entry is not None:  # the same kernel id, now another kind: keep its row
            self._registry.replace(new)
        else:
            self._registry.add(new)
        logger.info("Found %s", found.summary())
        if found.origin == Origin.ORPHAN:
            self._probe_orphan(new)

    def _entry_for(self, found: FoundKernel) -> Entry | None:
        info: dict[str, Any] | ExternalKernelError | None = None
        if found.origin != Origin.STALE:
            info = self._prepared.pop(found.connection_file, None)
            if info is None:  # not read in the scan's thread: the next scan reads it
                return None

        def external() -> KernelBackend:
            if isinstance(info, ExternalKernelError):
                raise info
            return self._backends.external(
                found,
                info=info,
                on_change=self._registry.changed,
                on_exit=lambda _ext: self.rescan_soon(),
                shutdown_wait=self._shutdown_wait,
                untracked=lambda: self._registry.settings.untracked_message_types,
                parent_refusal=self.parent_refusal,
            )

        try:
            backend = found_backend(
                found,
                self._backends,
                new_record=self._registry.new_record,
                display_name=self._display_name,
                external=external,
                restore=lambda record: self.history().restore(record),
            )
        except ExternalKernelError as e:
            logger.warning("Not watching kernel %s: %s", found.kernel_id, e)
            self._unwatchable[found.connection_file] = ScanProblem(found.connection_file, str(e))
            return None
        backend.attach()
        return Entry(backend.record, backend)

    def _probe_orphan(self, entry: Entry) -> None:
        """Ask an orphan found in an unknown state what it does (its file says nothing)."""
        if entry.record.execution_state == ExecutionState.UNKNOWN and not entry.backend.probing:
            self._in_background(entry.backend.probe_state())

    def _forget(self, entry: Entry, reason: str) -> None:
        if entry.record.origin in OTHERS_LIVE:
            self.history().note(entry.record)
        entry.backend.close()
        self._registry.remove(entry, reason)
