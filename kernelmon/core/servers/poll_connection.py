"""The two polling GETs (``/api/kernels``, ``/api/sessions``) over one kept-alive HTTP/1.1
connection per server, written by hand on an ``asyncio.Protocol``.

Hand-written for speed, where aiohttp (which the client uses for everything else) costs too
much per request: a poll cycle of 10 servers x 100 kernels with idle servers (304s,
benchmarks/servers_bench.py) took 5.4 ms (asyncio) and 8.9 ms (qasync, the app's loop) of
loop time with aiohttp's client and nothing else, against 2.5 and 4.6 ms with a bare
keep-alive GET on a protocol, the goal being 5 ms for the whole poll. Under qasync every
future's wake-up is a Qt timer event and every socket read a socket-notifier event, so the
number of wake-ups per request counts as much as the Python run per request: here the
answer to the kernels listing writes the sessions request from ``data_received`` itself, and
the exchange calls back when it is over, never once per request (aiohttp wakes several per
request). Since then the connections moved off the map's loop to the poll thread's
(poll_thread.py), which the client hands a poll's exchanges (``fetch_listings``), or every
server's at once (``fetch_listings_of``), and which wakes the map's loop once when they ended.

Only the happy path is handled: ``200`` with a Content-Length and a JSON type, and ``304``,
over HTTP/1.1 kept alive. Anything else (another status, a redirect, chunked, Connection:
close, HTTP/1.0, gzip, a head that does not read plainly, a body over the limit, the
connection refused, reset or closed before the end) ends the exchange with the answers read
so far and closes the connection: the client then asks again through aiohttp, whose answer,
status and sentence are what the user sees (``ServerClient.fetch_listings``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

#: Longest response head read (a server's head is a few hundred bytes).
_MAX_HEAD = 64 * 1024
#: The headers whose value matters here; any of them twice is a surprise.
_WANTED = frozenset(
    {
        b"content-length",
        b"content-type",
        b"content-encoding",
        b"transfer-encoding",
        b"connection",
        b"etag",
    }
)


class Answer(NamedTuple):
    """One answer read on the happy path."""

    status: int
    etag: str
    content_type: str
    body: bytes


class PollConnection(asyncio.Protocol):
    """One connection: ``exchange(requests, done)`` writes the first request, and each
    request after an answer is read; then ``done()`` is called, from the loop's callback
    that read the last answer (no future: no wake-up of its own), and ``answers`` holds the
    answers read (all of them, or fewer when the exchange ended early: then the connection
    is closed)."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._done: Callable[[], None] | None = None
        self._requests: list[bytes] = []
        self.answers: list[Answer] = []
        #: the head of the answer being read, while its body is not all here
        self._head: tuple[int, str, str, int] | None = None
        self.closed = False
        #: the exchange ended by ``time_out``
        self.timed_out = False

    @property
    def usable(self) -> bool:
        """Open, with no exchange under way."""
        return not self.closed and self._done is None and self._transport is not None

    @property
    def busy(self) -> bool:
        """An exchange is under way."""
        return self._done is not None

    def exchange(self, requests: list[bytes], done: Callable[[], None]) -> None:
        assert self.usable
        assert self._transport is not None
        self._done = done
        self._requests = requests[1:]
        self.answers = []
        self.timed_out = False
        self._transport.write(requests[0])

    def time_out(self) -> None:
        """End the exchange under way (the poll's time is over)."""
        if self._done is not None:
            self.timed_out = True
            self._end()

    def close(self) -> None:
        self._end()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def eof_received(self) -> bool:
        self._end()
        return False

    def data_received(self, data: bytes) -> None:
        if self._done is None:  # nothing asked: a server talking out of turn
            self._end()
            return
        start = 0
        if self._head is not None:  # the rest of a body begun earlier (one read is usual)
            self._buffer += data  # (joined once it is all here: no copy per read)
            if len(self._buffer) < self._head[3]:
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            if self._buffer:  # the rest of a head begun earlier (at most _MAX_HEAD)
                self._buffer += data
                data = bytes(self._buffer)
                self._buffer.clear()
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    self._end()
                else:
                    self._buffer += data
                return
            self._head = _read_head(data[:end], self._max_body)
            if self._head is None:
                self._end()
                return
            start = end + 4
        status, etag, content_type, length = self._head
        if len(data) - start != length:
            if len(data) - start > length:  # more than the answer: nothing else was asked
                self._end()
            else:
                self._buffer += data[start:]
            return
        self.answers.append(Answer(status, etag, content_type, data[start:] if start else data))
        self._head = None
        if self._requests:
            assert self._transport is not None
            self._transport.write(self._requests.pop(0))
            return
        self._finish()

    # -- plumbing ---------------------------------------------------------------------------

    def _end(self) -> None:
        """Close the connection and hand over the answers read so far."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self._finish()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()


def _read_head(head: bytes, max_body: int) -> tuple[int, str, str, int] | None:
    """(status, ETag, Content-Type, body length) of an answer on the happy path, else None."""
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        return None  # a lone CR or LF (an ETag with one would be sent back in a request)
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version != b"HTTP/1.1" or not code.isdigit() or rest[3:4] not in (b" ", b""):
        return None
    status = int(code)
    if status not in (200, 304):
        return None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            return None  # not a plain "Name: value" (obs-fold, a space before the colon)
        name = name.lower()
        if name in _WANTED:
            if name in fields:
                return None
            fields[name] = value.strip(b" \t")
    if b"transfer-encoding" in fields or b"close" in fields.get(b"connection", b"").lower():
        return None
    if fields.get(b"content-encoding", b"identity").lower() != b"identity":
        return None
    try:
        etag = fields.get(b"etag", b"").decode("latin-1")
        content_type = fields.get(b"content-type", b"").decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes every byte)
        return None
    if status == 304:  # never a body (RFC 9110 15.4.5), whatever Content-Length says
        return status, etag, content_type, 0
    length = fields.get(b"content-length", b"")
    if not length.isdigit() or int(length) > max_body or "json" not in content_type.lower():
        return None
    return status, etag, content_type, int(length)
