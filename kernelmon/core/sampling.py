"""The sampler: one tick every ``Settings.sample_interval`` seconds that reads the process
table once and shares it between discovery (the runtime folders' scan) and resource
sampling (each kernel's process tree: CPU, memory, message rate).

``Sampler`` owns the tick's task and each kernel's history (``machine.resources``). After
each tick it writes the figures into the kernels' records (a coalesced ``KernelChanged``),
hands them to ``Alerts`` (memory warnings) and sends ``UsageSampled`` with the totals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from .alerts import Alerts
from .events import UsageSampled
from .machine.process_table import ProcessFacts, process_table
from .machine.resources import USAGE_FIELDS, KernelHistory, KernelUsage, ResourceSampler
from .periodic import Periodic
from .records import Origin, assign
from .registry import Changing
from .threads import run_in_thread

logger = logging.getLogger(__name__)

#: The discovery part's scan of the runtime folders, returning the process table it read.
Scanner = Callable[[], Awaitable[Mapping[int, ProcessFacts]]]


class SamplerRegistry(Changing, Protocol):
    """What the sampler reads of the registry."""

    def __contains__(self, kernel_id: object) -> bool: ...


class Sampler:
    """The shared tick (see the module). ``scan()`` gives discovery's scan for this tick
    (None while discovery is off or not due); ``after()`` runs after each tick."""

    def __init__(
        self,
        registry: SamplerRegistry,
        alerts: Alerts,
        *,
        scan: Callable[[], Scanner | None],
        after: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._alerts = alerts
        self._scan = scan
        self._after = after
        self._resources = ResourceSampler(full_memory=True)
        self._periodic = Periodic(
            self.tick, lambda: self._registry.settings.sample_interval, "Sampling kernels"
        )

    @property
    def running(self) -> bool:
        return self._periodic.running

    def start(self) -> None:
        """Tick every ``sample_interval`` seconds (inside the running loop)."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def forget(self, kernel_id: str) -> None:
        """The kernel left the map: its history goes."""
        self._resources.untrack(kernel_id)

    def history(self, kernel_id: str) -> KernelHistory | None:
        return self._resources.history(kernel_id) if kernel_id in self._resources else None

    def latest(self, kernel_id: str) -> KernelUsage | None:
        return self._resources.latest(kernel_id)

    def total_usage(self) -> tuple[float | None, int]:
        """(CPU % summed over every kernel's latest sample or None, RSS bytes summed)."""
        cpu: float | None = None
        rss = 0
        for entry in self._registry:
            usage = self._resources.latest(entry.record.id)
            if usage is None:
                continue
            rss += usage.rss
            if usage.cpu_percent is not None:
                cpu = (cpu or 0.0) + usage.cpu_percent
        return cpu, rss

    async def tick(self) -> None:
        """Read the process table once: discovery's scan reads it (after the runtime
        folders, so a kernel whose file it found is in it), or else the sampler; then
        measure every kernel's process tree with it."""
        scan = self._scan()
        table = await scan() if scan is not None else await run_in_thread(process_table)
        self._sync_tracking()
        result = await self._resources.sample(table)
        for kid, usage in result.items():
            entry = self._registry.find(kid)
            if entry is None:
                continue
            record = entry.record
            fields = assign(record, {name: getattr(usage, name) for name in USAGE_FIELDS})
            if fields:
                self._registry.changed(record, fields, None)
        cpu, rss = self.total_usage()
        self._alerts.sampled(result, rss)
        self._after()
        self._registry.emit(UsageSampled("", total_cpu=cpu, total_rss=rss))

    def _sync_tracking(self) -> None:
        resources = self._resources
        for entry in self._registry:
            kid, pid = entry.record.id, entry.record.pid
            if pid is None or entry.record.origin == Origin.STALE:
                resources.untrack(kid)
            elif resources.pid_of(kid) != pid:
                record = entry.record
                resources.track(kid, pid, messages=lambda r=record: r.messages)  # type: ignore[misc]
        for kid in resources.tracked():
            if kid not in self._registry:
                resources.untrack(kid)
