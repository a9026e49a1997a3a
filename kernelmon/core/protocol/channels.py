"""Sockets that talk to a kernel: kernelmon's own probe, and frontend sessions.

``Probe`` sends ``kernel_info_request`` on the shell channel from a session of its own, so
the IOPub messages it causes can be told apart from a user's (see ``activity``).

``heartbeat`` pings a kernel's heartbeat channel (liveness of a kernel whose process is
not known).

``SessionChannels`` are the four sockets (shell, control, stdin, iopub) of one frontend
session. While a frontend is attached its messages go to it; while it is away (and
buffering is on) they are kept in a bounded ``MessageBuffer`` and replayed when a frontend
with the same session key comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from jupyter_client.session import Session

from . import iopub
from .buffering import MessageBuffer
from .wire import (
    DELIM,
    Signer,
    SocketDrain,
    channel_url,
    parse_header,
    split_frames,
)

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, dict[str, Any]], None]

#: Sockets per channel: (zmq type, whether messages may be sent on it).
CHANNELS = {"shell": zmq.DEALER, "control": zmq.DEALER, "stdin": zmq.DEALER, "iopub": zmq.SUB}
#: At most this many unanswered requests are remembered per request channel.
_UNANSWERED_MEMORY = 1024


def make_session(connection_info: dict[str, Any], session_id: str | None = None) -> Session:
    key = connection_info.get("key", b"")
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not key:
        raise ValueError("kernelmon never talks to kernels without a signing key")
    kwargs: dict[str, Any] = {
        "key": key,
        "signature_scheme": connection_info.get("signature_scheme", "hmac-sha256"),
        "username": "kernelmon",
    }
    if session_id is not None:
        kwargs["session"] = session_id
    return Session(**kwargs)


def _socket(info: dict[str, Any], channel: str, identity: bytes) -> zmq.Socket[bytes]:
    """A DEALER socket of ``identity`` connected to one of the kernel's channels."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(CHANNELS[channel])
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(channel_url(info, channel))
    return sock


