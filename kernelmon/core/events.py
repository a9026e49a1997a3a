"""Typed events the core sends to its subscribers (the UI, tests, the log).

Subscribers are plain callables ``callback(event)``, called synchronously on the event
loop's thread as things happen; they must be quick and must not raise (an exception in one
is logged and does not reach the others or the core).

Activity-only changes (``last_activity``, message counts, buffer size) are coalesced to at
most one ``KernelChanged`` per kernel every ``Registry.change_interval`` seconds; state and
connection changes are sent at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KernelEvent:
    kernel_id: str


@dataclass(frozen=True, slots=True)
class KernelAdded(KernelEvent):
    """A kernel appeared in the map: one kernelmon starts (state "starting" while it
    starts) or one found in a runtime folder (``model["origin"]`` is not "owned")."""

    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KernelChanged(KernelEvent):
    """Some of a kernel's facts changed; ``fields`` names them, ``model`` is the new model."""

    fields: frozenset[str] = frozenset()
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KernelRemoved(KernelEvent):
    """A kernel left the map (shut down, culled, a start that failed, or a discovered
    kernel whose connection file is gone)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class KernelStarted(KernelEvent):
    """A new kernel answered its first kernel_info_request."""


@dataclass(frozen=True, slots=True)
class KernelAdopted(KernelEvent):
    """A kernel of an earlier kernelmon run was taken over; ``answered`` if it responded."""

    answered: bool = True


@dataclass(frozen=True, slots=True)
class KernelRestarted(KernelEvent):
    """A kernel was restarted and answered; ``auto`` when the auto-restarter did it."""

    auto: bool = False


@dataclass(frozen=True, slots=True)
class KernelInterrupted(KernelEvent):
    """An interrupt was sent to a kernel."""


@dataclass(frozen=True, slots=True)
class KernelDied(KernelEvent):
    """A kernel's process died; ``will_restart`` when the auto-restarter will try again."""

    reason: str = ""
    will_restart: bool = False


@dataclass(frozen=True, slots=True)
class KernelCulled(KernelEvent):
    """The culler shut a kernel down; ``reason`` says why."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class KernelShutDown(KernelEvent):
    """A kernel was shut down on request."""


@dataclass(frozen=True, slots=True)
class ActionFailed(KernelEvent):
    """An action on a kernel failed; ``action`` names it, ``message`` says why in words."""

    action: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class UsageSampled(KernelEvent):
    """Resource use was sampled (``kernel_id`` is ""); totals over every kernel shown.

    Each kernel's figures are in its record (``cpu_percent``, ``rss`` ...), sent as a
    coalesced ``KernelChanged``; its history is ``KernelMap.history(kernel_id)``.
    """

    total_cpu: float | None = None
    total_rss: int = 0


@dataclass(frozen=True, slots=True)
class MemoryWarning(KernelEvent):
    """A kernel's memory (or with ``total``, all kernels' memory; ``kernel_id`` "") went
    above the limit set in the settings. Sent once per crossing."""

    rss: int = 0
    limit: int = 0
    total: bool = False


@dataclass(frozen=True, slots=True)
class JobFinished(KernelEvent):
    """A kernel that was busy for at least ``Settings.notify_job_seconds`` became idle."""

    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class OutputLost(KernelEvent):
    """Messages the kernel published on IOPub never reached kernelmon, so the frontend of
    session ``session`` did not get them either (see ``iopub``: a gap in the kernel's
    message counter that no reply explains). ``text`` says it in words."""

    messages: int = 0
    session: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class StateProblem(KernelEvent):
    """kernelmon's record of its kernels (the state folder) has a problem, in words, or
    (``text`` "") no longer has one; ``kernel_id`` is "". While there is a problem that
    stops kernels being recorded, ``KernelMap.start_kernel`` starts none (see
    ``KernelMap.problems``)."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class ServerChanged(KernelEvent):
    """A Jupyter Server or Enterprise Gateway was added, or its facts changed (``kernel_id``
    is ""); ``server`` is its ``KernelMap.list_servers`` entry. ``text`` says in words what
    became of it when its status changed (else "")."""

    server_id: str = ""
    server: dict[str, Any] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True, slots=True)
class ServerRemoved(KernelEvent):
    """A server left kernelmon's list (``kernel_id`` is ""): removed by the user, or a local
    server that stopped; its kernels left the map before this event."""

    server_id: str = ""
    reason: str = ""


Subscriber = Callable[[KernelEvent], None]


class EventHub:
    """Fan-out of events to subscribers; a failing subscriber never stops the others."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, event: KernelEvent) -> None:
        for callback in tuple(self._subscribers):
            try:
                callback(event)
            except Exception:
                logger.exception("Event subscriber %r failed on %r", callback, event)
