"""SocketDrain with a time budget too small for even one message per turn: every message of
a flood still arrives, in order, and sockets that are behind take turns (no timing is
asserted)."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from kernelmon.core.protocol import wire
from kernelmon.core.protocol.wire import SocketDrain
from tests.waiting import wait_until


@pytest.fixture
def tiny_budget(monkeypatch):
    # Every turn ends after its first message: the most continuations a flood can need.
    monkeypatch.setattr(wire, "BUDGET", 0.0)
    monkeypatch.setattr(wire, "CHUNK", 3)


@pytest.fixture
def pairs():
    """Connected PUSH -> PULL pairs over TCP with no high-water marks (nothing dropped)."""
    ctx = zmq.Context.instance()
    made: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]] = []

    def make() -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        push: zmq.Socket[bytes] = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.setsockopt(zmq.LINGER, 0)
        port = push.bind_to_random_port("tcp://127.0.0.1")
        pull: zmq.Socket[bytes] = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, 0)
        pull.setsockopt(zmq.LINGER, 0)
        pull.connect(f"tcp://127.0.0.1:{port}")
        made.append((push, pull))
        return push, pull

    yield make
    for push, pull in made:
        push.close(linger=0)
        pull.close(linger=0)


def flood(push: zmq.Socket[bytes], start: int, n: int) -> None:
    for i in range(start, start + n):
        # Multipart, like a Jupyter message: every frame must stay with its message.
        push.send_multipart([b"topic", wire.DELIM, str(i).encode(), b"x" * (i % 50)])


def numbers(batches: list[list[list[bytes]]]) -> list[int]:
    out = []
    for batch in batches:
        for frames in batch:
            assert len(frames) == 4
            assert frames[1] == wire.DELIM
            i = int(frames[2])
            assert frames[3] == b"x" * (i % 50)
            out.append(i)
    return out


async def drained_flood(push, pull, n: int, batches: list) -> SocketDrain:
    """A drain of ``pull`` once it delivered (to ``batches``) a flood of ``n`` messages."""
    drain = SocketDrain(pull, batches.append)
    flood(push, 0, n)
    await wait_until(lambda: sum(map(len, batches)) >= n, timeout=60, what="the flood")
    return drain


def test_tiny_budget_delivers_a_whole_flood_in_order(aio, tiny_budget, pairs):
    push, pull = pairs()
    n = 20_000
    batches: list[list[list[bytes]]] = []

    async def go() -> None:
        drain = await drained_flood(push, pull, n, batches)
        # The rotation emptied; a later message still wakes the drain (the FD was re-armed).
        flood(push, n, 1)
        await wait_until(lambda: sum(map(len, batches)) >= n + 1, what="a late message")
        await asyncio.sleep(0.05)
        drain.close()

    aio.run(go(), timeout=90)
    assert numbers(batches) == list(range(n + 1))
    assert len(batches) > 1  # it did yield to the loop in between


def test_sockets_behind_take_turns_and_each_gets_everything(aio, tiny_budget, pairs):
    sockets = [pairs() for _ in range(3)]
    n = 3_000
    order: list[int] = []  # which socket each batch came from
    got: list[list[list[list[bytes]]]] = [[], [], []]

    def handler(k: int):
        def on_batch(batch: list[list[bytes]]) -> None:
            order.append(k)
            got[k].append(batch)

        return on_batch

    async def go() -> None:
        drains = [SocketDrain(pull, handler(k)) for k, (_push, pull) in enumerate(sockets)]
        for push, _pull in sockets:
            flood(push, 0, n)
        await wait_until(
            lambda: all(sum(map(len, g)) >= n for g in got), timeout=60, what="all floods"
        )
        await asyncio.sleep(0.05)
        for d in drains:
            d.close()

    aio.run(go(), timeout=90)
    for k in range(3):
        assert numbers(got[k]) == list(range(n)), f"socket {k}"
    # Nobody waited for another socket's whole flood: the batches interleave.
    first = {k: order.index(k) for k in range(3)}
    last = {k: len(order) - 1 - order[::-1].index(k) for k in range(3)}
    assert all(first[j] < last[k] for j in range(3) for k in range(3))


def test_a_drain_closed_while_behind_leaves_the_rotation(aio, tiny_budget, pairs):
    (push_a, pull_a), (push_b, pull_b) = pairs(), pairs()
    got_a: list[list[list[bytes]]] = []
    got_b: list[list[list[bytes]]] = []
    n = 2_000

    async def go() -> None:
        drain_a = SocketDrain(pull_a, got_a.append)
        closed = [False]

        def on_b(batch: list[list[bytes]]) -> None:
            got_b.append(batch)
            if not closed[0] and sum(map(len, got_b)) >= 10:
                closed[0] = True
                drain_a.close()  # from a handler, while A is in the rotation

        drain_b = SocketDrain(pull_b, on_b)
        flood(push_a, 0, n)
        flood(push_b, 0, n)
        await wait_until(lambda: sum(map(len, got_b)) >= n, timeout=60, what="B's flood")
        drain_b.close()

    aio.run(go(), timeout=90)
    assert numbers(got_b) == list(range(n))
    received_a = numbers(got_a)
    assert received_a == list(range(len(received_a)))  # what A got before closing, in order
    assert len(received_a) < n


def test_default_budget_long_reads_end_at_eagain_and_rearm(aio, pairs):
    # Reads of more than a few messages receive until EAGAIN: the FD must still wake the
    # drain for what comes later.
    push, pull = pairs()
    n = 20_000
    batches: list[list[list[bytes]]] = []

    async def go() -> None:
        drain = await drained_flood(push, pull, n, batches)
        for k in range(3):
            flood(push, n + k * 20, 20)
            await wait_until(lambda k=k: sum(map(len, batches)) >= n + (k + 1) * 20)
        await asyncio.sleep(0.05)
        drain.close()

    aio.run(go(), timeout=90)
    assert numbers(batches) == list(range(n + 60))
    assert max(map(len, batches)) > wire._PROBED  # the EAGAIN path was taken


def test_sockets_read_while_the_loop_does_not_watch_them(aio, pairs, monkeypatch):
    """After a read the loop stops watching the sockets and looks again ``COALESCE`` later
    (one timer instead of a wake-up per socket): a socket whose first message comes in
    between is read at that look; once a look finds nothing the loop watches again, and
    the last drain closed leaves nothing behind."""
    monkeypatch.setattr(wire, "COALESCE", 0.5)  # a wide window: no race with the timer
    a_push, a_pull = pairs()
    b_push, b_pull = pairs()
    got_a: list[list[list[bytes]]] = []
    got_b: list[list[list[bytes]]] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        drain_a = SocketDrain(a_pull, got_a.append)
        drain_b = SocketDrain(b_pull, got_b.append)
        readiness = wire._readiness[loop]
        flood(a_push, 0, 1)  # connected, read (the first read may be the drain's own look)
        await wait_until(lambda: got_a, what="a's first message")
        await wait_until(lambda: readiness.watching, what="watching after a quiet look")
        flood(a_push, 1, 1)  # woken by the watched epoll: read, then a look by the timer
        await wait_until(lambda: sum(map(len, got_a)) == 2, what="a's second message")
        assert not readiness.watching
        assert readiness.timer is not None
        flood(b_push, 0, 3)  # while nobody watches
        await wait_until(lambda: sum(map(len, got_b)) == 3, what="b's messages")
        await wait_until(lambda: readiness.watching, what="watching after a quiet look")
        assert readiness.timer is None
        flood(a_push, 2, 2)
        flood(b_push, 3, 2)
        await wait_until(lambda: sum(map(len, got_a)) == 4 and sum(map(len, got_b)) == 5)
        drain_a.close()
        drain_b.close()
        assert wire._readiness.get(loop) is None
        assert not readiness.watching
        assert readiness.timer is None

    aio.run(go(), timeout=30)
    assert numbers(got_a) == [0, 1, 2, 3]
    assert numbers(got_b) == [0, 1, 2, 3, 4]
