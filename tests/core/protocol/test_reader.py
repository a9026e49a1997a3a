"""The IOPub reading thread (``reader``): messages reach the loop in order, every one, also
past its byte cap (the thread pauses and resumes), while the loop is blocked; the thread ends
and closes the sockets when the last subscriber leaves."""

from __future__ import annotations

import asyncio
import threading
import time

import zmq

from kernelmon.core.protocol import reader, wire
from tests.core.protocol.test_wire_drain import flood, numbers
from tests.waiting import wait_until


def block_the_loop(seconds: float) -> None:
    """Hold the running event loop (on purpose: only the thread reads meanwhile)."""
    time.sleep(seconds)


def test_every_message_reaches_the_loop_in_order_from_each_socket(aio, pairs):
    """Three sockets flooded at once (multipart messages): each subscriber gets all of its
    own, in order, and the thread reads while the loop is blocked."""
    n = 3000

    async def go() -> list[list[list[list[bytes]]]]:
        got: list[list[list[list[bytes]]]] = [[], [], []]
        socks = [pairs() for _ in range(3)]
        inboxes = [
            reader.Inbox(pull, got[k].append, asyncio.get_running_loop())
            for k, (_push, pull) in enumerate(socks)
        ]
        for k, (push, _pull) in enumerate(socks):
            flood(push, k * n, n)
        block_the_loop(0.5)  # the loop is blocked: only the thread reads meanwhile
        await wait_until(lambda: all(len(numbers(g)) == n for g in got), timeout=30)
        for inbox in inboxes:
            inbox.close()
        return got

    got = aio.run(go())
    for k in range(3):
        assert numbers(got[k]) == list(range(k * n, (k + 1) * n))


def test_an_inbox_at_its_byte_cap_pauses_and_resumes_without_losing(aio, pairs, monkeypatch):
    """A cap of a few messages: the thread stops reading that socket (PUSH/PULL: the sender
    waits instead of dropping), resumes as the loop takes messages, and all arrive in order."""
    monkeypatch.setattr(reader, "INBOX_BYTES", 2000)
    n = 2000
    paused: list[bool] = []

    async def go() -> list[list[list[bytes]]]:
        got: list[list[list[bytes]]] = []
        push, pull = pairs()
        inbox = reader.Inbox(pull, got.append, asyncio.get_running_loop())
        sender = threading.Thread(target=flood, args=(push, 0, n))
        sender.start()
        block_the_loop(0.3)  # the loop is blocked: the inbox fills up to its cap
        paused.append(inbox.paused)
        await wait_until(lambda: len(numbers(got)) == n, timeout=30)
        sender.join()
        inbox.close()
        return got

    got = aio.run(go())
    assert paused == [True]
    assert numbers(got) == list(range(n))


def test_the_thread_ends_and_closes_the_sockets_when_the_last_inbox_closes(aio):
    ctx = zmq.Context.instance()

    async def go() -> tuple[list[zmq.Socket[bytes]], threading.Thread | None]:
        loop = asyncio.get_running_loop()
        socks = [wire.subscriber("tcp://127.0.0.1:9", ctx) for _ in range(2)]
        inboxes = [reader.Inbox(s, lambda _b: None, loop) for s in socks]
        thread = reader.reading_thread()
        assert thread is not None
        assert thread.is_alive()
        inboxes[0].close()
        await asyncio.sleep(0.05)
        assert thread.is_alive()  # one subscriber is left
        inboxes[1].close()
        inboxes[1].close()  # twice is harmless
        await wait_until(lambda: not thread.is_alive(), timeout=10, what="the thread to end")
        return socks, thread

    socks, _thread = aio.run(go())
    assert all(s.closed for s in socks)
    assert reader.reading_thread() is None
    assert not reader._wakes  # the loop's pipe is gone too


def test_a_new_subscriber_after_the_thread_ended_starts_a_new_one(aio, pairs):
    async def go() -> list[list[list[bytes]]]:
        loop = asyncio.get_running_loop()
        first = reader.Inbox(pairs()[1], lambda _b: None, loop)
        old = reader.reading_thread()
        first.close()
        assert old is not None
        await wait_until(lambda: not old.is_alive(), timeout=10)
        got: list[list[list[bytes]]] = []
        push, pull = pairs()
        second = reader.Inbox(pull, got.append, loop)
        flood(push, 0, 10)
        await wait_until(lambda: len(numbers(got)) == 10, timeout=10)
        second.close()
        return got

    assert numbers(aio.run(go())) == list(range(10))


def test_a_closed_inbox_hands_over_nothing_more(aio, pairs):
    async def go() -> list[list[list[bytes]]]:
        got: list[list[list[bytes]]] = []
        push, pull = pairs()
        inbox = reader.Inbox(pull, got.append, asyncio.get_running_loop())
        flood(push, 0, 100)
        block_the_loop(0.3)  # received by the thread, not yet handed over
        inbox.close()
        await asyncio.sleep(0.1)
        return got

    assert aio.run(go()) == []
