"""When each server is polled: one clock for every server, jittered intervals, backoff.

``PollClock`` is the one task that polls the servers kernelmon watches. Servers that answer
are polled together, once per *cycle*: every ``interval()`` seconds give or take a fifth
(``jittered``: the cycles of two kernelmons, or of kernelmon and a server's own timers, do not
fall into step), all of them in one *turn* (``poll``, ``Servers.poll_together``: their
requests written at once and the loop woken once when all are answered). Under qasync (the
app's loop) each task, wake-up and timer is a Qt event, and one turn for ten servers costs
about half of what ten turns of one server cost (benchmarks/servers_bench.py), so servers are
not each given a poller task of their own.

A server is polled at once when it is added, or when ``soon`` asks for it (after an action
on one of its kernels; a server being polled is polled again once that poll ends), with the
others due at that moment. It is polled in a turn of its own, so that it never holds the
others' rows back:

* when its poll cannot begin with its exchange at once (``ready``: its poll connection to
  open, a request of its client under way, its kind not known yet);
* after failures in a row, after a doubling ``backoff`` from the end of its last poll (up to
  5 minutes), until it answers again;
* while its last turn took longer than ``SLOW`` seconds (a turn waits for its slowest
  server, so a turn of several that was slow is split up at the next cycle: the quick ones
  join the shared turn again at the cycle after).

One request at a time per server: a server whose turn is not over is left out of a cycle
(it is polled at the next one). ``poll_now`` polls every server now (the command line, "poll
now") and waits for the turns under way of those being polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..periodic import inside_run, settle

if TYPE_CHECKING:
    from .watch import ServerWatch

logger = logging.getLogger(__name__)

#: A turn that took longer than this (seconds, from its first request to its last answer)
#: is split into turns of one server at the next cycle.
SLOW = 1.0
#: A moment due this soon counts as come (qasync's timers fire up to a millisecond early).
EARLY = 0.002


def jittered(interval: float, spread: float = 0.2, rng: random.Random | None = None) -> float:
    """``interval`` give or take ``spread`` of it, so that many servers polled at the same
    interval do not fall into step."""
    return float(interval * (1 + (rng or random).uniform(-spread, spread)))


def backoff(interval: float, failures: int, cap: float = 300.0) -> float:
    """The delay before the next try after ``failures`` failures in a row (doubling)."""
    doublings: int = min(max(failures, 0), 16)
    return min(cap, interval * float(2**doublings))


@dataclass(eq=False)
class _Turns:
    """The clock's state of one server."""

    #: loop time of a poll of its own (at once, after failures); None: it follows the cycle
    due: float | None = 0.0
    #: its turn under way
    task: asyncio.Task[None] | None = None
    #: whether its last turn took longer than ``SLOW``
    slow: bool = False
    #: poll it again once the turn under way ends (``soon`` during a poll)
    again: bool = False


