"""``kernelmon list`` when no kernelmon runs: one look at the machine instead of a map.

A command that builds a ``KernelMap`` adopts an earlier run's kernels, starts discovery
(each kernel's IOPub watched, its process waited for) and the sampler, then takes it all
down again: most of ``kernelmon list``'s time went there and into importing what the map
needs. A list only reads, so when nothing waits to be adopted it takes the same facts
once, with the same parts of the core the map uses: the runtime folders and the process
table read once (``scan_runtime``), the state files of kernelmon processes (whose kernels
are theirs), the history of other applications' kernels, the backends' refusals, one
resource sample of that table. The models are the map's (``KernelRecord.to_model``).

Nothing is adopted, watched or signalled. Where a map would say more than one look can
(an earlier run's kernels to adopt, Jupyter servers to poll), the command builds the map.
An orphan found in an unknown state is asked what it does (one ``kernel_info_request``,
as the map's discovery asks it), and what was seen of other applications' kernels is
written to the history file, as the map does when its discovery stops (when each kernel
was first seen is what its idle clock counts from).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.backends.external import ExternalKernelError, read_connection_file
from ..core.backends.factory import BackendFactory
from ..core.culler import cull_eta
from ..core.external_history import ExternalHistory
from ..core.found import OTHERS_LIVE, DisplayNames, found_backend, one_per_kernel
from ..core.machine.discovery import FoundKernel, default_folders, scan_runtime
from ..core.machine.resources import USAGE_FIELDS, ResourceSampler
from ..core.records import ExecutionState, KernelRecord, Origin, as_dict, new_record, utcnow
from ..core.state import StateFile, default_state_dir

if TYPE_CHECKING:
    from ..core.backends.base import KernelBackend
    from ..core.settings import Settings

#: How long an orphan found in an unknown state is given to answer ``kernel_info``
#: (the map's discovery asks with the same default).
PROBE_TIMEOUT = 1.0


def servers_known(state: StateFile) -> bool:
    """Whether the user added Jupyter servers (their kernels are a map's to ask for). Only
    reads the servers file: one that is not kernelmon's is left for the map to move aside
    (and say so), and holds no servers."""
    from ..core.servers.book import ServerBook

    return bool(ServerBook(lambda: state.folder, lambda: False).read(repair=False))


def adoption_pending(state: StateFile) -> bool:
    """Whether an earlier kernelmon run left kernels that a map would adopt (then only
    the map can say what they are: a list shows them as kernelmon's own)."""
    return any(kernels for _path, kernels in state.others())


def _spec_manager() -> Any:
    """jupyter_client's kernel spec manager, imported when a kernel's spec is looked up."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager()


class Snapshot:
    """Every kernel on the machine, looked at once (see the module)."""

    def __init__(
        self,
        settings: Settings,
        state: StateFile,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self.backends = BackendFactory(clock=clock)
        self.display_name = DisplayNames(functools.cache(_spec_manager))
        self.entries: list[tuple[KernelRecord, KernelBackend]] = []

    async def take(self) -> list[dict[str, Any]] | None:
        """The models of every kernel found, as ``kernelmon list`` prints them; None when
        a Jupyter server runs here: its kernels are rows of the server's model, which only
        a map polling it joins (as for the servers the user added, see ``servers_known``)."""
        if not self.settings.discover_kernels:
            return []
        try:
            live = self.state.live_kernels()
            scan = scan_runtime(default_folders(self.settings.runtime_folders))
            if any(server.alive and server.url for server in scan.servers):
                return None
            history = ExternalHistory(self.state.folder, self.clock)
            for kernel in one_per_kernel(scan.kernels.values(), live).values():
                entry = self._entry(kernel, history)
                if entry is not None:
                    self.entries.append(entry)
            probes = [
                asyncio.ensure_future(self._probe(backend))
                for record, backend in self.entries
                if record.origin == Origin.ORPHAN
                and record.execution_state == ExecutionState.UNKNOWN
            ]
            await self._sample(scan.table)
            if probes:
                await asyncio.gather(*probes)
            history.note_all(r for r, _b in self.entries if r.origin in OTHERS_LIVE)
            history.save(force=True)
            now = self.clock()
            return [
                {**as_dict(record.to_model()), "cull_eta": cull_eta(record, self.settings, now)}
                for record, _backend in self.entries
            ]
        finally:
            for _record, backend in self.entries:
                backend.close()

    def _entry(
        self, found: FoundKernel, history: ExternalHistory
    ) -> tuple[KernelRecord, KernelBackend] | None:
        """A kernel's record and backend, made as the map's discovery makes them (but not
        attached: nothing is watched); None for a file whose kernel cannot be watched."""

        def external() -> KernelBackend:
            return self.backends.external(
                found,
                info=read_connection_file(found.connection_file),
                on_change=_unchanged,
                untracked=lambda: self.settings.untracked_message_types,
            )

        try:
            backend = found_backend(
                found,
                self.backends,
                new_record=lambda kid, name, display: new_record(kid, name, self.clock(), display),
                display_name=self.display_name,
                external=external,
                restore=history.restore,
            )
        except ExternalKernelError:
            return None  # the map leaves it out too (and says why in its problems)
        return backend.record, backend

    async def _probe(self, backend: KernelBackend) -> None:
        """An orphan's state, as the map's discovery asks it: idle if it answers in time,
        else busy (the rest of the answer is not waited for)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(backend.probe_state(PROBE_TIMEOUT), PROBE_TIMEOUT + 0.5)

    async def _sample(self, table: Any) -> None:
        """One resource sample of every kernel with a process, from the scan's table."""
        sampler = ResourceSampler(full_memory=True)
        records = {record.id: record for record, _backend in self.entries}
        for record in records.values():
            if record.pid is not None and record.origin != Origin.STALE:
                sampler.track(record.id, record.pid, messages=lambda r=record: r.messages)  # type: ignore[misc]
        for kid, usage in (await sampler.sample(table)).items():
            record = records[kid]
            for name in USAGE_FIELDS:
                setattr(record, name, getattr(usage, name))


def _unchanged(record: KernelRecord, fields: set[str], now: datetime | None) -> None:
    """Nothing follows a change: the models are read once, at the end."""


def state_file() -> StateFile:
    """This user's state folder (``$KERNELMON_STATE_DIR`` or the platform's), as the map
    finds it."""
    return StateFile(default_state_dir())


async def list_models(
    settings: Settings, state: StateFile | None = None
) -> list[dict[str, Any]] | None:
    """``kernelmon list``'s models from one look (call it only when no kernelmon runs and
    neither ``adoption_pending`` nor ``servers_known``); None when a local Jupyter server
    runs (then only a map says what its kernels are)."""
    return await Snapshot(settings, state if state is not None else state_file()).take()