class RequestChannel:
    """A DEALER socket on one channel (shell or control) from a session of kernelmon's own,
    with each reply matched to its request."""

    def __init__(self, connection_info: dict[str, Any], channel: str, session_id: str) -> None:
        self.session = make_session(connection_info, session_id=session_id)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: Requests sent and not answered yet, cancelled or not (see ``close``).
        self._unanswered: dict[str, None] = {}
        self._info = connection_info
        identity = f"{session_id}-{channel}".encode()
        self._drain = SocketDrain(_socket(connection_info, channel, identity), self._on_batch)
        iopub.add_reply_drain(connection_info, self._drain)

    @property
    def session_id(self) -> str:
        return str(self.session.session)

    def send(
        self, msg_type: str, content: dict[str, Any] | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the future resolves with the reply message."""
        msg = self.session.send(self._drain.socket, msg_type, content or {})
        assert msg is not None
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        msg_id = msg["header"]["msg_id"]
        self._pending[msg_id] = fut
        self._unanswered[msg_id] = None
        if len(self._unanswered) > _UNANSWERED_MEMORY:  # a kernel that never answers
            del self._unanswered[next(iter(self._unanswered))]
        fut.add_done_callback(lambda _f: self._pending.pop(msg_id, None))
        self._drain.poke()  # a send can consume the socket's read edge
        return fut

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        for frames in batch:
            try:
                _idents, parts = self.session.feed_identities(frames, copy=True)
                msg = self.session.deserialize(parts, content=True, copy=True)
            except Exception as e:
                logger.debug("Dropped a malformed reply: %s", e)
                continue
            iopub.note_reply(self._info, str(msg["header"].get("msg_id", "")))
            self._unanswered.pop(msg["parent_header"].get("msg_id", ""), None)
            fut = self._pending.get(msg["parent_header"].get("msg_id", ""))
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def close(self) -> None:
        # Replies already here are read (their numbers are not missing from IOPub); those
        # still on their way never will be: the IOPub feed must not count them as lost.
        try:
            self._drain.read_now()
        except Exception:
            logger.exception("Reading the last replies before closing failed")
        iopub.expect_unread(self._info, len(self._unanswered))
        self._unanswered.clear()
        for fut in list(self._pending.values()):
            fut.cancel()
        self._pending.clear()
        iopub.remove_reply_drain(self._info, self._drain)
        self._drain.close()


class Probe(RequestChannel):
    """kernelmon's own shell connection, for ``kernel_info_request`` health checks."""

    def __init__(self, connection_info: dict[str, Any]) -> None:
        super().__init__(connection_info, "shell", f"kernelmon-probe-{uuid.uuid4()}")

    def send_kernel_info(self) -> asyncio.Future[dict[str, Any]]:
        """Send a ``kernel_info_request``; the future resolves with the reply message."""
        return self.send("kernel_info_request")


_decode_json = json.JSONDecoder().decode


def _parent_number(frames: list[bytes]) -> tuple[bytes, int] | None:
    """The message number of a reply's parent (the request it answers), if it has one."""
    try:
        return iopub.message_number(frames[frames.index(DELIM) + 3])
    except (ValueError, IndexError):
        return None


class StreamDecoder:
    """``wire.decode_message`` for the messages of one session, in order, at about half the
    cost (this runs for every message a frontend gets, so it is hand-written for speed):
    JSON is decoded from ``str`` (no encoding detection: the wire is UTF-8), an empty
    metadata object is not parsed, and the parent header, the same for every message of a
    request, is parsed once and copied (so a handler may still change its own). The
    signature check and the header are shared with the activity watcher, which read the same
    frames first (``Signer.verify``, ``wire.parse_header``)."""

    __slots__ = ("_parent", "_parent_raw", "_signer")

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._parent_raw = b""
        self._parent: dict[str, Any] = {}

    def __call__(self, frames: Sequence[bytes]) -> dict[str, Any] | None:
        parts = split_frames(frames)
        if parts is None or not self._signer.verify(parts[0], parts[1:5]):
            return None
        try:
            header = parse_header(parts[1])
            raw_parent = parts[2]
            if raw_parent == self._parent_raw:
                parent = self._parent.copy()
            else:
                parent = _decode_json(raw_parent.decode())
                if type(parent) is not dict:
                    return None
                self._parent_raw, self._parent = bytes(raw_parent), parent.copy()
            metadata = {} if parts[3] == b"{}" else _decode_json(parts[3].decode())
            content = _decode_json(parts[4].decode())
        except (ValueError, RecursionError):
            return None
        # message_dict's checks and shape, written out (this runs for every message); JSON
        # objects decode to plain dicts, so ``type(...) is dict`` is ``isinstance``.
        if type(header) is not dict or type(metadata) is not dict or type(content) is not dict:
            return None
        msg_id, msg_type = header.get("msg_id"), header.get("msg_type")
        if type(msg_id) is not str or type(msg_type) is not str:
            return None
        return {
            "header": header.copy(),  # shared with the watcher: the handler gets its own
            "msg_id": msg_id,
            "msg_type": msg_type,
            "parent_header": parent,
            "metadata": metadata,
            "content": content,
            "buffers": [memoryview(b) for b in parts[5:]] if len(parts) > 5 else [],
        }


class SessionChannels:
    """The shell, control, stdin and iopub sockets of one frontend session.

    Messages go to ``handler`` when one is attached; otherwise into ``buffer`` if there is
    one; otherwise nowhere.
    """

    def __init__(
        self,
        connection_info: dict[str, Any],
        session_key: str,
        on_activity: Callable[[], None],
    ) -> None:
        self.session_key = session_key
        self._info = connection_info
        self.session = make_session(connection_info, session_id=session_key)
        self._decode = StreamDecoder(Signer(self.session.key, self.session.signature_scheme))
        self.handler: OnMessage | None = None
        self.buffer: MessageBuffer | None = None
        self.bad_messages = 0
        #: Called after messages were added to ``buffer``.
        self.on_buffered: Callable[[], None] | None = None
        #: Called with (msg_type, msg_id) of every request sent, and (msg_type, parent msg_id)
        #: of every shell reply delivered.
        self.on_request: Callable[[str, str], None] | None = None
        self.on_reply: Callable[[str, str], None] | None = None
        #: Set once the iopub socket received anything: its subscription is live.
        self.iopub_live = asyncio.Event()
        self._on_activity = on_activity
        #: Called with the number of the kernel's messages found missing from IOPub (the
        #: kernel's PUB socket dropped them; see ``iopub``).
        self.on_lost: Callable[[int], None] | None = None
        #: Called when IOPub stays silent after an execute_reply (see ``_check_tail``).
        self.on_quiet_tail: Callable[[], None] | None = None
        #: Messages found missing while no frontend of this session was attached.
        self.lost_while_away = 0
        #: Numbers of the shell and control requests not answered yet (see ``close``).
        self._unanswered: dict[tuple[bytes, int], None] = {}
        identity = f"{session_key}-{uuid.uuid4().hex[:8]}".encode()
        self._drains: dict[str, SocketDrain] = {}
        for channel in CHANNELS:
            if channel == "iopub":
                continue
            sock = _socket(connection_info, channel, identity)
            self._drains[channel] = drain = SocketDrain(sock, self._batch_handler(channel))
            iopub.add_reply_drain(connection_info, drain)
        # IOPub: the kernel's one subscriber in kernelmon, shared with the activity watcher.
        self._iopub = iopub.subscribe(
            channel_url(connection_info, "iopub"), self._batch_handler("iopub")
        )
        self._iopub.on_lost = self._on_lost
        if self._iopub.live:
            self.iopub_live.set()

    def _check_tail(self, reply_id: str) -> None:
        """IOPub has carried nothing after an execute_reply for a while: its end (the final
        idle) may have been dropped, which only a later message would show."""
        feed = self._iopub.feed
        if not self._iopub.closed and not feed.passed(reply_id) and self.on_quiet_tail:
            self.on_quiet_tail()

    def _on_lost(self, n: int) -> None:
        if self.on_lost is not None:
            self.on_lost(n)

    def _batch_handler(self, channel: str) -> Callable[[list[list[bytes]]], None]:
        def on_batch(batch: list[list[bytes]]) -> None:
            if channel == "iopub":
                self.iopub_live.set()
            elif not self._iopub.closed:
                feed = self._iopub.feed
                for frames in batch:
                    feed.note_frames(frames)
                # Only shell and control replies answer requests: an input_request on stdin
                # has the execute_request for parent, whose reply is still to come.
                if self._unanswered and channel != "stdin":
                    for frames in batch:
                        number = _parent_number(frames)
                        if number is not None:
                            self._unanswered.pop(number, None)
                if channel == "shell":
                    # What the kernel published before its replies goes out first.
                    feed.read_now()
            if self.handler is None:
                if self.buffer is not None:
                    for frames in batch:
                        self.buffer.append(channel, frames)
                    if self.on_buffered is not None:
                        self.on_buffered()
                return
            for frames in batch:
                self.deliver(channel, frames)

        return on_batch

    def deliver(self, channel: str, frames: list[bytes] | tuple[bytes, ...]) -> None:
        """Deserialize (verifying the signature) and pass one message to the handler."""
        handler = self.handler
        if handler is None:
            return
        msg = self._decode(frames)
        if msg is None:
            self.bad_messages += 1
            logger.debug("Dropped a malformed or badly signed %s message", channel)
            return
        if channel == "shell":
            msg_type = msg["header"].get("msg_type", "")
            if self.on_reply is not None:
                self.on_reply(msg_type, msg["parent_header"].get("msg_id", ""))
            if msg_type == "execute_reply" and self.on_quiet_tail is not None:
                asyncio.get_running_loop().call_later(
                    iopub.GRACE, self._check_tail, str(msg["header"].get("msg_id", ""))
                )
        try:
            handler(channel, msg)
        except Exception:
            logger.exception("A frontend's message handler failed on a %s message", channel)

    def replay(self) -> int:
        """Deliver every buffered message to the handler, oldest first; returns how many."""
        if self.buffer is None:
            return 0
        n = 0
        for channel, frames in self.buffer.drain():
            self.deliver(channel, frames)
            n += 1
        return n

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        if channel not in CHANNELS or CHANNELS[channel] != zmq.DEALER:
            raise ValueError(f"Messages cannot be sent on the {channel!r} channel")
        drain = self._drains[channel]
        msg = self.session.send(drain.socket, msg_type, content or {}, metadata=metadata)
        assert msg is not None
        drain.poke()
        self._on_activity()
        msg_id = str(msg["header"]["msg_id"])
        if channel != "stdin":  # shell and control requests get one reply each
            number = iopub.id_number(msg_id)
            if number is not None:
                self._unanswered[number] = None
                if len(self._unanswered) > _UNANSWERED_MEMORY:
                    del self._unanswered[next(iter(self._unanswered))]
        if self.on_request is not None:
            self.on_request(msg_type, msg_id)
        return msg_id

    def close(self) -> None:
        # the replies to this session's unanswered requests will reach nobody: not a loss
        iopub.expect_unread(self._info, len(self._unanswered))
        self._unanswered.clear()
        for drain in self._drains.values():
            iopub.remove_reply_drain(self._info, drain)
            drain.close()
        self._drains.clear()
        self._iopub.close()
        if self.buffer is not None:
            self.buffer.clear()
        self.handler = None


#: Seconds to wait for a heartbeat echo.
HEARTBEAT_TIMEOUT = 1.0


async def heartbeat(info: dict[str, Any], timeout: float = HEARTBEAT_TIMEOUT) -> bool:
    """Whether the kernel echoes a ping on its heartbeat channel within ``timeout``."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(channel_url(info, "hb"))
    loop = asyncio.get_running_loop()
    echoed: asyncio.Future[None] = loop.create_future()
    payload = uuid.uuid4().bytes

    def on_batch(batch: list[list[bytes]]) -> None:
        if any(frames and frames[0] == payload for frames in batch) and not echoed.done():
            echoed.set_result(None)

    drain = SocketDrain(sock, on_batch)
    try:
        sock.send(payload)
        drain.poke()
        await asyncio.wait_for(echoed, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        drain.close()


#: How often an unanswered kernel_info_request is sent again while waiting.
PROBE_RESEND = 2.0
#: How often the wait for an answer checks whether the kernel is gone.
PROCESS_CHECK = 0.05


async def wait_for_answer(
    probe: Callable[[], Probe | None],
    timeout: float,
    gone: Callable[[], str | None],
    on_timeout: Callable[[], Exception],
    on_exit: Callable[[str], Exception],
) -> dict[str, Any]:
    """The ``kernel_info_reply`` to kernelmon's probe (``probe()``; the request is sent
    again every ``PROBE_RESEND`` seconds), racing the kernel: ``gone()`` says why waiting
    is over (its process exited, it was shut down; None while it runs), checked every
    ``PROCESS_CHECK`` seconds. Raises ``on_exit(why)`` or, after ``timeout``,
    ``on_timeout()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending: list[asyncio.Future[dict[str, Any]]] = []
    sent_at = float("-inf")
    try:
        while True:
            now = loop.time()
            why = gone()
            if why is not None:
                raise on_exit(why)
            if now >= deadline:
                raise on_timeout()
            if now - sent_at >= PROBE_RESEND:
                current = probe()
                if current is None:
                    raise on_exit("its connection was closed")
                pending.append(current.send_kernel_info())
                sent_at = now
            done, _ = await asyncio.wait(
                pending,
                timeout=min(PROCESS_CHECK, max(deadline - now, 0)),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for fut in done:
                if not fut.cancelled() and fut.exception() is None:
                    return fut.result()
    finally:
        for fut in pending:
            fut.cancel()
