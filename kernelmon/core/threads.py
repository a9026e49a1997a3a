"""Blocking work (process tables, files, socket checks) in worker threads, its results
handed back to the event loop through a pipe the loop watches.

``asyncio.to_thread`` hands a result back with ``loop.call_soon_threadsafe``. Under qasync
that emits a Qt signal from the worker thread, carrying Python objects, to be delivered on
the GUI thread; PySide6 has crashed in such cross-thread deliveries (a segmentation fault in
the GUI thread's event processing was seen in this project's test suite). ``run_in_thread``
avoids them: a worker appends its finished call to a queue and writes one byte to a pipe,
and the loop, which watches the pipe with ``add_reader`` (a socket notifier on the GUI
thread under qasync, as for the kernels' own sockets), settles the waiting futures. Under
any loop without ``add_reader`` it falls back to ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Worker threads shared by every loop in the process (proofs, scans, samples, file checks).
MAX_WORKERS = 4

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(MAX_WORKERS, "kernelmon-worker")
        return _pool


class _Waker:
    """One loop's pipe and queue of finished calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weak: the waker lives as long as its loop (a value of ``_wakers``), not longer
        self._loop = weakref.ref(loop)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.done: collections.deque[tuple[asyncio.Future[Any], concurrent.futures.Future[Any]]] = (
            collections.deque()
        )
        loop.add_reader(self.read_fd, self._settle)

    def finished(self, waiter: asyncio.Future[Any], work: concurrent.futures.Future[Any]) -> None:
        """In the worker thread: queue the result and wake the loop."""
        self.done.append((waiter, work))
        with contextlib.suppress(OSError):  # a full pipe already wakes the loop
            os.write(self.write_fd, b"\0")

    def _settle(self) -> None:
        loop = self._loop()
        if loop is not None and not running_in(loop):
            # qasync runs Qt events once more after ``run_until_complete`` has ended, with no
            # running loop: a task woken then would fail in its next ``get_running_loop()``
            # (``asyncio.sleep``, ``run_in_thread``, ...). Its result waits for the next turn.
            loop.call_soon(self._settle)
            return
        with contextlib.suppress(OSError):
            while os.read(self.read_fd, 4096):
                pass
        while self.done:
            waiter, work = self.done.popleft()
            if waiter.cancelled():
                continue
            error = work.exception()
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(work.result())

    def close(self) -> None:
        loop = self._loop()
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.read_fd)
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def running_in(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is running in this thread now."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waker] = weakref.WeakKeyDictionary()


def _waker(loop: asyncio.AbstractEventLoop) -> _Waker | None:
    waker = _wakers.get(loop)
    if waker is None:
        try:
            waker = _Waker(loop)
        except (NotImplementedError, RuntimeError):
            return None
        _wakers[loop] = waker
        weakref.finalize(loop, waker.close)
    return waker


async def run_in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread, awaited without blocking the loop
    (kernelmon's drop-in for ``asyncio.to_thread``; the module's docstring says why)."""
    if kwargs:
        func = functools.partial(func, **kwargs)
    if _waker(asyncio.get_running_loop()) is None:
        return await asyncio.to_thread(func, *args)
    return await result_of(_executor().submit(func, *args), cancel=False)


async def result_of(work: concurrent.futures.Future[T], *, cancel: bool = True) -> T:
    """The result of ``work``, a future another thread completes, awaited through the loop's
    pipe (not ``call_soon_threadsafe``: the module says why). ``cancel``: cancelling the
    caller cancels ``work`` too."""
    loop = asyncio.get_running_loop()
    waker = _waker(loop)
    if waker is None:
        return await asyncio.wrap_future(work)
    waiter: asyncio.Future[T] = loop.create_future()
    work.add_done_callback(lambda f: waker.finished(waiter, f))
    try:
        return await waiter
    except asyncio.CancelledError:
        if cancel:
            work.cancel()
        raise
