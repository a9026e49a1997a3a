"""Blocking work in worker threads, handed back to the loop without Qt signals from threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
import qasync
from PySide6.QtWidgets import QApplication  # PySide6 before qasync

from kernelmon.core.threads import run_in_thread


def where(tag: str, *, twice: bool = False) -> tuple[str, str]:
    return tag * (2 if twice else 1), threading.current_thread().name


def fail() -> None:
    raise ValueError("no such file")


async def scenario() -> None:
    main = threading.current_thread().name
    # results, keyword arguments and exceptions come back as from the function itself
    value, thread = await run_in_thread(where, "x", twice=True)
    assert value == "xx"
    assert thread != main
    with pytest.raises(ValueError, match="no such file"):
        await run_in_thread(fail)
    # many at once, more than the pool has threads
    results = await asyncio.gather(*(run_in_thread(where, str(i)) for i in range(50)))
    assert [r[0] for r in results] == [str(i) for i in range(50)]
    # a waiter cancelled while its call runs is simply dropped
    gate = threading.Event()
    task = asyncio.ensure_future(run_in_thread(gate.wait, 5))
    await asyncio.sleep(0.05)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    # a coroutine on the servers' poll thread (a loop of its own) comes back the same way,
    # and cancelling the caller cancels it there
    from kernelmon.core.servers.poll_thread import poll_thread

    async def on_poll_thread() -> str:
        return threading.current_thread().name

    assert await poll_thread().run(on_poll_thread()) == "kernelmon server polls"
    stopped = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise

    task = asyncio.ensure_future(poll_thread().run(forever()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()  # it ended there before the caller's cancellation went on

    async def made_all_the_same() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "a connection"
        return "never"

    discarded: list[str] = []
    task = asyncio.ensure_future(poll_thread().run(made_all_the_same(), discard=discarded.append))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert discarded == ["a connection"]  # what it returned, handed over to be let go


def test_under_plain_asyncio() -> None:
    asyncio.run(scenario())


def test_under_qasync_no_result_travels_through_call_soon_threadsafe(
    qapp: QApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.to_thread hands its result back with call_soon_threadsafe, which qasync does
    by emitting a Qt signal from the worker thread (PySide6 has crashed delivering those);
    run_in_thread and the servers' poll thread must not use it at all."""
    loop = qasync.QEventLoop(qapp)
    crossings: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        crossings.append(threading.current_thread().name)
        raise AssertionError("call_soon_threadsafe used")

    monkeypatch.setattr(loop, "call_soon_threadsafe", refuse)
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        monkeypatch.undo()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert crossings == []
