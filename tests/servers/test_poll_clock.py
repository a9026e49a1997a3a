"""The servers' poll clock (``PollClock``): which servers are polled together, when, and how
often. Scheduling only: the turns here are a recording function on a real asyncio loop, with a
50 ms interval (the servers' own polls, over real HTTP, are in the map's tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from kernelmon.core.servers import polling
from kernelmon.core.servers.polling import PollClock

INTERVAL = 0.05


@dataclass(eq=False)
class Server:
    """What the clock reads of a ``ServerWatch``: its failures in a row and ``next_poll``."""

    name: str
    failures: int = 0
    next_poll: datetime | None = None
    #: seconds a poll of it takes
    takes: float = 0.0
    #: failures its next polls end with (then it answers again)
    fails: int = 0


@dataclass
class Turns:
    """Every turn the clock began: the names of its servers, in order."""

    seen: list[list[str]] = field(default_factory=list)
    #: polls under way per server, at most (one request at a time per server)
    most_at_once: int = 0
    _under_way: dict[str, int] = field(default_factory=dict)

    async def poll(self, servers: list[Any]) -> None:
        self.seen.append(sorted(s.name for s in servers))
        for s in servers:
            self._under_way[s.name] = self._under_way.get(s.name, 0) + 1
            self.most_at_once = max(self.most_at_once, self._under_way[s.name])
        try:
            await asyncio.sleep(max(s.takes for s in servers))
        finally:
            for s in servers:
                self._under_way[s.name] -= 1
                s.failures = s.failures + 1 if s.fails else 0
                s.fails = max(0, s.fails - 1)

    def of(self, name: str) -> list[list[str]]:
        return [t for t in self.seen if name in t]


def run(aio: Any, body: Any, interval: float = INTERVAL) -> Turns:
    turns = Turns()

    async def go() -> None:
        clock = PollClock(lambda: interval, turns.poll)
        try:
            await body(clock)
        finally:
            await clock.close()

    aio.run(go(), timeout=30)
    return turns


def test_servers_that_answer_are_polled_together_once_per_cycle(aio: Any) -> None:
    a, b, c = Server("a"), Server("b"), Server("c")

    async def body(clock: PollClock) -> None:
        for s in (a, b, c):
            clock.add(s)  # type: ignore[arg-type]
        await asyncio.sleep(INTERVAL * 10.5)

    turns = run(aio, body)
    assert turns.seen[0] == ["a", "b", "c"]  # added: polled at once, in one turn
    assert all(t == ["a", "b", "c"] for t in turns.seen), turns.seen
    # a cycle every interval, give or take a fifth: 10.5 intervals hold at most 13 cycles
    # (fewer when the loop is late: a cycle is timed from the one before)
    assert 5 <= len(turns.seen) <= 13, len(turns.seen)
    assert a.next_poll is not None


def test_a_failing_server_is_polled_alone_after_its_backoff(aio: Any) -> None:
    good, bad = Server("good"), Server("bad", fails=2)

    async def body(clock: PollClock) -> None:
        clock.add(good)  # type: ignore[arg-type]
        clock.add(bad)  # type: ignore[arg-type]
        await asyncio.sleep(INTERVAL * 14)

    turns = run(aio, body)
    assert turns.seen[0] == ["bad", "good"]
    alone = [t for t in turns.seen[1:] if "bad" in t]
    # after 1 failure: 2 intervals, after 2: 4 intervals (give or take a fifth), then it
    # answered and follows the cycle again, with the other
    assert alone[:2] == [["bad"], ["bad"]], turns.seen
    assert alone[2:], turns.seen
    assert all(t == ["bad", "good"] for t in alone[2:]), turns.seen
    assert len(turns.of("good")) > len(turns.of("bad"))


def test_a_slow_turn_is_split_and_the_quick_servers_join_again(
    aio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polling, "SLOW", INTERVAL / 2)
    # the slow one takes longer than a cycle (at most 1.2 intervals)
    quick, slow = Server("quick"), Server("slow", takes=INTERVAL * 1.4)

    async def body(clock: PollClock) -> None:
        clock.add(quick)  # type: ignore[arg-type]
        clock.add(slow)  # type: ignore[arg-type]
        await asyncio.sleep(INTERVAL * 16)

    turns = run(aio, body)
    assert turns.seen[0] == ["quick", "slow"]
    # the slow one never again holds the quick one's turn back
    assert all(t in (["quick"], ["slow"]) for t in turns.seen[1:]), turns.seen
    # one request at a time per server: a slow one still under way misses a cycle
    assert len(turns.of("quick")) > len(turns.of("slow"))
    assert turns.most_at_once == 1


def test_soon_polls_at_once_or_right_after_the_poll_under_way(aio: Any) -> None:
    a, b = Server("a", takes=0.2), Server("b")

    async def body(clock: PollClock) -> None:
        clock.add(a)  # type: ignore[arg-type]
        await asyncio.sleep(0.02)
        clock.add(b)  # type: ignore[arg-type]
        await asyncio.sleep(0.03)  # a's first poll under way, b's done
        clock.soon(a)  # type: ignore[arg-type]
        clock.soon(a)  # type: ignore[arg-type]  (once is enough)
        clock.soon(b)  # type: ignore[arg-type]
        await asyncio.sleep(0.5)  # a's second poll begun once its first ended, and over

    turns = run(aio, body, interval=3600)  # (no cycle: only the polls asked for)
    assert turns.seen == [["a"], ["b"], ["b"], ["a"]]
    assert turns.most_at_once == 1


def test_poll_now_waits_for_the_poll_under_way_and_polls_the_others(aio: Any) -> None:
    busy, free = Server("busy", takes=0.2), Server("free")
    order: list[str] = []

    async def body(clock: PollClock) -> None:
        clock.add(busy)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # busy's first poll under way
        clock.add(free)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # free's first poll done
        await clock.poll_now([busy, free])  # type: ignore[list-item]
        order.append("poll_now returned")

    turns = run(aio, body, interval=3600)
    # busy was not asked twice at once; free was polled again; poll_now waited for busy's
    assert turns.seen == [["busy"], ["free"], ["free"]]
    assert turns.most_at_once == 1
    assert order == ["poll_now returned"]


def test_a_shorter_interval_holds_from_now(aio: Any) -> None:
    a = Server("a")
    counts: list[int] = []

    async def body(clock: PollClock) -> None:
        clock.add(a)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        counts.append(len(turns.seen))
        interval[0] = INTERVAL
        clock.interval_changed()
        await asyncio.sleep(INTERVAL * 5)

    interval = [3600.0]
    turns = Turns()

    async def go() -> None:
        clock = PollClock(lambda: interval[0], turns.poll)
        try:
            await body(clock)
        finally:
            await clock.close()

    aio.run(go(), timeout=30)
    assert counts == [1]  # the first poll, then an hour to wait
    assert len(turns.seen) >= 4  # not the hour: a cycle every 50 ms from the change


def test_close_ends_the_turns_under_way_and_remove_stops_polling(aio: Any) -> None:
    a, b = Server("a", takes=3600), Server("b")
    ended: list[str] = []

    async def body(clock: PollClock) -> None:
        clock.add(a)  # type: ignore[arg-type]
        clock.add(b)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert clock.running
        clock.remove(b)  # type: ignore[arg-type]
        ended.append("removed")

    turns = run(aio, body)  # close() returns: the hour-long turn was cancelled
    assert turns.seen == [["a", "b"]]  # b removed: not polled again
    assert b.next_poll is None
    assert ended == ["removed"]


def test_a_failing_step_of_the_clock_is_said_and_polling_goes_on(
    aio: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = Server("a")
    calls = [0]

    def interval() -> float:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("a bug")
        return INTERVAL

    turns = Turns()

    async def go() -> None:
        clock = PollClock(interval, turns.poll)
        try:
            clock.add(a)  # type: ignore[arg-type]
            await asyncio.sleep(2.5)  # (after a failure the clock waits a second)
        finally:
            await clock.close()

    aio.run(go(), timeout=30)
    assert "The servers' poll clock failed" in caplog.text
    assert len(turns.seen) >= 5  # polled on after it


def test_a_server_not_ready_is_polled_alone(aio: Any) -> None:
    """A server whose poll cannot begin with its exchange now (its connection to open, a
    request of its own under way) is not put in the shared turn, at a cycle or when due."""
    a, b, c = Server("a"), Server("b"), Server("c")

    async def body(clock: PollClock) -> None:
        for s in (a, b, c):
            clock.add(s)  # type: ignore[arg-type]
        await asyncio.sleep(INTERVAL * 4.5)

    turns = Turns()

    async def go() -> None:
        clock = PollClock(lambda: INTERVAL, turns.poll, ready=lambda s: s.name != "b")
        try:
            await body(clock)
        finally:
            await clock.close()

    aio.run(go(), timeout=30)
    assert turns.seen[:2] == [["a", "c"], ["b"]]
    assert all(t in (["a", "c"], ["b"]) for t in turns.seen), turns.seen
