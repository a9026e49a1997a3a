"""Core events in, Qt signals out, with floods of changes coalesced.

``KernelBridge`` subscribes to a ``KernelMap``. Additions, removals and the rare events
(started, restarted, died, culled, ...) become signals at once. ``KernelChanged`` events are
throttled: the first change after a quiet spell goes out at once, later ones are merged and
sent at most every ``interval_ms`` milliseconds, so a kernel flooding output costs a few
table refreshes per second, never one per message. A change of execution state (idle ->
busy -> idle) is a fact people must see, so it goes out at once too, up to
``max_state_changes`` per kernel per second (beyond that, kernels toggling faster than anyone
can read are coalesced like the rest).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ..core import KernelMap
from ..core.events import (
    ActionFailed,
    JobFinished,
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
    MemoryWarning,
    StateProblem,
    UsageSampled,
)

logger = logging.getLogger(__name__)


class KernelBridge(QObject):
    """Qt signals for a ``KernelMap``'s events. Call ``close()`` to unsubscribe."""

    #: ``(kernel_id, model)``: a kernel appeared (state "starting" while it starts).
    kernel_added = Signal(str, dict)
    #: ``(kernel_id, model, fields)``: facts changed; ``fields`` is a set of names.
    kernel_changed = Signal(str, dict, object)
    #: ``(kernel_id, reason)``: a kernel left the map.
    kernel_removed = Signal(str, str)
    #: ``(kernel_id,)``: a new kernel answered.
    kernel_started = Signal(str)
    #: ``(kernel_id, answered)``: a kernel left by an earlier run was taken over.
    kernel_adopted = Signal(str, bool)
    #: ``(kernel_id, auto)``: a kernel was restarted (``auto`` by the auto-restarter).
    kernel_restarted = Signal(str, bool)
    #: ``(kernel_id,)``: an interrupt was sent.
    kernel_interrupted = Signal(str)
    #: ``(kernel_id, reason, will_restart)``: a kernel's process died.
    kernel_died = Signal(str, str, bool)
    #: ``(kernel_id, reason)``: the culler shut a kernel down.
    kernel_culled = Signal(str, str)
    #: ``(kernel_id,)``: a kernel was shut down on request.
    kernel_shut_down = Signal(str)
    #: ``(kernel_id, action, message)``: an action on a kernel failed.
    action_failed = Signal(str, str, str)
    #: ``(total_cpu, total_rss)``: resources were sampled (once a tick); ``total_cpu`` is a
    #: float or None, ``total_rss`` bytes (an int, possibly beyond 32 bits).
    usage_sampled = Signal(object, object)
    #: ``(kernel_id, rss, limit, total)``: memory went above a limit (``kernel_id`` "" and
    #: ``total`` True for all kernels together); sent once per crossing.
    memory_warning = Signal(str, object, object, bool)
    #: ``(kernel_id, seconds)``: a kernel finished a long job (busy that long, now idle).
    job_finished = Signal(str, float)
    #: ``(text,)``: kernelmon's record of its kernels has a problem ("" once it is over).
    state_problem = Signal(str)

    def __init__(
        self,
        kernel_map: KernelMap,
        interval_ms: int = 250,
        parent: QObject | None = None,
        *,
        max_state_changes: int = 10,
    ) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.max_state_changes = max_state_changes
        self._states: dict[str, str] = {}
        self._state_times: dict[str, deque[float]] = {}
        self._pending: dict[str, tuple[dict[str, Any], set[str]]] = {}
        self._last_flush = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)
        self._unsubscribe = kernel_map.subscribe(self.on_kernel_map_event)

    def close(self) -> None:
        self._unsubscribe()
        self._timer.stop()
        self._pending.clear()

    def on_kernel_map_event(self, event: KernelEvent) -> None:
        kid = event.kernel_id
        match event:
            case KernelChanged():
                self._queue_change(kid, event.model, event.fields)
            case KernelAdded():
                self._states[kid] = str(event.model.get("execution_state"))
                self.kernel_added.emit(kid, dict(event.model))
            case KernelRemoved():
                self._pending.pop(kid, None)
                self._states.pop(kid, None)
                self._state_times.pop(kid, None)
                self.kernel_removed.emit(kid, event.reason)
            case KernelStarted():
                self.flush_kernel(kid)
                self.kernel_started.emit(kid)
            case KernelAdopted():
                self.flush_kernel(kid)
                self.kernel_adopted.emit(kid, event.answered)
            case KernelRestarted():
                self.flush_kernel(kid)
                self.kernel_restarted.emit(kid, event.auto)
            case KernelInterrupted():
                self.kernel_interrupted.emit(kid)
            case KernelDied():
                self.flush_kernel(kid)
                self.kernel_died.emit(kid, event.reason, event.will_restart)
            case KernelCulled():
                self.kernel_culled.emit(kid, event.reason)
            case KernelShutDown():
                self.kernel_shut_down.emit(kid)
            case ActionFailed():
                self.flush_kernel(kid)
                self.action_failed.emit(kid, event.action, event.message)
            case UsageSampled():
                # The figures of the tick first, so the totals and the rows agree.
                self.flush()
                self.usage_sampled.emit(event.total_cpu, event.total_rss)
            case MemoryWarning():
                self.memory_warning.emit(kid, event.rss, event.limit, event.total)
            case JobFinished():
                self.flush_kernel(kid)
                self.job_finished.emit(kid, float(event.seconds))
            case StateProblem():
                self.state_problem.emit(event.text)
            case _:
                logger.debug("Ignoring event %r", event)

    def _queue_change(self, kid: str, model: dict[str, Any], fields: frozenset[str]) -> None:
        previous = self._pending.get(kid)
        merged = set(fields) if previous is None else previous[1] | fields
        self._pending[kid] = (model, merged)
        state = str(model.get("execution_state"))
        if state != self._states.get(kid) and self._state_budget(kid):
            self.flush_kernel(kid)
            return
        if self._timer.isActive():
            return
        wait_ms = self.interval_ms - (time.monotonic() - self._last_flush) * 1000
        if wait_ms <= 0:
            self.flush()
        else:
            self._timer.start(int(wait_ms) + 1)

    def _state_budget(self, kid: str) -> bool:
        """Whether another immediate state change fits in this kernel's budget."""
        now = time.monotonic()
        times = self._state_times.setdefault(kid, deque())
        while times and now - times[0] > 1.0:
            times.popleft()
        if len(times) >= self.max_state_changes:
            return False
        times.append(now)
        return True

    def _emit_change(self, kid: str, model: dict[str, Any], fields: set[str]) -> None:
        self._last_flush = time.monotonic()
        self._states[kid] = str(model.get("execution_state"))
        self.kernel_changed.emit(kid, dict(model), frozenset(fields))

    def flush_kernel(self, kid: str) -> None:
        """Send a kernel's pending change now (before an event that depends on it)."""
        pending = self._pending.pop(kid, None)
        if pending is not None:
            self._emit_change(kid, *pending)

    def flush(self) -> None:
        """Send every pending change now."""
        self._timer.stop()
        self._last_flush = time.monotonic()
        pending, self._pending = self._pending, {}
        for kid, (model, fields) in pending.items():
            self._emit_change(kid, model, fields)
