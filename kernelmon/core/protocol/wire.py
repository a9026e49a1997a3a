"""The Jupyter wire protocol at the speed a monitor needs.

Watching a kernel only needs the header (message type, parent id) and, for ``status``
messages, the content; so instead of jupyter_client's full ``Session.deserialize`` (which also
parses dates and every part) the watcher verifies the HMAC and parses just what it uses.

``SocketDrain`` reads a plain (non-asyncio) zmq socket from the event loop: one reader
callback per wake-up that drains every ready message, in batches. Under qasync each wake-up is
a Qt socket-notifier round trip, so one wake-up per message would cost ~3x more. Reading is
bounded by time, not only by count: the drains of one event loop share ``BUDGET`` of wall
time per loop turn, so a flood on several sockets cannot hold the loop (and the window) for
longer than that; sockets that are behind are served in rotation, a few messages each.

A SUB socket (IOPub) also coalesces its wake-ups: it reads at most once per ``COALESCE``
(10 ms) unless it is behind. A message after a quiet spell is read at once; during a flood
libzmq's IO thread (which runs without the GIL) gathers the messages of the next 10 ms and
Python reads them in one go, instead of one loop wake-up per message (under qasync a Qt
socket-notifier round trip each). What the IO thread may hold for a socket is bounded by its
receive high-water mark (``subscriber``): the kernel's PUB socket drops only once kernelmon is
that far behind, not after libzmq's default of 1,000 messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import zmq

from .checks import Signer as Signer
from .checks import parse_header as parse_header

logger = logging.getLogger(__name__)

DELIM = b"<IDS|MSG>"
#: Wall time [s] the drains of one event loop spend reading per loop turn before yielding to
#: the loop (the rest follow on the next turn). At least one message is read per turn.
BUDGET = 0.002
#: At most this many messages per batch handed to a handler.
BATCH = 256
#: Messages a socket reads per round while several are behind (they take turns).
CHUNK = 16
# Plain ints: pyzmq's enum flags cost an object per use on the hot path.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
#: Messages per read for which ZMQ_EVENTS is looked at first (then: receive until EAGAIN).
_PROBED = 8
#: A SUB socket's reads are at least this far apart [s] unless it is behind (see above).
COALESCE = 0.010
#: Receive high-water mark of kernelmon's SUB sockets: messages libzmq's IO thread keeps
#: reading from a kernel's IOPub while Python is busy. A count (libzmq has no byte limit that
#: does not disconnect the peer); it is the default offline buffer's count cap, and a print
#: message takes about 1 KB there, so a socket's queue stays around 10 MB at most.
RECEIVE_HWM = 10_000
_SUB = int(zmq.SUB)


def channel_url(info: dict[str, Any], channel: str) -> str:
    """The zmq address of one of a kernel's channels, from its connection info."""
    transport = info.get("transport", "tcp")
    ip = info["ip"]
    port = info[f"{channel}_port"]
    if transport == "tcp":
        host = f"[{ip}]" if ":" in ip else ip
        return f"tcp://{host}:{port}"
    return f"{transport}://{ip}-{port}"


def subscriber(
    url: str,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    rcvhwm: int | None = None,
) -> zmq.Socket[bytes]:
    """A SUB socket subscribed to everything and connected to ``url``, with a bounded receive
    high-water mark ``rcvhwm`` (default ``RECEIVE_HWM``; set before connecting: it applies
    to the connection's pipe when it is made)."""
    if rcvhwm is None:
        rcvhwm = RECEIVE_HWM
    if rcvhwm <= 0:
        raise ValueError("a subscriber's receive high-water mark must be bounded (> 0)")
    ctx = context or zmq.Context.instance()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    # Reconnect fast: the kernel may bind its IOPub a moment after we connect.
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(url)
    return sock