class PollClock:
    """The one task that polls every server (see the module). ``poll(watches)`` polls
    those servers in one turn and never raises (``ServerWatch.poll_once`` notes failures in
    ``failures``); ``interval()`` is read at each cycle."""

    def __init__(
        self,
        interval: Callable[[], float],
        poll: Callable[[list[ServerWatch]], Awaitable[None]],
        ready: Callable[[ServerWatch], bool] = lambda watch: True,
    ) -> None:
        self._interval = interval
        self._poll = poll
        self._ready = ready
        self._turns: dict[ServerWatch, _Turns] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cycle_at = 0.0
        self._wake: asyncio.Future[None] | None = None
        #: every turn under way (those of servers removed meanwhile too)
        self._running: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def add(self, watch: ServerWatch) -> None:
        """Poll ``watch`` at once, then with the others (starts the clock, inside the loop)."""
        self._turns.setdefault(watch, _Turns())
        if self._task is None or self._task.done():
            self._loop = loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
        self._wake_up()

    def remove(self, watch: ServerWatch) -> None:
        """Poll ``watch`` no more (a turn under way with others ends as it would: the
        server's client, closed by its owner, ends its exchange)."""
        self._turns.pop(watch, None)
        watch.next_poll = None

    def soon(self, watch: ServerWatch) -> None:
        """Poll ``watch`` now (after its poll under way, if there is one)."""
        turns = self._turns.get(watch)
        if turns is None:
            return
        if turns.task is not None:
            turns.again = True
        else:
            turns.due = 0.0
            self._wake_up()

    def interval_changed(self) -> None:
        """A new ``interval()``: the next cycle comes no later than one new interval from now
        (a shorter interval does not wait out the longer one)."""
        if self._task is None or self._task.done():
            return
        assert self._loop is not None
        soonest = self._loop.time() + jittered(self._interval())
        if soonest < self._cycle_at:
            self._cycle_at = soonest
            self._show_next(None, soonest)
            self._wake_up()

    async def poll_now(self, watches: Iterable[ServerWatch] | None = None) -> None:
        """Poll every server (or ``watches``) now, in one turn, and wait for it and for the
        turns under way of the others (their answers are as fresh)."""
        chosen = list(self._turns if watches is None else watches)
        busy = {t for w in chosen if (t := self._task_of(w)) is not None}
        free = [w for w in chosen if w in self._turns and self._task_of(w) is None]
        if free:
            busy.add(self._begin(free))
        off = [w for w in chosen if w not in self._turns]
        if off:  # not on the clock (stopped, or not yet on it): polled all the same
            await self._poll(off)
        if busy:
            await asyncio.wait(busy)

    async def close(self) -> None:
        """Stop the clock and every turn under way (cancelled, and waited for); servers
        ``add``-ed later start it again."""
        tasks = list(self._running)
        if self._task is not None:
            tasks.append(self._task)
        self._task = None
        self._turns.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- plumbing ---------------------------------------------------------------------------

    def _task_of(self, watch: ServerWatch) -> asyncio.Task[None] | None:
        turns = self._turns.get(watch)
        return turns.task if turns is not None else None

    async def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            await inside_run(loop)  # (qasync fires timers once more after its run)
            try:
                self._tick(loop.time())
                when = self._next_due()
            except Exception:  # a bug must not stop every server's polls
                logger.exception("The servers' poll clock failed")
                when = loop.time() + 1.0
            await self._sleep_until(when)

    def _tick(self, now: float) -> None:
        """Begin the turns due at ``now``."""
        alone: list[ServerWatch] = []
        together: list[ServerWatch] = []
        cycle = now + EARLY >= self._cycle_at
        if cycle:
            self._cycle_at = now + jittered(self._interval())
            self._show_next(None, self._cycle_at)
        for watch, turns in self._turns.items():
            if turns.task is not None:
                continue
            if turns.due is None and not cycle:
                continue
            if turns.due is not None and turns.due > now + EARLY:
                continue
            backing_off = turns.due is not None and turns.due != 0.0
            if backing_off or turns.slow or not self._ready(watch):
                alone.append(watch)
            else:
                together.append(watch)
        if together:
            self._begin(together)
        for watch in alone:
            self._begin([watch])

    def _next_due(self) -> float:
        dues = [t.due for t in self._turns.values() if t.task is None and t.due is not None]
        return min([self._cycle_at, *dues])

    async def _sleep_until(self, when: float) -> None:
        """Until loop time ``when``, or until ``_wake_up`` (one timer, not a task)."""
        loop = self._loop
        assert loop is not None
        self._wake = woken = loop.create_future()
        timer = loop.call_at(when, settle, woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._wake = None

    def _wake_up(self) -> None:
        if self._wake is not None:
            settle(self._wake)

    def _begin(self, watches: list[ServerWatch]) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(self._turn(watches, self._loop))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        for watch in watches:
            turns = self._turns[watch]
            turns.task, turns.due = task, None
        return task

    async def _turn(self, watches: list[ServerWatch], loop: asyncio.AbstractEventLoop) -> None:
        began = loop.time()
        try:
            await inside_run(loop)
            await self._poll(watches)
        except Exception:  # (never raised by the servers' polls: a bug, said, not kept)
            logger.exception("A poll of %d server(s) failed", len(watches))
        finally:
            self._turn_ended(watches, loop.time(), loop.time() - began > SLOW)

    def _turn_ended(self, watches: list[ServerWatch], ended: float, slow: bool) -> None:
        """A turn's servers are free again: when each is polled next."""
        for watch in watches:
            turns = self._turns.get(watch)
            if turns is None:
                continue  # removed meanwhile
            turns.task, turns.slow = None, slow
            try:
                if turns.again:
                    turns.again, turns.due = False, 0.0
                elif watch.failures:
                    interval = self._interval()
                    turns.due = ended + jittered(backoff(interval, watch.failures))
                self._show_next(watch, turns.due if turns.due is not None else self._cycle_at)
            except Exception:  # a bug must not stop this server's polls: at the next cycle
                logger.exception("The servers' poll clock failed")
        self._wake_up()

    def _show_next(self, watch: ServerWatch | None, when: float) -> None:
        """Set ``next_poll`` (wall clock) of ``watch``, or of every server on the cycle."""
        assert self._loop is not None
        at = datetime.fromtimestamp(time.time() + when - self._loop.time(), UTC)
        if watch is not None:
            watch.next_poll = at
            return
        for each, turns in self._turns.items():
            if turns.due is None and turns.task is None:
                each.next_poll = at
