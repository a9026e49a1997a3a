"""The one shared state of the kernel map: the entries by id, the events out, the settings,
the clock and the change notification.

Every part of the map (culler, discovery, sampler, alerts, frontends, adoption, the state
keeper) is handed this registry through a narrow ``Protocol`` of its own that names only
what it reads and calls. The registry itself decides nothing: it keeps the entries, sends
events and coalesces changes. Work that follows a change (writing the state file when a
kernel's process changes, noticing a finished job) is a *change step* a part registered
with ``on_change``, run in the order registered; what a part keeps about a kernel is dropped
by the step it registered with ``on_forget`` when the kernel leaves the map.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .backends.base import KernelBackend
from .errors import KernelNotFound
from .events import EventHub, KernelAdded, KernelChanged, KernelEvent, KernelRemoved, Subscriber
from .protocol.channels import SessionChannels
from .protocol.connection import KernelConnection
from .records import KernelRecord, as_dict
from .settings import Settings

#: Fields whose change is sent to subscribers at once; others are coalesced.
URGENT_FIELDS = frozenset({"execution_state", "connections", "reason", "pid", "restarts"})
KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Called with a record and the names of its fields that changed (see ``on_change``).
ChangeStep = Callable[[KernelRecord, frozenset[str]], None]


@dataclass(eq=False)
class Entry:
    """A kernel in the map: its facts, its backend and the map's bookkeeping for it."""

    record: KernelRecord
    backend: KernelBackend
    ready: asyncio.Future[None] | None = None
    connections: list[KernelConnection] = field(default_factory=list)
    buffered: SessionChannels | None = None
    shutdown_task: asyncio.Task[None] | None = None
    #: execute_requests sent through kernelmon's connections and not answered yet
    executing: set[str] = field(default_factory=set)

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_task is not None and not self.shutdown_task.done()


class Announcing(Protocol):
    """The least a part of the map is given: the settings, the clock, the events out."""

    settings: Settings

    def now(self) -> datetime: ...
    def emit(self, event: KernelEvent) -> None: ...


class Changing(Announcing, Protocol):
    """For parts that read the map's entries and change their records."""

    def __iter__(self) -> Iterator[Entry]: ...
    def find(self, kernel_id: str) -> Entry | None: ...
    def changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None: ...


class Membership(Changing, Protocol):
    """For parts that bring kernels into the map and take them out (discovery, servers)."""

    def new_record(
        self, kernel_id: str, name: str, display_name: str = "", cwd: str | None = None
    ) -> KernelRecord: ...
    def add(self, entry: Entry) -> None: ...
    def replace(self, entry: Entry) -> None: ...
    def remove(self, entry: Entry, reason: str) -> None: ...
    @property
    def members(self) -> int: ...


