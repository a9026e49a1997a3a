"""A step run now and then every few seconds in a task, for the core's background work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .threads import running_in

logger = logging.getLogger(__name__)


class Periodic:
    """Runs ``step()`` at once, then every ``interval()`` seconds; a failing step is logged
    (as ``what``) and the next one runs as planned.

    Its task only ever runs a step inside its loop's run. A loop may also run callbacks
    outside its run: qasync's ``run_until_complete`` processes the Qt events once more after
    the run has ended, timers included, where every ``asyncio.get_running_loop()`` (in
    ``asyncio.sleep``, ``run_in_thread``, ...) raises "no running event loop". Woken then, the
    task waits for the loop's next turn instead of failing the step, or dying and making
    ``stop()`` (and so the map's ``close()``) raise.
    """

    def __init__(
        self, step: Callable[[], Awaitable[object]], interval: Callable[[], float], what: str
    ) -> None:
        self._step = step
        self._interval = interval
        self._what = what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start (inside a running loop); does nothing while already running."""
        if not self.running:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(loop))

    async def stop(self) -> None:
        """Stop the task; never raises what it failed with (logged), so closing goes on."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("%s stopped on an error", self._what)

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await inside_run(loop)
            try:
                await self._step()
            except Exception:
                logger.exception("%s failed", self._what)
            await _wait(loop, self._interval())


async def inside_run(loop: asyncio.AbstractEventLoop) -> None:
    """Return once the task runs inside ``loop``'s run (at once if it does; see
    ``Periodic``): for a task woken by a timer, which qasync may fire after the run."""
    while not running_in(loop):
        await _wait(loop, 0)


async def _wait(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """``asyncio.sleep(seconds)`` on ``loop``, which needs no running loop to start waiting."""
    woken = loop.create_future()
    timer = loop.call_later(seconds, settle, woken)
    try:
        await woken
    finally:
        timer.cancel()


def settle(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` with None unless it is done (a callback's wake-up of a waiter)."""
    if not future.done():
        future.set_result(None)