def split_frames(frames: Sequence[bytes]) -> Sequence[bytes] | None:
    """The frames after the ``<IDS|MSG>`` delimiter (signature, header, parent, metadata,
    content, buffers...), or None if the message is malformed."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        return None
    rest = frames[i + 1 :]
    if len(rest) < 5:
        return None
    return rest


def decode_message(signer: Signer, frames: Sequence[bytes]) -> dict[str, Any] | None:
    """A whole message as a dict (header, parent_header, metadata, content, buffers,
    msg_id, msg_type), or None if it is malformed or its signature does not verify.

    Like jupyter_client's ``Session.deserialize`` but about ten times cheaper: dates in the
    headers stay ISO 8601 strings (as Jupyter's web frontends receive them).
    """
    parts = split_frames(frames)
    if parts is None or not signer.verify(parts[0], parts[1:5]):
        return None
    try:
        header = json.loads(parts[1])
        parent = json.loads(parts[2])
        metadata = json.loads(parts[3])
        content = json.loads(parts[4])
    except (ValueError, RecursionError):
        # not JSON, not UTF-8, a number of thousands of digits, or absurdly deep nesting
        return None
    return message_dict(header, parent, metadata, content, parts[5:])


def message_dict(
    header: Any, parent: Any, metadata: Any, content: Any, buffers: Sequence[bytes]
) -> dict[str, Any] | None:
    """A decoded message as frontends get it (the shape of jupyter_client's), or None if its
    parts are not what the protocol says (four objects; a string msg_id and msg_type)."""
    if not all(isinstance(d, dict) for d in (header, parent, metadata, content)):
        return None
    msg_id, msg_type = header.get("msg_id"), header.get("msg_type")
    if not isinstance(msg_id, str) or not isinstance(msg_type, str):
        return None
    return {
        "header": header,
        "msg_id": msg_id,
        "msg_type": msg_type,
        "parent_header": parent,
        "metadata": metadata,
        "content": content,
        "buffers": [memoryview(b) for b in buffers],
    }


class _Turns:
    """The drains of one event loop that have messages left over, served in rotation by one
    callback per loop turn that stops when the turn's ``BUDGET`` is spent."""

    __slots__ = ("scheduled", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[SocketDrain] = deque()
        self.scheduled = False

    def add(self, drain: SocketDrain) -> None:
        if not drain.waiting:
            drain.waiting = True
            self.waiting.append(drain)
        if not self.scheduled:
            self.scheduled = True
            drain.loop.call_soon(self.run, drain.loop)

    def run(self, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduled = False
        waiting = self.waiting
        deadline = perf_counter() + BUDGET
        while waiting:
            drain = waiting[0]
            if drain.read(CHUNK, deadline):
                waiting.rotate(-1)  # more left: to the back of the line
            else:
                waiting.popleft()
                drain.waiting = False
            if perf_counter() >= deadline:
                break
        if waiting:
            self.scheduled = True
            loop.call_soon(self.run, loop)


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


class _Readiness:
    """One epoll (Linux) for the zmq FDs of every drain of an event loop, registered with the
    loop as a single reader, and at most one wake-up per ``COALESCE`` for all of them.

    With a reader per socket, every socket is a file descriptor the loop polls on each turn
    (under qasync a QSocketNotifier each, with a Qt event round trip per wake-up): watching
    256 kernels, the loop's own bookkeeping cost more than reading their messages. The zmq
    FDs are registered edge-triggered, as zmq signals them: a drain that was told once is
    told again only after it has read what is there (see ``SocketDrain``).

    While messages keep coming, the loop does not watch the epoll at all: after a read, the
    epoll is looked at again ``COALESCE`` later, by a timer, and the loop watches it again
    only once a look found nothing. A loop wake-up costs more than reading a batch of
    messages (on a shared machine, 0.1-0.2 ms of CPU for an empty one): watching the epoll
    meanwhile woke the loop once for each socket that got a message, then once more for the
    read, each ``COALESCE``; now one timer does for all of them. A message after a quiet
    spell is still read at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.drains: dict[int, SocketDrain] = {}
        #: Drains told ready and not yet run (in the order they were told).
        self.ready: dict[SocketDrain, None] = {}
        self.last = float("-inf")
        #: The next look at the epoll (while it is not watched), or None.
        self.timer: asyncio.TimerHandle | None = None
        #: Whether the epoll's FD is a reader of the loop (else the timer is set).
        self.watching = False
        self._watch()

    def _watch(self) -> None:
        if not self.watching:
            self.watching = True
            self.loop.add_reader(self.epoll.fileno(), self._on_ready)

    def _unwatch(self) -> None:
        if self.watching:
            self.watching = False
            try:
                self.loop.remove_reader(self.epoll.fileno())
            except Exception:  # loop already closed
                pass

    def register(self, fd: int, drain: SocketDrain) -> None:
        self.epoll.register(fd, select.EPOLLIN | select.EPOLLET)
        self.drains[fd] = drain

    def unregister(self, fd: int) -> None:
        drain = self.drains.pop(fd, None)
        if drain is not None:
            self.ready.pop(drain, None)
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        if not self.drains:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._unwatch()
            self.epoll.close()
            if _readiness.get(self.loop) is self:
                del _readiness[self.loop]

    def _gather(self) -> None:
        drains, ready = self.drains, self.ready
        for fd, _events in self.epoll.poll(0):
            drain = drains.get(fd)
            if drain is not None:
                ready[drain] = None

    def _on_ready(self) -> None:
        self._gather()
        if self.timer is not None or not self.ready:
            return
        wait = self.last + COALESCE - perf_counter()
        if wait > 0:
            # what else gets ready meanwhile is looked at when the timer comes
            self._unwatch()
            self.timer = self.loop.call_later(wait, self._run)
        else:
            self._run()

    def _run(self) -> None:
        self.timer = None
        if not self.watching:
            self._gather()
        if not self.ready:
            self._watch()  # a quiet spell: wake up for the next message
            return
        self.last = perf_counter()
        ready, self.ready = self.ready, {}
        for drain in ready:
            drain._on_readable(spaced=True)
        if self.drains and self.timer is None:
            self._unwatch()
            self.timer = self.loop.call_later(COALESCE, self._run)


_readiness: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Readiness] = (
    weakref.WeakKeyDictionary()
)


def _readiness_for(loop: asyncio.AbstractEventLoop) -> _Readiness | None:
    """The loop's shared epoll, or None where there is no epoll (a reader per socket)."""
    if not hasattr(select, "epoll"):
        return None
    readiness = _readiness.get(loop)
    if readiness is None:
        readiness = _readiness[loop] = _Readiness(loop)
    return readiness


class SocketDrain:
    """Reads every ready message of a plain zmq socket on each loop wake-up.

    ``on_batch(list_of_frame_lists)`` is called with up to ``BATCH`` messages at a time, in
    the order they arrived. The zmq FD is edge-triggered: a socket that stops reading with
    messages left is put in its loop's rotation, which comes back for them. ``coalesce``
    (default: ``COALESCE`` for a SUB socket, 0 otherwise) is the least time [s] between two
    reads that start from a wake-up.
    """

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        on_batch: Callable[[list[list[bytes]]], None],
        loop: asyncio.AbstractEventLoop | None = None,
        coalesce: float | None = None,
    ) -> None:
        self.socket = socket
        self._on_batch = on_batch
        self.loop = loop or asyncio.get_running_loop()
        turns = _turns.get(self.loop)
        if turns is None:
            turns = _turns[self.loop] = _Turns()
        self._turns = turns
        #: In the rotation of drains that have messages left over.
        self.waiting = False
        self._fd = int(socket.getsockopt(zmq.FD))
        self._closed = False
        self._pending = False
        if coalesce is None:
            coalesce = COALESCE if int(socket.getsockopt(zmq.TYPE)) == _SUB else 0.0
        self._coalesce = coalesce
        #: ``perf_counter()`` of the last read, and the timer of a deferred one.
        self._last_read = float("-inf")
        self._deferred: asyncio.TimerHandle | None = None
        self._readiness = _readiness_for(self.loop)
        if self._readiness is not None:
            self._readiness.register(self._fd, self)
        else:
            self.loop.add_reader(self._fd, self._on_readable)
        # The zmq FD is edge-triggered: messages that arrived before add_reader would never
        # wake us, so look once now.
        self.poke()

    def poke(self) -> None:
        if not self._pending and not self._closed:
            self._pending = True
            self.loop.call_soon(self._on_readable)

    def _on_readable(self, spaced: bool = False) -> None:
        """Read what is ready (``spaced``: the loop's shared epoll woke us, no sooner than
        ``COALESCE`` after its last wake-up; the drain's own spacing is not looked at again:
        under qasync a timer of 9.7 ms fires after 9 (whole milliseconds), and the drain
        would wait once more, with a timer and a loop wake-up of its own each time)."""
        self._pending = False
        if self._closed or self.waiting or self._deferred is not None:
            return  # in the rotation, or a read is due: it comes
        now = perf_counter()
        wait = 0.0 if spaced else self._last_read + self._coalesce - now
        if wait > 0:
            # Read soon, all at once. Looking at ZMQ_EVENTS clears the FD's readiness (the
            # loop polls it level-triggered); no further wake-up comes until we have read.
            if int(self.socket.getsockopt(_EVENTS)) & _POLLIN:
                self._deferred = self.loop.call_later(wait, self._on_due)
            return
        if self._turns.waiting:
            # Others are behind: queue up behind them rather than take a turn of our own.
            self._turns.add(self)
            return
        self._last_read = now
        if self.read(BATCH, now + BUDGET):
            self._turns.add(self)

    def read_now(self) -> None:
        """Read what is there now (within the turn's budget), even within the coalescing
        window: used before a reply is delivered, so that output the kernel published before
        the reply is delivered first, as a frontend expects."""
        if self._closed:
            return
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self._last_read = now = perf_counter()
        if self.read(BATCH, now + BUDGET):
            self._turns.add(self)

    def _on_due(self) -> None:
        self._deferred = None
        self._last_read = float("-inf")
        self._on_readable()

    def read(self, limit: int, deadline: float) -> bool:
        """Read and hand over up to ``limit`` messages, stopping at ``deadline``
        (``perf_counter()``) after at least one; True if messages may be left."""
        if self._closed:
            return False
        sock = self.socket
        recv = sock.recv
        batch: list[list[bytes]] = []
        more = False
        try:
            # Reading ZMQ_EVENTS until it has no POLLIN re-arms the edge-triggered FD (a
            # receive until EAGAIN would too, but an exception per wake-up costs more).
            # Frames (copy=False) and their .more: about 2/3 the cost of recv_multipart().
            # ZMQ_EVENTS before each of the first few messages (no exception when there is
            # nothing more, the common case at low rates); beyond that, a flood: receive until
            # EAGAIN, one exception instead of a ZMQ_EVENTS system call per message.
            while len(batch) >= _PROBED or int(sock.getsockopt(_EVENTS)) & _POLLIN:
                frame = recv(_NOBLOCK, copy=False)
                frames = [frame.bytes]
                while frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    frames.append(frame.bytes)
                batch.append(frames)
                if len(batch) >= limit or perf_counter() >= deadline:
                    more = True
                    break
        except zmq.Again:
            pass
        except zmq.ZMQError as e:
            if not self._closed:
                logger.warning("Receive failed on %s: %s", sock, e)
            more = False
        if batch:
            try:
                self._on_batch(batch)
            except Exception:
                logger.exception("Message handler failed; messages of this batch are lost")
        return more and not self._closed

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        if self._readiness is not None:
            self._readiness.unregister(self._fd)
        else:
            try:
                self.loop.remove_reader(self._fd)
            except Exception:  # loop already closed
                pass
        self.socket.close(linger=linger)
