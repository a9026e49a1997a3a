"""One thread that reads every IOPub subscriber of the process, so that a busy event loop
never makes a kernel's PUB socket drop.

Measured in the app benchmark's flood (4 kernels printing, window open, 2 busy cores): the
loop fell up to 20 s behind the kernels, and the TCP receive queue of a subscriber stood
still at 670 KB for 6 s while the loop kept reading: libzmq's IO thread had stopped
reading, because the socket's receive queue counted as full (its high-water mark is a
count of messages, and the reader tells the IO thread what it took only every ~9,000 of
them). The kernel's send queue then filled and its PUB socket dropped output.

Here a thread (``kernelmon-iopub``) polls the SUB sockets and moves each message into an
``Inbox`` in Python memory, bounded in bytes (``INBOX_BYTES`` per socket; beyond it the
thread stops reading that socket and libzmq's high-water mark applies again, so a kernel
that outruns kernelmon for good still loses output, counted as before). The loop is woken
through a pipe it watches (``add_reader``, as ``core.threads`` does: no cross-thread Qt
signals), at most once per ``wire.COALESCE`` while messages keep coming, and hands the
batches to ``on_batch`` in the order they arrived, within the loop's reading budget
(``wire._Turns``). The thread only receives frames: it holds the GIL for the receive
itself and sleeps in ``zmq_poll`` otherwise; verifying and parsing stay on the loop.

The thread starts with the first subscriber and ends when the last one is closed (each
socket is closed on the thread that reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from time import perf_counter

import zmq

from . import wire

logger = logging.getLogger(__name__)

#: Bytes of received messages one subscriber may hold in Python memory before the thread
#: stops reading it (the default byte cap of a frontend's offline buffer).
INBOX_BYTES = 16 * 1024 * 1024
#: Messages read from one socket before the thread looks at the others.
_ROUND = 256
#: What a message costs beyond its frames' bytes (the list and a bytes object per frame).
_PER_MESSAGE = 56
_PER_FRAME = 33
_NOBLOCK = int(zmq.NOBLOCK)


class _Wake:
    """One loop's pipe: the thread writes a byte when an inbox has news; the loop runs the
    ready inboxes at most once per ``wire.COALESCE`` (unless they are behind: then the
    loop's rotation comes back for them every turn)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        #: Inboxes with news, in the order they got it; guarded by ``_lock``.
        self.ready: dict[Inbox, None] = {}
        self.signalled = False
        self.inboxes = 0
        self.last = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        loop.add_reader(self.read_fd, self._on_wake)

    def tell(self, inbox: Inbox) -> None:
        """On the thread, with ``_lock`` held."""
        self.ready[inbox] = None
        if not self.signalled:
            self.signalled = True
            with contextlib.suppress(OSError):  # a full pipe wakes the loop anyway
                os.write(self.write_fd, b"\0")

    def _on_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.read_fd, 4096):
                pass
        if self.timer is not None:
            return
        wait = self.last + wire.COALESCE - perf_counter()
        if wait > 0:
            self.timer = self.loop.call_later(wait, self._run)
        else:
            self._run()

    def _run(self) -> None:
        self.timer = None
        self.last = perf_counter()
        with _lock:
            ready, self.ready = self.ready, {}
            self.signalled = False
        for inbox in ready:
            inbox.take_turn()

    def release(self) -> None:
        self.inboxes -= 1
        if self.inboxes:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        with contextlib.suppress(Exception):  # the loop may be closed already
            self.loop.remove_reader(self.read_fd)
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if _wakes.get(self.loop) is self:
            del _wakes[self.loop]


_wakes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wake] = weakref.WeakKeyDictionary()


