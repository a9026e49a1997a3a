"""The thread where the servers' poll connections live: one for every server.

The two polling GETs of each server (poll_connection.py) are written, their answers read and
then read into kernel models on an asyncio loop of their own, in one thread, instead of on the
map's loop: the map's loop hands a turn's requests over (``PollThread.run``), is woken once,
when every exchange of the turn has ended, and applies what changed. Why a thread: on the map's
loop under qasync (the app's loop) every socket read is a Qt socket-notifier event and a timer
event, and the exchanges alone, nothing parsed, cost 3.4-4.7 ms of the loop per poll cycle of 10
servers (benchmarks/servers_bench.py, ``wire``), most of issue #13's goal of 5 ms for the whole
cycle; on a plain asyncio loop they cost about half as much, and none of it on the window's
thread. The thread runs Python, so it takes the GIL in turns with the window's thread (a switch
every 5 ms at most): the window waits for it in slices, never for a whole cycle.

Everything a ``PollConnection`` does happens on this thread's loop (opening, exchanges,
timeouts, closing); the map's loop only reads an exchange's answers (and the models read of
them, ``ServerClient._read``) once ``run`` returned. The map's loop is woken through the pipe it
watches (``threads.result_of``), as for the worker threads, never by a Qt signal from this
thread (docs/core.md says why). The thread is a daemon started when the first connection opens,
and lives as long as the process: its loop holds nothing but the connections, which their
clients close.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..threads import result_of

T = TypeVar("T")


class PollThread:
    """A thread running an asyncio loop forever (see the module)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="kernelmon server polls", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` on the thread's loop, soon."""
        self.loop.call_soon_threadsafe(callback, *args)

    async def run(
        self, coro: Coroutine[Any, Any, T], *, discard: Callable[[T], None] | None = None
    ) -> T:
        """Run ``coro`` on the thread's loop and return what it returned; the caller's loop
        is woken once, when it ended, through its pipe (``threads.result_of``: never a Qt
        signal from this thread under qasync). Cancelling the caller cancels it, and returns
        only once it ended on the thread (what it touched is let go by then); what it returned
        all the same is handed to ``discard``."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self.loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda done: _ended(done, result, ended))

        self.loop.call_soon_threadsafe(start)
        try:
            return await result_of(result, cancel=False)
        except asyncio.CancelledError:
            self.loop.call_soon_threadsafe(lambda: tasks[0].cancel())  # (after ``start``)
            await asyncio.shield(result_of(ended, cancel=False))
            if discard is not None and result.done() and result.exception() is None:
                discard(result.result())
            raise

    def cpu_time(self) -> float:
        """Seconds of CPU the thread has used (benchmarks)."""
        ident = self.thread.ident
        assert ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(ident))


_thread: PollThread | None = None
_starting = threading.Lock()


def _ended(
    task: asyncio.Task[T],
    result: concurrent.futures.Future[T],
    ended: concurrent.futures.Future[None],
) -> None:
    """On the thread: ``task`` ended; its outcome to ``result`` (left pending when it was
    cancelled: nobody waits for it then), and ``ended`` set."""
    if not task.cancelled():
        error = task.exception()
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(task.result())
    ended.set_result(None)


def poll_thread() -> PollThread:
    """The process's poll thread, started on first use."""
    global _thread
    with _starting:
        if _thread is None or not _thread.thread.is_alive():
            _thread = PollThread()
        return _thread


def started() -> PollThread | None:
    """The poll thread if it was started (benchmarks)."""
    return _thread
