"""What the protocol tests share: a kernel's IOPub as far as the feed can tell (a real PUB
socket and a numbering ``Session``), and a real feed subscribed to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import zmq
from jupyter_client.session import Session

from kernelmon.core.protocol import iopub, wire
from tests.waiting import wait_until


class Publisher:
    """A kernel's IOPub as far as the feed can tell: a PUB socket and a numbering session."""

    def __init__(self) -> None:
        self.session = Session(key=b"secret")
        self.socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{port}"

    def msg(self, msg_type: str, content: dict | None = None, parent: dict | None = None) -> dict:
        """A message numbered now (sent later with ``send``)."""
        return self.session.msg(msg_type, content or {}, parent=parent)

    def send(self, msg: dict) -> None:
        self.session.send(self.socket, msg)

    def publish(
        self, msg_type: str, content: dict | None = None, parent: dict | None = None
    ) -> None:
        self.send(self.msg(msg_type, content, parent))

    def status(self, state: str, parent: dict) -> None:
        self.publish("status", {"execution_state": state}, parent)

    def skip(self) -> str:
        """Take a number without publishing it (a reply sent elsewhere, or a message
        dropped): its msg_id."""
        return str(self.session.msg_id)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(iopub, "GRACE", 0.1)


class Watched:
    """A feed subscribed to a publisher: the losses it tells, the msg_ids it got."""

    def __init__(self, pub: Publisher) -> None:
        self.pub = pub
        self.lost: list[int] = []
        self.seen: set[bytes] = set()
        self.sub = iopub.subscribe(pub.url, self._on_batch)
        self.sub.on_lost = self.lost.append

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        for frames in batch:
            header = frames[frames.index(wire.DELIM) + 2]
            number = iopub.message_number(header)
            if number is not None:
                self.seen.add(b"%s_%d" % number)

    def settled(self, aio, last: dict) -> list[int]:
        """The losses told once ``last`` came and every gap had time to settle."""
        msg_id = last["header"]["msg_id"].encode()

        async def go() -> None:
            await wait_until(lambda: msg_id in self.seen, what="the last message")
            await asyncio.sleep(iopub.GRACE * 4)

        aio.run(go())
        return list(self.lost)


@pytest.fixture
def watched(aio, short_grace) -> Iterator[Callable[[], Watched]]:
    made: list[Watched] = []

    def make() -> Watched:
        async def live() -> Watched:
            w = Watched(Publisher())
            made.append(w)
            # a SUB socket misses what is published before its subscription arrives
            while not w.sub.live:
                w.pub.publish("status", {"execution_state": "idle"})
                await asyncio.sleep(0.02)
            return w

        return aio.run(live())

    yield make
    for w in made:
        w.sub.close()
        w.pub.close()