class Inbox:
    """A SUB socket read by the thread, and its messages not yet handed to ``on_batch``
    (the interface of ``wire.SocketDrain`` that ``iopub.Feed`` uses: ``read_now``,
    ``close``)."""

    def __init__(
        self,
        socket: zmq.Socket[bytes],
        on_batch: Callable[[list[list[bytes]]], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.socket = socket
        self.loop = loop
        self._on_batch = on_batch
        #: Guarded by ``_lock``: messages received, their bytes, and whether the thread
        #: stopped reading the socket because they reached ``INBOX_BYTES``.
        self._messages: deque[list[bytes]] = deque()
        self.nbytes = 0
        self.paused = False
        #: In the loop's rotation of readers with messages left over (``wire._Turns``).
        self.waiting = False
        self.closed = False
        self._turns = wire.turns_for(loop)
        wake = _wakes.get(loop)
        if wake is None:
            wake = _wakes[loop] = _Wake(loop)
        wake.inboxes += 1
        self._wake = wake
        _thread.add(self)

    # -- on the thread ----------------------------------------------------------------------

    def receive(self) -> None:
        """Move what the socket holds (up to a round) into the inbox; pause at the cap."""
        recv = self.socket.recv_multipart
        got: list[list[bytes]] = []
        size = 0
        try:
            while len(got) < _ROUND:
                frames = recv(_NOBLOCK)
                got.append(frames)
                size += _PER_MESSAGE + sum(len(f) + _PER_FRAME for f in frames)
                if self.nbytes + size >= INBOX_BYTES:
                    break
        except zmq.Again:
            pass
        except zmq.ZMQError as e:
            logger.warning("Receive failed on %s: %s", self.socket, e)
        if not got:
            return
        with _lock:
            if self.closed:
                return
            self._messages.extend(got)
            self.nbytes += size
            if self.nbytes >= INBOX_BYTES:
                self.paused = True
            self._wake.tell(self)

    # -- on the loop ------------------------------------------------------------------------

    def take_turn(self) -> None:
        if not self.closed and not self.waiting and self.read(wire.BATCH, self._deadline()):
            self._turns.add(self)

    def _deadline(self) -> float:
        return perf_counter() + wire.BUDGET

    def read(self, limit: int, deadline: float) -> bool:
        """Hand up to ``limit`` messages to ``on_batch``; True if more are left. (The
        deadline is kept by the rotation between calls: taking messages costs nothing.)"""
        del deadline
        with _lock:
            if self.closed:
                return False
            n = min(limit, len(self._messages))
            popleft = self._messages.popleft
            batch = [popleft() for _ in range(n)]
            self.nbytes -= sum(
                _PER_MESSAGE + sum(len(f) + _PER_FRAME for f in frames) for frames in batch
            )
            more = bool(self._messages)
            resume = self.paused and self.nbytes < INBOX_BYTES // 2
            if resume:
                self.paused = False
        if resume:
            _thread.poke()
        if batch:
            try:
                self._on_batch(batch)
            except Exception:
                logger.exception("Message handler failed; messages of this batch are lost")
        return more and not self.closed

    def read_now(self) -> None:
        """Hand over what the thread has received by now (see ``SocketDrain.read_now``)."""
        self.take_turn()

    def close(self, linger: int = 0) -> None:
        del linger  # the thread closes the socket, without lingering (a SUB sends nothing)
        with _lock:
            if self.closed:
                return
            self.closed = True
            self._messages.clear()
            self.nbytes = 0
            self._wake.ready.pop(self, None)
        self._wake.release()
        _thread.remove(self)


class _Thread:
    """The reading thread and its commands (add and remove sockets, resume a paused one)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.commands: deque[tuple[str, Inbox | None]] = deque()
        self.read_fd = self.write_fd = -1

    def _send(self, command: str, inbox: Inbox | None) -> None:
        """With ``_lock`` held."""
        self.commands.append((command, inbox))
        with contextlib.suppress(OSError):
            os.write(self.write_fd, b"\0")

    def add(self, inbox: Inbox) -> None:
        with _lock:
            if self.thread is None:
                self.read_fd, self.write_fd = os.pipe()
                os.set_blocking(self.read_fd, False)
                os.set_blocking(self.write_fd, False)
                self.commands.clear()
                self.thread = threading.Thread(
                    target=self._run, args=(self.read_fd,), name="kernelmon-iopub", daemon=True
                )
                self.thread.start()
            self._send("add", inbox)

    def remove(self, inbox: Inbox) -> None:
        with _lock:
            self._send("remove", inbox)

    def poke(self) -> None:
        with _lock:
            self._send("resume", None)

    def _run(self, read_fd: int) -> None:
        poller = zmq.Poller()
        poller.register(read_fd, zmq.POLLIN)
        inboxes: dict[zmq.Socket[bytes], Inbox] = {}
        polled: set[Inbox] = set()
        try:
            while True:
                for sock, _ev in poller.poll():
                    if sock == read_fd:
                        continue
                    inbox = inboxes.get(sock)
                    if inbox is not None:
                        inbox.receive()
                with contextlib.suppress(OSError):
                    while os.read(read_fd, 4096):
                        pass
                with _lock:
                    commands = list(self.commands)
                    self.commands.clear()
                    for command, inbox in commands:
                        if command == "add" and inbox is not None:
                            inboxes[inbox.socket] = inbox
                        elif command == "remove" and inbox is not None:
                            inboxes.pop(inbox.socket, None)
                            if inbox in polled:
                                polled.discard(inbox)
                                poller.unregister(inbox.socket)
                            inbox.socket.close(linger=0)
                    # Poll the sockets whose inbox has room; not those that reached the cap.
                    for inbox in inboxes.values():
                        if inbox.paused and inbox in polled:
                            polled.discard(inbox)
                            poller.unregister(inbox.socket)
                        elif not inbox.paused and inbox not in polled:
                            polled.add(inbox)
                            poller.register(inbox.socket, zmq.POLLIN)
                    if not inboxes and not self.commands:
                        # The last subscriber left: end (a new one starts a new thread).
                        self.thread = None
                        for fd in (self.read_fd, self.write_fd):
                            with contextlib.suppress(OSError):
                                os.close(fd)
                        self.read_fd = self.write_fd = -1
                        return
        except Exception:
            logger.exception("The IOPub reading thread failed")
            with _lock:
                self.thread = None
                for inbox in inboxes.values():
                    with contextlib.suppress(Exception):
                        inbox.socket.close(linger=0)


_lock = threading.Lock()
_thread = _Thread()


def reading_thread() -> threading.Thread | None:
    """The reading thread, while any subscriber is open (for tests)."""
    return _thread.thread
