"""One IOPub subscriber per kernel, shared by everyone in kernelmon who reads it.

The activity watcher, every attached frontend and the offline buffer of a frontend that
left all want the same messages from the same PUB socket. Receiving a Jupyter message costs
more than anything done with it afterwards (seven zmq frames: about 14 µs of the ~30 µs a
watcher and a frontend spend per message), so each kernel's IOPub is read once, by one
``SocketDrain`` on one SUB socket (``wire.subscriber``: bounded receive high-water mark,
coalesced wake-ups), and every batch is handed to each subscriber in turn. A subscriber that
joins a feed that is already live misses nothing the kernel publishes afterwards (no
subscription handshake with the kernel is needed).

The feed also notices messages that never arrived. ipykernel (like every kernel built on
jupyter_client's ``Session``) numbers the messages of its session: ``msg_id`` ends in
``_<pid>_<counter>``, one counter for all channels (read from the header's bytes, as Python's
json writes it or compact, as orjson does: jupyter_client packs with orjson wherever it is
installed). A jump in the counter on IOPub means that messages were sent elsewhere (replies
on shell, control or stdin: those kernelmon receives on its own sockets are told to the feed
with ``note_reply``) or were dropped by the kernel's PUB socket because this subscriber fell
too far behind. A gap that no reply explains within
``GRACE`` seconds is counted as lost (kernelmon's reply sockets are read just before, so a
subscriber that held the loop cannot make an unread reply a loss). A loss at the end of a
job (its final ``idle`` status among it) shows only when the next message comes: so when
IOPub has carried nothing after an ``execute_reply`` for ``GRACE`` seconds, kernelmon's
probe asks the kernel for its info (see ``frontends``), whose status messages reveal the
gap.

Replies to other clients (JupyterLab through a server, VS Code, ``jupyter console``,
nbclient) never reach kernelmon, and are not lost either. ipykernel frames every request it
handles, on shell and (in its control thread) on control, with a ``busy`` and an ``idle``
status whose parent header is the request, and numbers the reply in between. So each
request of another client (its msg_id does not carry kernelmon's pid, which
jupyter_client's ``Session`` puts in every msg_id it makes) that gets a reply
(``REPLIED_REQUESTS``; not ``comm_open``, ``comm_msg``, ``comm_close``) explains exactly one
number missing inside its busy..idle window: settled with the gaps, after kernelmon's own
replies were read, in the order the windows closed (a control request's window may lie
inside a running cell's, and closes first). Only status messages are looked at for this; a
stream message costs one comparison more. Not explained: an ``input_request`` the kernel
sent to another client (``input()`` in that client's code: it goes on stdin, and nothing on
IOPub shows it, not even whether the request allowed stdin). It is counted, and
``last_in_other_runs`` says how many of a loss were numbered while another client's code
ran, so that the sentence says they may be that client's input prompts. An ``idle`` whose
``busy`` was not seen (sent before kernelmon watched, or dropped) closes a window from the
session's first message seen; a window whose ``idle`` was dropped explains nothing (its
reply is then counted with the real loss around it).

A restart is not a loss. The reply to a ``shutdown_request`` goes on control to whoever
asked (jupyter_client's kernel manager when kernelmon restarts the kernel), numbered just
before its copy on IOPub: a ``shutdown_reply`` on IOPub explains the missing number before
it. kernelmon's probe is closed at a restart with kernel_info requests perhaps unanswered:
their replies are counted as unread (``expect_unread``), not lost, like those of a
frontend's requests when it closes its sockets. Neither depends on how long the new process
takes to start. A message that arrives after a later-numbered one (the kernel numbers
messages in its shell and control threads, its IOPub thread sends them) fills its gap. A
new process's count starts at its first message seen: what it published before kernelmon's
subscription reached it (its startup, at most the few milliseconds of a reconnect:
``wire.subscriber``) was never kernelmon's to receive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

import zmq

from . import checks
from .wire import DELIM, SocketDrain, channel_url, subscriber

logger = logging.getLogger(__name__)

OnBatch = Callable[[list[list[bytes]]], None]
#: Called with the number of messages found missing (see ``Feed.on_lost``).
OnLost = Callable[[int], None]

#: Seconds a gap in the message counter waits for replies seen on other sockets.
GRACE = 1.0
#: At most this many reply counters are remembered per feed.
_REPLY_MEMORY = 4096
# Headers are read as bytes in the two forms jupyter_client's ``Session`` writes: Python's
# json (``"msg_id": "``) and, wherever orjson is installed (its default packer then), compact
# JSON (``"msg_id":"``).
_MSG_ID = b'"msg_id": "'
_MSG_ID_COMPACT = b'"msg_id":"'
_MSG_TYPE = b'"msg_type": "'
_MSG_TYPE_COMPACT = b'"msg_type":"'
#: What follows the msg_id of a status message's header and of a shutdown_reply's, in each
#: form (``Session`` writes msg_type right after msg_id), so that other messages are told
#: apart in one comparison.
_AFTER_ID = (
    (b'", "msg_type": "status"', b'", "msg_type": "shutdown_reply"'),
    (b'","msg_type":"status"', b'","msg_type":"shutdown_reply"'),
)
#: At most this many request windows (busy seen, idle not yet; or closed, waiting for their
#: gaps to settle) are remembered per feed.
_WINDOW_MEMORY = 1024
#: Requests that ipykernel answers with exactly one reply, numbered between the request's
#: ``busy`` and ``idle`` statuses on IOPub (its shell and control handlers;
#: ``shutdown_request`` is left to its copy on IOPub: ``Feed._explain_control_reply``).
#: ``comm_open``, ``comm_msg`` and ``comm_close`` get no reply; ``input_request`` is no request
#: to the kernel but the kernel's to a client.
_ASKING = ("complete", "inspect", "history", "is_complete", "comm_info", "kernel_info")
_RUNNING = ("execute", "interrupt", "connect", "debug", "usage")
_SUBSHELLS = ("create_subshell", "delete_subshell", "list_subshell")
REPLIED_REQUESTS = frozenset(f"{n}_request".encode() for n in (*_ASKING, *_RUNNING, *_SUBSHELLS))
#: The end of the msg_id of a request sent from this process (jupyter_client's ``Session``
#: puts the sender's pid in it): kernelmon's own, whose replies it reads itself.
_OWN_PID = b"_%d" % os.getpid()


def message_number(header: bytes) -> tuple[bytes, int] | None:
    """``(session_and_pid, counter)`` from a serialized header whose msg_id has
    jupyter_client's form ``<session>_<pid>_<counter>``, else None. Reads the bytes without
    parsing the JSON (this runs for every reply; ``Feed._count`` has it inlined)."""
    prefix, sep, number = _value(header, _MSG_ID, _MSG_ID_COMPACT).rpartition(b"_")
    if not sep or not number.isdigit():
        return None
    return prefix, int(number)


def _value(header: bytes, key: bytes, compact: bytes) -> bytes:
    """The string value after ``key`` (``b'"name": "'``, or its ``compact`` form) in a
    serialized header, or b""."""
    i = header.find(key)
    if i >= 0:
        i += len(key)
    else:
        i = header.find(compact)
        if i < 0:
            return b""
        i += len(compact)
    j = header.find(b'"', i)
    return header[i:j] if j >= 0 else b""


def id_number(msg_id: str) -> tuple[bytes, int] | None:
    """``message_number`` of a message id (as a header holding it would give)."""
    return message_number(_MSG_ID + msg_id.encode("utf-8", "replace") + b'"')


class Subscription:
    """One subscriber's hold on a feed; ``close()`` lets go (the last one closes the
    socket)."""

    __slots__ = ("_on_batch", "closed", "feed", "on_lost")

    def __init__(self, feed: Feed, on_batch: OnBatch) -> None:
        self.feed = feed
        self._on_batch = on_batch
        self.on_lost: OnLost | None = None
        self.closed = False

    @property
    def live(self) -> bool:
        """Whether the feed's socket has received a message (its subscription reached the
        kernel: what the kernel publishes from now on arrives)."""
        return self.feed.live

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.feed.remove(self)


class Feed:
    """The shared SUB socket of one IOPub address (in one event loop)."""

    def __init__(
        self,
        url: str,
        context: zmq.Context[zmq.Socket[bytes]] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.url = url
        self._key = (url, id(context))
        self.subscriptions: list[Subscription] = []
        self.live = False
        #: Messages counted as lost so far (gaps no reply of kernelmon's explained).
        self.lost = 0
        self._session: bytes | None = None
        self._last = -1
        #: The first number seen of the current session.
        self._first = -1
        #: Open gaps: (first, last, time noticed) of counters not seen on IOPub.
        self._gaps: list[tuple[int, int, float]] = []
        #: Numbers (session, counter) of replies seen on kernelmon's other sockets.
        self._replies: dict[tuple[bytes, int], None] = {}
        #: Replies of the current session that kernelmon will never read: requests whose
        #: socket it closed before their replies came (see ``expect_unread``).
        self._unread = 0
        #: Other clients' requests that get a reply, by msg_id: the number of their ``busy``
        #: and whether it is an ``execute_request``.
        self._open: dict[bytes, tuple[int, bool]] = {}
        #: Their (busy, idle) numbers once the idle came: each one's reply is numbered in
        #: between (see ``_credit_windows``).
        self._windows: list[tuple[int, int]] = []
        #: (busy, idle) of other clients' execute requests not settled yet: code that may
        #: have asked that client for input (see ``last_in_other_runs``).
        self._runs: list[tuple[int, int]] = []
        #: Of the last loss told, how many messages were numbered while another client's
        #: code ran. Those may instead be ``input_request`` messages on stdin to that client
        #: (``input()`` in its code): nothing on IOPub tells them from output the kernel's
        #: PUB socket dropped, so they are counted, and the sentence says so
        #: (``frontends.lost_text``).
        self.last_in_other_runs = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = loop
        self._drain = SocketDrain(subscriber(url, context), self._on_batch, loop)

    def add(self, on_batch: OnBatch) -> Subscription:
        sub = Subscription(self, on_batch)
        self.subscriptions.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        if not self.subscriptions:
            self._drain.close()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            feeds = _feeds.get(self._loop)
            if feeds is not None and feeds.get(self._key) is self:
                del feeds[self._key]

    def read_now(self) -> None:
        """Read the socket now (see ``SocketDrain.read_now``)."""
        self._drain.read_now()

    def note_reply(self, msg_id: str) -> None:
        """A message of the kernel's session arrived on another of kernelmon's sockets (a
        reply): its number is not missing from IOPub."""
        self._note(id_number(msg_id))

    def note_frames(self, frames: list[bytes]) -> None:
        """``note_reply`` for a message as received (frames)."""
        try:
            header = frames[frames.index(DELIM) + 2]
        except (ValueError, IndexError):
            return
        self._note(message_number(header))

    def expect_unread(self, n: int) -> None:
        """``n`` replies of the kernel's current session will not reach kernelmon: the
        socket of the requests they answer was closed first (at a restart, kernelmon's probe
        with kernel_info requests on their way). Up to ``n`` numbers missing from this
        session's IOPub are then not counted as lost."""
        self._unread += max(0, n)

    def passed(self, msg_id: str) -> bool:
        """Whether IOPub carried a message of the kernel's session numbered after
        ``msg_id`` (True when that cannot be told: another session, another numbering)."""
        number = message_number(_MSG_ID + msg_id.encode("utf-8", "replace") + b'"')
        if number is None or self._session is None or number[0] != self._session:
            return True
        return self._last > number[1]

    def _note(self, number: tuple[bytes, int] | None) -> None:
        if number is not None:
            self._replies[number] = None
        if len(self._replies) > _REPLY_MEMORY:
            del self._replies[next(iter(self._replies))]

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        self.live = True
        self._count(batch)
        for sub in list(self.subscriptions):
            if sub.closed:
                continue
            try:
                sub._on_batch(batch)
            except Exception:
                logger.exception("An IOPub subscriber failed on a batch of %s", self.url)
        # every reader had the batch: its checks vouch for nothing more (kept, they held up to
        # 4,096 messages' frames and headers alive, about 9 MB in a print flood)
        checks.forget()

    def _count(self, batch: list[list[bytes]]) -> None:
        """Follow the kernel session's message counter; remember the gaps, and the windows
        of other clients' requests (from their status messages only: this runs for every
        message of a flood)."""
        last = self._last
        session = self._session
        for frames in batch:
            try:
                d = frames.index(DELIM)
                header = frames[d + 2]
            except (ValueError, IndexError):
                continue
            # message_number, inlined (the position of the msg_id's end is needed below)
            i = header.find(_MSG_ID)
            if i >= 0:
                i += len(_MSG_ID)
                status, shutdown_reply = _AFTER_ID[0]
            else:
                i = header.find(_MSG_ID_COMPACT)
                if i < 0:
                    continue
                i += len(_MSG_ID_COMPACT)
                status, shutdown_reply = _AFTER_ID[1]
            j = header.find(b'"', i)
            prefix, sep, digits = header[i:j].rpartition(b"_")
            if j < 0 or not sep or not digits.isdigit():
                continue
            n = int(digits)
            if prefix != session:
                # A new session (the kernel restarted, or the first message): start over.
                session, last, self._first = prefix, n, n
                self._gaps.clear()
                self._unread = 0
                self._open.clear()
                self._windows.clear()
                self._runs.clear()
                # Replies may arrive before the session's first IOPub message: keep those.
                self._replies = {k: None for k in self._replies if k[0] == prefix}
            elif n > last:
                if n > last + 1:
                    self._gaps.append((last + 1, n - 1, time.monotonic()))
                last = n
            elif self._gaps:
                # Numbered in one thread, sent in another (ipykernel's control thread and
                # its shell): a message may come after a later-numbered one. It is not lost.
                self._note((prefix, n))
            if header.startswith(status, j):
                self._status(frames, d, n)
            elif self._gaps and header.startswith(shutdown_reply, j):
                # The kernel's copy of the reply to a shutdown_request (a restart's too): the
                # reply itself went on control to whoever asked (jupyter_client's kernel
                # manager when kernelmon restarts it), numbered just before this copy.
                self._explain_control_reply(prefix, n)
        self._last = last
        self._session = session
        if self._gaps and self._timer is None:
            self._timer = self._loop.call_later(GRACE, self._on_timer)

    def _status(self, frames: list[bytes], d: int, n: int) -> None:
        """A status message numbered ``n`` (``frames[d]`` is the delimiter): open or close
        the window of the request it belongs to, if that is another client's request that
        gets a reply. ipykernel frames every request it handles (on shell, and on control in
        its control thread) with a ``busy`` and an ``idle`` status whose parent is the
        request, and numbers the reply in between."""
        try:
            parent, content = frames[d + 3], frames[d + 5]
        except IndexError:
            return
        busy = b'"busy"' in content
        if not busy and b'"idle"' not in content:
            return
        msg_id = _value(parent, _MSG_ID, _MSG_ID_COMPACT)
        opened = None if busy else self._open.pop(msg_id, None)
        if opened is None:
            head, _sep, number = msg_id.rpartition(b"_")
            own = head.endswith(_OWN_PID) and number.isdigit()  # not a browser's uuid
            msg_type = _value(parent, _MSG_TYPE, _MSG_TYPE_COMPACT)
            if not msg_id or own or msg_type not in REPLIED_REQUESTS:
                return
            if busy:
                self._open[msg_id] = (n, msg_type == b"execute_request")
                if len(self._open) > _WINDOW_MEMORY:  # an idle that never came
                    del self._open[next(iter(self._open))]
                return
            # Its busy was not seen: published before this session's first message seen
            # (kernelmon began to watch during the request), or dropped. Its reply was
            # numbered before this idle all the same.
            opened = (self._first - 1, msg_type == b"execute_request")
        self._windows.append((opened[0], n))
        if len(self._windows) > _WINDOW_MEMORY:
            del self._windows[0]
        if opened[1]:
            self._runs.append((opened[0], n))
            if len(self._runs) > _WINDOW_MEMORY:
                del self._runs[0]

    def _explain_control_reply(self, session: bytes, copy: int) -> None:
        """The reply announced by a ``shutdown_reply`` numbered ``copy`` on IOPub is not
        lost: the closest number before it that is missing from IOPub, unless a reply seen
        by kernelmon comes first (then that was it). Looks a few numbers back only: another
        thread of the kernel may number a message in between."""
        for n in range(copy - 1, max(copy - 4, -1), -1):
            if (session, n) in self._replies:
                return
            if any(first <= n <= last for first, last, _t in self._gaps):
                self._replies[(session, n)] = None
                return

    def _on_timer(self) -> None:
        self._timer = None
        # Gaps are settled here, never while a batch is handed over: a subscriber that held
        # the loop for longer than GRACE must not make the replies that explain a gap, still
        # unread on kernelmon's other sockets, count as losses. Read them first.
        for drain in list(_reply_drains.get(self._loop, {}).get(self.url, ())):
            try:
                drain.read_now()
            except Exception:
                logger.exception("Reading the replies of %s failed", self.url)
        self._settle(time.monotonic())
        if self._gaps and self.subscriptions:
            self._timer = self._loop.call_later(GRACE, self._on_timer)

    def _credit_windows(self, now: float) -> None:
        """Explain, for each closed window of another client's request, one number missing
        inside it (its reply, which went to that client), among the gaps old enough to be
        settled. Runs after kernelmon's own reply sockets were read, so a reply of
        kernelmon's numbered in the window (a request of its own on control while another
        client's cell runs) is already known and not taken for the other client's. Windows
        in the order of their idle (a window nested in another closes first), each taking
        the lowest missing number it holds: this greedy order credits as many windows as
        the gaps allow (windows overlap only where the kernel's threads interleave)."""
        ready = [(first, last) for first, last, t in self._gaps if now - t >= GRACE]
        if not ready or not self._windows:
            return
        session, replies = self._session, self._replies
        assert session is not None
        waiting: list[tuple[int, int]] = []
        for busy, idle in sorted(self._windows, key=lambda w: (w[1], -w[0])):
            found = None
            for first, last in ready:
                for n in range(max(first, busy + 1), min(last, idle - 1) + 1):
                    if (session, n) not in replies:
                        found = n
                        break
                if found is not None:
                    break
            if found is not None:
                replies[(session, found)] = None
            elif any(
                first < idle and last > busy and now - t < GRACE for first, last, t in self._gaps
            ):
                waiting.append((busy, idle))  # its reply's gap is not old enough yet
        self._windows = waiting

    def _settle(self, now: float) -> None:
        """Count the gaps older than ``GRACE`` that no reply explains."""
        self._credit_windows(now)
        lost = in_runs = 0
        # other clients' code: run (busy, idle), or running (busy, beyond any number seen)
        runs = self._runs + [(busy, self._last + 1) for busy, run in self._open.values() if run]
        replies, session = self._replies, self._session
        while self._gaps and now - self._gaps[0][2] >= GRACE:
            first, last, _t = self._gaps.pop(0)
            if last - first < 64:
                missing = [n for n in range(first, last + 1) if (session, n) not in replies]
                lost += len(missing)
                if runs:
                    in_runs += sum(1 for n in missing if any(b < n < i for b, i in runs))
            else:
                explained = sum(1 for s, n in replies if s == session and first <= n <= last)
                lost += last - first + 1 - explained
                if runs:
                    inside = sum(max(0, min(last, i - 1) - max(first, b + 1) + 1) for b, i in runs)
                    in_runs += max(0, min(inside, last - first + 1) - explained)
        if self._runs:
            # a run that ended before every gap still open can hold none of them
            start = self._gaps[0][0] if self._gaps else self._last
            self._runs = [(b, i) for b, i in self._runs if i > start]
        forgiven = min(lost, self._unread)
        self._unread -= forgiven
        lost -= forgiven
        if lost:
            self.lost += lost
            self.last_in_other_runs = min(in_runs, lost)
            logger.warning("%d message(s) missing from the IOPub of %s", lost, self.url)
            for sub in list(self.subscriptions):
                if sub.on_lost is not None:
                    try:
                        sub.on_lost(lost)
                    except Exception:
                        logger.exception("A lost-message callback failed")


