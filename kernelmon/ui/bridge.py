"""Core events in, Qt signals out, with floods of changes coalesced: the UI's one boundary.

``KernelBridge`` subscribes to a ``KernelMap`` and owns the ``KernelStore`` (the latest model
of each kernel) that every widget reads; widgets never hold the map. Reads the store cannot
answer (kernel specs, cull ETAs, histories, the culler's clock) go through the bridge's
query methods; actions go through ``KernelCommands``.

This is the UI's one throttle. Additions, removals and the rare events
(started, restarted, died, culled, ...) become signals at once. ``KernelChanged`` events are
throttled: the first change after a quiet spell goes out at once, later ones are merged and
sent at most every ``interval_ms`` milliseconds, so a kernel flooding output costs a few
table refreshes per second, never one per message. A change of execution state (idle ->
busy -> idle) is a fact people must see, so it goes out at once too, up to
``max_state_changes`` per kernel per second (beyond that, kernels toggling faster than anyone
can read are coalesced like the rest).

The merged changes are sent in slices of at most ``SLICE`` seconds per loop turn, so that
hundreds of kernels changing at once never hold the window for longer than that (a row
update costs ~0.3 ms with the table's sorting). ``usage_sampled`` waits for the slices, so
the totals and the rows still agree.

Each burst (the events of one loop turn, or one slice) ends with one
``store.kernels_changed(ids)`` naming the kernels added, removed, or whose facts changed:
what reads every kernel (the actions, the status bar, the tray) refreshes once per burst.
Changes of figures alone (``FIGURE_FIELDS``) change no action and no count: they are not
named there (the table and the details pane repaint them on ``kernel_changed``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ..core import KernelMap, Settings
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
    OutputLost,
    StateProblem,
    UsageSampled,
)
from .store import KernelStore

logger = logging.getLogger(__name__)

#: Wall time [s] one slice of merged changes may take before the loop gets a turn.
SLICE = 0.004
#: Fields that are figures of activity and resources: their changes alter no action and no
#: count of kernels by state (the table shows them; the status bar's clock the latest one).
FIGURE_FIELDS = frozenset(
    {
        "messages",
        "bad_messages",
        "last_activity",
        "message_rate",
        "cpu_percent",
        "rss",
        "pss",
        "uss",
        "processes",
        "buffered",
        "buffer_dropped",
    }
)


class KernelBridge(QObject):
    """Qt signals for a ``KernelMap``'s events. Call ``close()`` to unsubscribe."""

    #: ``(kernel_id, model)``: a kernel appeared (state "starting" while it starts).
    kernel_added = Signal(str, dict)
    #: ``(kernel_id, model, fields)``: facts changed; ``fields`` is a set of names. The
    #: model is a dict (typed ``object``: a ``dict`` signal converts it to a QVariantMap and
    #: back for every slot, ~6x the cost of the emission); the slots share it: read only.
    kernel_changed = Signal(str, object, object)
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
    #: ``(kernel_id, messages, text)``: output the kernel published never reached kernelmon.
    output_lost = Signal(str, int, str)
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
        self._timer.timeout.connect(self._flush_slice)
        #: Slices of merged changes sent so far (each one a loop turn of their own).
        self.slices = 0
        #: A ``usage_sampled`` waiting for the pending changes to go out first.
        self._usage: tuple[Any, Any] | None = None
        self._map = kernel_map
        #: The latest model of every kernel: what the widgets read.
        self.store = KernelStore(self)
        for model in self._list_kernels():
            self.store.put(str(model["id"]), dict(model))
            self._states[str(model["id"])] = str(model.get("execution_state"))
        #: Kernels named by the burst under way (sent as ``store.kernels_changed`` once the
        #: loop turns).
        self._burst: set[str] = set()
        self._burst_timer = QTimer(self)
        self._burst_timer.setSingleShot(True)
        self._burst_timer.setInterval(0)
        self._burst_timer.timeout.connect(self.end_burst)
        self._closed = False
        self._unsubscribe = kernel_map.subscribe(self.on_kernel_map_event)

    def _list_kernels(self) -> list[dict[str, Any]]:
        list_kernels = getattr(self._map, "list_kernels", None)
        return list(list_kernels()) if list_kernels is not None else []

    def close(self) -> None:
        """Unsubscribe and stop the timers (a bridge dropped with a timer running, then
        collected by the garbage collector in another thread, would leave Qt a dangling
        timer: close every bridge). Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._timer.stop()
        self._burst_timer.stop()
        self._pending.clear()
        self._usage = None

    # -- bursts -----------------------------------------------------------------------------

    def _named(self, kid: str) -> None:
        """``kid`` changed in a way what reads every kernel must see (once per burst)."""
        self._burst.add(kid)
        if not self._closed and not self._burst_timer.isActive():
            self._burst_timer.start()

    def end_burst(self) -> None:
        """Send the burst under way now: one ``store.kernels_changed(ids)``."""
        self._burst_timer.stop()
        ids, self._burst = frozenset(self._burst), set()
        if ids:
            self.store.kernels_changed.emit(ids)

    def on_kernel_map_event(self, event: KernelEvent) -> None:
        kid = event.kernel_id
        match event:
            case KernelChanged():
                self._queue_change(kid, event.model, event.fields)
            case KernelAdded():
                self._states[kid] = str(event.model.get("execution_state"))
                model = dict(event.model)
                self.store.put(kid, model)
                self._named(kid)
                self.kernel_added.emit(kid, model)
            case KernelRemoved():
                self._pending.pop(kid, None)
                self._states.pop(kid, None)
                self._state_times.pop(kid, None)
                if self.store.pop(kid) is not None:
                    self._named(kid)
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
                self._usage = (event.total_cpu, event.total_rss)
                self._flush_slice()
            case MemoryWarning():
                self.memory_warning.emit(kid, event.rss, event.limit, event.total)
            case JobFinished():
                self.flush_kernel(kid)
                self.job_finished.emit(kid, float(event.seconds))
            case OutputLost():
                self.output_lost.emit(kid, event.messages, event.text)
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
            self._flush_slice()
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
        if kid not in self.store:
            return  # a late change for a kernel already removed
        copy = dict(model)
        self.store.put(kid, copy)
        if not fields <= FIGURE_FIELDS:
            self._named(kid)
        self.kernel_changed.emit(kid, copy, frozenset(fields))

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
        self._send_usage()
        self.end_burst()

    def _flush_slice(self) -> None:
        """Send pending changes, oldest first, for at most ``SLICE`` seconds; the rest on the
        next loop turn."""
        self._timer.stop()
        self._last_flush = time.monotonic()
        deadline = time.perf_counter() + SLICE
        pending = self._pending
        if pending:
            self.slices += 1
        while pending:
            kid = next(iter(pending))
            model, fields = pending.pop(kid)
            self._emit_change(kid, model, fields)
            if time.perf_counter() >= deadline:
                break
        if pending:
            self._timer.start(0)
        else:
            self._send_usage()

    def _send_usage(self) -> None:
        usage, self._usage = self._usage, None
        if usage is not None:
            self.store.set_usage(*usage)
            self.usage_sampled.emit(*usage)

    def set_usage(self, total_cpu: float | None, total_rss: int) -> None:
        """Totals known outside a sample tick (when monitoring starts)."""
        self.store.set_usage(total_cpu, total_rss)

    # -- what the store cannot answer (reads of the map; actions go through commands) -------

    @property
    def settings(self) -> Settings:
        """The settings the map runs (the effective ones)."""
        return self._map.settings

    @property
    def culling(self) -> bool:
        """Whether the culler's task runs."""
        return bool(self._map.culling)

    @property
    def next_cull(self) -> datetime | None:
        return self._map.next_cull

    @property
    def default_kernel_name(self) -> str:
        return self._map.default_kernel_name

    def kernel_specs(self) -> dict[str, Any]:
        return self._map.kernel_specs()

    def cwd_for_path(self, path: str | None) -> str:
        """The folder a kernel started for ``path`` works in (raises for a path outside the
        root folder)."""
        return self._map.cwd_for_path(path)

    def cull_eta(self, kernel_id: str) -> float | None:
        """Seconds until the culler shuts the kernel down (None: never, as it is now)."""
        if kernel_id not in self._map:
            return None
        return self._map.cull_eta(kernel_id)

    def history(self, kernel_id: str) -> Any:
        """The core's ``KernelHistory`` of a kernel (None without one)."""
        history = getattr(self._map, "history", None)
        if history is None or kernel_id not in self._map:
            return None
        try:
            return history(kernel_id)
        except Exception:  # a kernel that just left, or a core without histories
            logger.debug("No history for %s", kernel_id, exc_info=True)
            return None