class Registry:
    """Entries by id, events, settings, clock and change notification (see the module)."""

    #: Coalescing period for activity-only change events, in seconds.
    change_interval = 0.1

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self._clock = clock
        self.entries: dict[str, Entry] = {}
        #: how many times an entry came, went or was replaced (``members``)
        self._members = 0
        self._hub = EventHub()
        self._pending: dict[str, set[str]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._steps: list[ChangeStep] = []
        self._forget_steps: list[Callable[[str], None]] = []
        #: The latest activity on any kernel (shutdowns included).
        self.last_kernel_activity: datetime = clock()

    def now(self) -> datetime:
        """What "now" is for every timestamp a decision compares (the map's clock)."""
        return self._clock()

    def new_record(
        self, kernel_id: str, name: str, display_name: str = "", cwd: str | None = None
    ) -> KernelRecord:
        """A record of a kernel about to join the map, first seen (and active) now."""
        now = self._clock()
        return KernelRecord(
            id=kernel_id,
            name=name,
            display_name=display_name,
            cwd=cwd,
            last_activity=now,
            started=now,
        )

    # -- entries ----------------------------------------------------------------------------

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self.entries

    def __iter__(self) -> Iterator[Entry]:
        """The entries (a copy: the map may change while it is read)."""
        return iter(list(self.entries.values()))

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, kernel_id: str) -> Entry:
        """The entry of ``kernel_id`` (``KernelNotFound`` if there is none)."""
        try:
            return self.entries[kernel_id]
        except (KeyError, TypeError):
            raise KernelNotFound(str(kernel_id)) from None

    def find(self, kernel_id: str) -> Entry | None:
        """The entry of ``kernel_id``, or None."""
        return self.entries.get(kernel_id)

    @property
    def members(self) -> int:
        """A number that changes whenever an entry comes, goes or is replaced: while it is
        the same, every entry found earlier is still the map's (``servers.join``)."""
        return self._members

    def add(self, entry: Entry) -> None:
        """Put a new kernel in the map and tell subscribers (``KernelAdded``)."""
        kid = entry.record.id
        self.entries[kid] = entry
        self._members += 1
        self.emit(KernelAdded(kid, as_dict(entry.record.to_model())))

    def replace(self, entry: Entry) -> None:
        """The same kernel id, now another kind of kernel: its row stays, every field is new."""
        kid = entry.record.id
        old = self.entries.get(kid)
        if old is not None:
            old.backend.close()
        self.entries[kid] = entry
        self._members += 1
        model = as_dict(entry.record.to_model())
        self.emit(KernelChanged(kid, frozenset(model), model))

    def discard(self, entry: Entry) -> bool:
        """Take ``entry`` out of the map if it is still there; True if it was."""
        kid = entry.record.id
        if self.entries.get(kid) is not entry:
            return False
        del self.entries[kid]
        self._members += 1
        return True

    def remove(self, entry: Entry, reason: str) -> None:
        """Take ``entry`` out (if still there), drop what the parts keep about it and tell
        subscribers (``KernelRemoved``)."""
        if self.discard(entry):
            self.let_go(entry.record.id)
            self.emit(KernelRemoved(entry.record.id, reason=reason))

    def let_go(self, kernel_id: str) -> None:
        """Drop what the parts keep about a kernel that left the map (their forget steps)."""
        self._pending.pop(kernel_id, None)
        for step in self._forget_steps:
            step(kernel_id)

    def on_forget(self, step: Callable[[str], None]) -> None:
        """Call ``step(kernel_id)`` whenever a kernel leaves the map."""
        self._forget_steps.append(step)

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``KernelEvent``; returns an unsubscribe."""
        return self._hub.subscribe(callback)

    def emit(self, event: KernelEvent) -> None:
        self._hub.emit(event)

    # -- changes ----------------------------------------------------------------------------

    def on_change(self, step: ChangeStep) -> None:
        """Call ``step(record, fields)`` on every change of a kernel in the map, before the
        change is sent to subscribers."""
        self._steps.append(step)

    def active(self, now: datetime) -> None:
        """Something happened on a kernel at ``now`` (``last_kernel_activity``)."""
        if now > self.last_kernel_activity:
            self.last_kernel_activity = now

    def changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None:
        """Fields of ``record`` changed (``now``: activity seen then): run the change steps,
        then send ``KernelChanged`` at once for urgent fields, else coalesced."""
        if now is not None:
            self.active(now)
        if record.id not in self.entries:
            return
        changed = frozenset(fields)
        for step in self._steps:
            step(record, changed)
        self._pending.setdefault(record.id, set()).update(fields)
        if not URGENT_FIELDS.isdisjoint(fields):
            self._flush_one(record.id)
        elif self._flush_handle is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(self.change_interval, self._flush)

    def _flush_one(self, kernel_id: str) -> None:
        fields = self._pending.pop(kernel_id, None)
        entry = self.entries.get(kernel_id)
        if fields and entry is not None:
            model = as_dict(entry.record.to_model())
            self.emit(KernelChanged(kernel_id, frozenset(fields), model))

    def _flush(self) -> None:
        self._flush_handle = None
        for kernel_id in list(self._pending):
            self._flush_one(kernel_id)

    def clear(self) -> None:
        """Let every entry go (the map closing without shutting its kernels down)."""
        self.entries.clear()
        self._members += 1

    def close(self) -> None:
        """Stop the pending coalesced changes' timer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