#: The feeds of each event loop, by (address, id of the zmq context or of None).
_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], Feed]] = (
    weakref.WeakKeyDictionary()
)


def subscribe(
    url: str,
    on_batch: OnBatch,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Subscription:
    """Subscribe ``on_batch`` to the IOPub at ``url``, sharing the socket with the other
    subscribers of the same address in this event loop."""
    loop = loop or asyncio.get_running_loop()
    feeds = _feeds.setdefault(loop, {})
    key = (url, id(context))
    feed = feeds.get(key)
    if feed is None:
        feed = feeds[key] = Feed(url, context, loop)
    return feed.add(on_batch)


#: The sockets on which kernelmon receives replies from a kernel, by loop and IOPub address:
#: read before a gap in that kernel's counter is settled (see ``Feed._on_timer``).
_reply_drains: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, weakref.WeakSet[SocketDrain]]
] = weakref.WeakKeyDictionary()


def add_reply_drain(info: dict[str, Any], drain: SocketDrain) -> None:
    """Say that ``drain`` receives replies of the kernel at ``info`` (forgotten when the
    drain is garbage; ``remove_reply_drain`` when it closes)."""
    by_url = _reply_drains.setdefault(drain.loop, {})
    by_url.setdefault(channel_url(info, "iopub"), weakref.WeakSet()).add(drain)


def remove_reply_drain(info: dict[str, Any], drain: SocketDrain) -> None:
    by_url = _reply_drains.get(drain.loop, {})
    url = channel_url(info, "iopub")
    drains = by_url.get(url)
    if drains is not None:
        drains.discard(drain)
        if not drains:
            del by_url[url]


def feed_for(url: str, loop: asyncio.AbstractEventLoop | None = None) -> Feed | None:
    """The feed of ``url`` (default context) in ``loop``, if anyone subscribes to it."""
    try:
        loop = loop or asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _feeds.get(loop, {}).get((url, id(None)))


def expect_unread(info: dict[str, Any], n: int) -> None:
    """Tell the IOPub feed of the kernel at ``info`` that ``n`` replies will go unread
    (``Feed.expect_unread``)."""
    feed = feed_for(channel_url(info, "iopub"))
    if feed is not None and n > 0:
        feed.expect_unread(n)


def note_reply(info: dict[str, Any], msg_id: str) -> None:
    """Tell the IOPub feed of the kernel at ``info`` about a reply kernelmon received."""
    feed = feed_for(channel_url(info, "iopub"))
    if feed is not None:
        feed.note_reply(msg_id)
