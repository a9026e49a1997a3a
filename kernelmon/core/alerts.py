"""Alerts: memory warnings (``MemoryWarning``, once per crossing of a limit) and finished
jobs (``JobFinished``: a kernel busy for at least ``Settings.notify_job_seconds`` is idle).

``Alerts`` owns which kernels are warned now and since when each busy kernel is busy. It
reads each resource sample (``sampled``, called by the sampler) and, as a change step of
the registry, each change of a kernel's execution state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from .events import JobFinished, MemoryWarning
from .machine.resources import KernelUsage
from .records import ExecutionState, KernelRecord
from .registry import Announcing

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: A warned kernel is warned again only after its memory fell below this share of the limit.
REARM = 0.9
#: The key of the warning about all kernels together.
TOTAL = ""


class AlertsRegistry(Announcing, Protocol):
    """What alerts read of the registry."""


class Alerts:
    """Memory warnings and finished jobs (see the module)."""

    def __init__(self, registry: AlertsRegistry) -> None:
        self._registry = registry
        #: kernels (and ``TOTAL``) over their memory limit, warned once
        self._warned: set[str] = set()
        #: since when (clock timestamp) each busy kernel is busy
        self._busy_since: dict[str, float] = {}

    def forget(self, kernel_id: str) -> None:
        """The kernel left the map."""
        self._warned.discard(kernel_id)
        self._busy_since.pop(kernel_id, None)

    def sampled(self, usage: Mapping[str, KernelUsage], total_rss: int) -> None:
        """Warn about every kernel (and all together) whose memory crossed its limit."""
        settings = self._registry.settings
        limit = settings.memory_warn_kernel_mb * MIB
        for kid, sample in usage.items():
            if limit and sample.rss > limit:
                if kid not in self._warned:
                    self._warned.add(kid)
                    logger.warning("Kernel %s uses %d MiB of memory", kid, sample.rss // MIB)
                    self._registry.emit(MemoryWarning(kid, rss=sample.rss, limit=limit))
            elif not limit or sample.rss < limit * REARM:
                self._warned.discard(kid)
        total_limit = settings.memory_warn_total_mb * MIB
        if total_limit and total_rss > total_limit:
            if TOTAL not in self._warned:
                self._warned.add(TOTAL)
                logger.warning("All kernels together use %d MiB of memory", total_rss // MIB)
                self._registry.emit(
                    MemoryWarning(TOTAL, rss=total_rss, limit=total_limit, total=True)
                )
        elif not total_limit or total_rss < total_limit * REARM:
            self._warned.discard(TOTAL)

    def on_change(self, record: KernelRecord, fields: frozenset[str]) -> None:
        """Change step: a kernel that was busy long enough and is idle finished a job."""
        if "execution_state" not in fields:
            return
        kid = record.id
        state = record.execution_state
        now = self._registry.now().timestamp()
        if state == ExecutionState.BUSY:
            self._busy_since.setdefault(kid, now)
            return
        since = self._busy_since.pop(kid, None)
        wanted = self._registry.settings.notify_job_seconds
        if since is None or state != ExecutionState.IDLE or wanted <= 0:
            return
        seconds = now - since
        if seconds >= wanted:
            logger.info("Kernel %s finished a job of %.0f s", kid, seconds)
            self._registry.emit(JobFinished(kid, seconds=seconds))
