"""Keeping shown states true: every ``interval`` seconds, each kernel's backend is asked to
check that a kernel shown busy still is (``KernelBackend.confirm_idle_soon``: kernelmon's
own kernels queue an idle check behind the busy code).

``BusyChecks`` owns its timer; it starts when a kernel joins the map and stops by itself
when the map is empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Protocol

from .events import KernelAdded, KernelEvent, Subscriber
from .registry import Entry


class BusyChecksRegistry(Protocol):
    def __iter__(self) -> Iterator[Entry]: ...
    def __len__(self) -> int: ...
    def subscribe(self, callback: Subscriber) -> Callable[[], None]: ...


class BusyChecks:
    """The periodic ``confirm_idle_soon`` of every kernel (see the module)."""

    #: How often kernels shown busy are checked, in seconds.
    interval = 0.2

    def __init__(self, registry: BusyChecksRegistry) -> None:
        self._registry = registry
        self._timer: asyncio.TimerHandle | None = None
        registry.subscribe(self._on_event)

    def _on_event(self, event: KernelEvent) -> None:
        if isinstance(event, KernelAdded):
            self._ensure()

    def _ensure(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(self.interval, self._check)

    def _check(self) -> None:
        self._timer = None
        if not len(self._registry):
            return
        for entry in self._registry:
            entry.backend.confirm_idle_soon()
        self._ensure()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
