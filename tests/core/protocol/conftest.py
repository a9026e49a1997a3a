"""Fixtures of the wire tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import zmq

Pair = tuple[zmq.Socket[bytes], zmq.Socket[bytes]]


@pytest.fixture
def pairs() -> Iterator[Callable[[], Pair]]:
    """Connected PUSH -> PULL pairs over TCP with no high-water marks (nothing dropped)."""
    ctx = zmq.Context.instance()
    made: list[Pair] = []

    def make() -> Pair:
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
