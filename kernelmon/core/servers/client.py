"""An HTTP client for one Jupyter Server or Enterprise Gateway, on the running loop.

aiohttp, one session per client, one request at a time per server (a lock: a poll never
overtakes an action, and a slow server is never asked twice at once). Every failure becomes
a ``ServerError`` whose ``kind`` is a ``ServerStatus`` and whose text is one sentence for
the user; nothing else (no traceback, no aiohttp exception) leaves this module.

What it sends is in docs/servers.md: every GET carries ``?no_track_activity=1`` (jupyter_server's
API handlers then leave the server's ``api_last_activity`` alone, which JupyterHub's idle
culler reads); no websocket is opened to watch, no ``usage_request`` is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

import aiohttp
from yarl import URL

from kernelmon import __version__
from kernelmon.core.periodic import settle
from kernelmon.core.servers.config import credentials_refusal, header_name_ok, sendable
from kernelmon.core.servers.model import (
    KernelSpecs,
    Listing,
    Memo,
    NotJSON,
    RemoteKernel,
    RemoteSession,
    parse_kernel,
    parse_kernelspecs,
    plain_kernel_id,
    read_kernels,
    read_sessions,
    short_repr,
)
from kernelmon.core.servers.poll_connection import Answer, PollConnection
from kernelmon.core.servers.poll_thread import poll_thread
from kernelmon.core.servers.status import (
    REQUEST_ERRORS,
    ServerError,
    ServerStatus,
    clean,
    server_message,
)

logger = logging.getLogger(__name__)

#: Largest answer read from a server (100 kernels take ~20 KB; more is not a kernel list).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
T = TypeVar("T")
_QUIET = {"no_track_activity": "1"}
#: The listings a poll asks for over the poll connection, in this order.
_POLLED = ("api/kernels", "api/sessions")
#: how each polled listing's answer is read
_READERS: dict[str, Callable[[bytes | None, Memo], Listing[Any]]] = {
    "api/kernels": read_kernels,
    "api/sessions": read_sessions,
}


class ServerKind(StrEnum):
    JUPYTER_SERVER = "jupyter_server"
    ENTERPRISE_GATEWAY = "enterprise_gateway"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    kind: ServerKind
    #: jupyter_server's version (an Enterprise Gateway reports the one it is built on)
    version: str | None
    gateway_version: str | None = None


class ServerClient:
    """Talks to the server at ``url`` (its base URL, e.g. ``http://host:8888/`` or
    ``https://hub/user/ann/``). Use it on one running loop; ``await close()`` at the end."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        verify_tls: bool | ssl.SSLContext = True,
        timeout: float = 10.0,
    ) -> None:
        refusal = credentials_refusal(url)
        if refusal is not None:  # before any sentence repeats the address
            raise ValueError(refusal)
        try:
            base = URL(url)
            base.port  # noqa: B018 (yarl checks the port only when asked)
        except (ValueError, TypeError):
            raise ValueError(f"{url!r} is not an http:// or https:// address of a server") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"{url!r} is not an http:// or https:// address of a server")
        if base.query_string or base.fragment:
            raise ValueError(f"{url!r} has a query or fragment; give the server's base address")
        if not timeout > 0:
            raise ValueError(f"the timeout must be a positive number of seconds, not {timeout!r}")
        self.url = str(base.with_path(base.path.rstrip("/") + "/"))
        self._base = URL(self.url)
        self._headers = {}
        for name, value in (headers or {}).items():
            if not header_name_ok(name) or not sendable(value):
                raise ValueError(f"the header {name!r} is not a usable HTTP header")
            if value:  # no value: one the token store could not give back; not sent
                self._headers[name] = value
        if token:
            if not sendable(token):
                raise ValueError("the token has a line break or control character in it")
            self._headers["Authorization"] = f"token {token}"
        self._ssl: bool | ssl.SSLContext = verify_tls
        self.timeout = float(timeout)
        self.kind: ServerKind | None = None
        self.status = ServerStatus.REACHABLE
        self.error: str | None = None
        #: when ``status`` last changed (UTC)
        self.status_since = datetime.now(UTC)
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        #: path -> (ETag, parsed answer) of the last listings; the ETag of the last answer
        self._kept: dict[str, tuple[str, object]] = {}
        self._etag = ""
        #: listing path -> why entries of its last answer were skipped (sentences)
        self.skipped: dict[str, tuple[str, ...]] = {}
        #: the entries of the last listings, not read again when sent as they were
        self._memos = {"api/kernels": Memo(), "api/sessions": Memo()}
        #: path -> (an answer's body, what the poll thread read of it) (``_read``)
        self._read_ahead: dict[str, tuple[bytes, Listing[Any] | Exception]] = {}
        #: the polls' kept-alive connection (``fetch_listings``), and what it answered:
        #: path -> (the ETag sent, the answer, or ``_TIMED_OUT``)
        self._poll: PollConnection | None = None
        self._fetched: dict[str, tuple[str, Answer | object]] = {}
        self._poll_requests: dict[str, bytes] = {}
        self._poll_tls: ssl.SSLContext | None = None
        #: connections opened for polls, and listings answered over them (tests, benchmarks)
        self.poll_connections = 0
        self.polled_answers = 0

    @property
    def headers(self) -> dict[str, str]:
        """The headers every request carries (the token's ``Authorization`` among them):
        what another connection to the same server (a kernel's websocket) sends too."""
        return dict(self._headers)

    @property
    def verify_tls(self) -> bool | ssl.SSLContext:
        return self._ssl

    # -- the API ------------------------------------------------------------------------

    async def identify(self) -> ServerInfo:
        """``GET /api``: a Jupyter Server answers its version; an Enterprise Gateway adds
        ``gateway_version`` (and wants the token even there)."""
        data = await self._json("GET", "api")
        if not isinstance(data, dict) or not isinstance(data.get("version", ""), str):
            raise self._fail(
                ServerStatus.BAD_ANSWER,
                "answered GET /api with something that is not a Jupyter server's version",
            )
        gateway = data.get("gateway_version")
        info = ServerInfo(
            kind=ServerKind.ENTERPRISE_GATEWAY if gateway else ServerKind.JUPYTER_SERVER,
            version=data.get("version") or None,
            gateway_version=str(gateway) if gateway else None,
        )
        self.kind = info.kind
        return info

    async def check(self) -> ServerInfo:
        """ "Test the connection": identify the server, then prove the token with a listing
        (a Jupyter Server's ``GET /api`` wants no token). A gateway that forbids listing
        passes (its ``GET /api`` checked the token); ``status`` then says why kernelmon
        sees only the kernels it started there."""
        info = await self.identify()
        try:
            await self.list_kernels()
        except ServerError as error:
            if error.kind != ServerStatus.LISTING_FORBIDDEN:
                raise
        return info

    async def list_kernels(self) -> Listing[RemoteKernel]:
        """``GET /api/kernels``; on a gateway without EG_LIST_KERNELS: LISTING_FORBIDDEN."""
        await self._identified()
        listing = await self._kept_get(
            "api/kernels", lambda raw: self._read("api/kernels", raw), listing=True, raw=True
        )
        return self._note_skipped("api/kernels", listing)

    async def get_kernel(self, kernel_id: str) -> RemoteKernel:
        return self._parsed(parse_kernel, await self._json("GET", self._kpath(kernel_id)))

    async def list_sessions(self) -> Listing[RemoteSession]:
        """``GET /api/sessions`` (an Enterprise Gateway answers too, with the sessions made
        on it: usually none, since its clients keep their sessions themselves)."""
        listing = await self._kept_get(
            "api/sessions", lambda raw: self._read("api/sessions", raw), raw=True
        )
        return self._note_skipped("api/sessions", listing)

    async def kernelspecs(self) -> KernelSpecs:
        return await self._kept_get("api/kernelspecs", parse_kernelspecs)

    async def start_kernel(
        self,
        name: str,
        path: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> RemoteKernel:
        """``POST /api/kernels``; ``path`` is the kernel's folder under the server's root,
        ``env`` goes to a gateway (which passes on only ``KERNEL_*`` and its allowed names,
        and takes ``KERNEL_ID`` as the new kernel's id). The server answers once the kernel
        is launched (a gateway on a cluster: its launch timeout): give it a ``timeout`` as
        long as a kernel may take to start."""
        await self._identified()
        body: dict[str, Any] = {"name": name}
        if path is not None:
            body["path"] = path
        if env:
            body["env"] = dict(env)
        try:
            data = await self._json("POST", "api/kernels", body=body, timeout=timeout)
        except ServerError as error:
            # jupyter_server answers an unknown kernel spec with a bare 500 ("Unhandled
            # error"), EG with a traceback: the server's list of specs says it plainly
            if error.http_status != 500:
                raise
            specs = await self.kernelspecs()
            names = sorted(spec.name for spec in specs.specs.items)
            if name in names:
                raise
            raise ServerError(
                ServerStatus.NOT_FOUND,
                f"The server at {self.url} has no kernel spec {name!r} "
                f"(it has: {', '.join(names) or 'none'}).",
                error.http_status,
            ) from None
        return self._parsed(parse_kernel, data)

    async def interrupt(self, kernel_id: str) -> None:
        await self._json("POST", self._kpath(kernel_id, "interrupt"))

    async def restart(self, kernel_id: str, timeout: float | None = None) -> RemoteKernel:
        """Answers once the restarted kernel replied to ``kernel_info`` (jupyter_server
        waits for it): give it a timeout as long as a kernel may take to start."""
        data = await self._json("POST", self._kpath(kernel_id, "restart"), timeout=timeout)
        return self._parsed(parse_kernel, data)

    async def shutdown(self, kernel_id: str) -> None:
        await self._json("DELETE", self._kpath(kernel_id))

    async def fetch_listings(self) -> None:
        """Ask for both listings at once over the poll connection (kept alive from poll to
        poll; see poll_connection.py); the next ``list_kernels()`` and ``list_sessions()``
        read these answers instead of asking. Never raises: what the poll connection does
        not answer plainly is asked again through aiohttp by those calls, which say what
        went wrong. A server that did not answer within the timeout is not asked again
        (``list_kernels`` then raises the timeout). Only once the server is identified.
        ``fetch_listings_of`` does this for several servers at once."""
        self._fetched = {}
        if self._closed or self.kind is None:
            return
        async with self._lock:
            etag = self._kept[_POLLED[0]][0] if _POLLED[0] in self._kept else ""
            try:
                connection = None if self._closed else await self._poll_connection()
            except TimeoutError:  # (as aiohttp's connection would: not asked twice)
                self._fetched[_POLLED[0]] = (etag, _TIMED_OUT)
                return
            if connection is None:
                return
            etags, requests = self._poll_requests_now()
            batch = [(connection, requests, self.timeout, self._read_ahead_of)]
            await poll_thread().run(_exchanges(batch))
            self._end_fetch(connection, etags)

    def _read(self, path: str, raw: bytes | None) -> Listing[Any]:
        """A listing's answer read into models (``read_kernels``, ``read_sessions``): what
        the poll thread read of that very answer already (``_read_ahead``), else read now."""
        ahead = self._read_ahead.pop(path, None)
        if ahead is not None and ahead[0] is raw:
            if isinstance(ahead[1], Exception):
                raise ahead[1]
            return ahead[1]
        return _READERS[path](raw, self._memos[path])

    def _read_ahead_of(self, connection: PollConnection) -> None:
        """On the poll thread, once an exchange ended: read its listings' answers into
        models there, for ``_read`` (the map's loop then only applies them). The client's
        lock is held by the fetch meanwhile: nothing on the map's loop reads the memos."""
        self._read_ahead = {}
        for path, answer in zip(_POLLED, connection.answers, strict=False):
            if answer.status == 200:
                try:
                    self._read_ahead[path] = (
                        answer.body,
                        _READERS[path](answer.body, self._memos[path]),
                    )
                except ValueError as error:  # (NotJSON too): raised by ``_read``
                    self._read_ahead[path] = (answer.body, error)

    def _poll_requests_now(self) -> tuple[list[str], list[bytes]]:
        """A poll exchange's requests, and the ETags they send."""
        etags = [self._kept[p][0] if p in self._kept else "" for p in _POLLED]
        return etags, [self._poll_request(p, e) for p, e in zip(_POLLED, etags, strict=True)]

    def _end_fetch(self, connection: PollConnection, etags: list[str]) -> None:
        """Keep what the exchange fetched, for the listings' calls."""
        answers = connection.answers
        for path, etag, answer in zip(_POLLED, etags, answers, strict=False):
            self._fetched[path] = (etag, answer)
        self.polled_answers += len(answers)
        if connection.timed_out and not answers:
            self._fetched[_POLLED[0]] = (etags[0], _TIMED_OUT)

    def poll_ready(self) -> bool:
        """Whether a poll can begin with its exchange now: the server identified, its poll
        connection open and idle, no request of the client under way."""
        poll = self._poll
        return (
            not self._closed
            and self.kind is not None
            and poll is not None
            and poll.usable
            and not self._lock.locked()
        )

    def fetched_all(self) -> bool:
        """Whether ``fetch_listings`` got an answer (or a timeout) for both listings: reading
        them then asks nothing more of the server."""
        return all(path in self._fetched for path in _POLLED) or (
            self._fetched.get(_POLLED[0], ("", None))[1] is _TIMED_OUT
        )

    def forget_fetched(self) -> None:
        """Drop what ``fetch_listings`` fetched and was not read (a poll that ended early)."""
        self._fetched = {}
        self._read_ahead = {}

    async def close(self) -> None:
        self._closed = True
        self._fetched = {}
        _close_on_its_thread(self._poll)
        self._poll = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- plumbing -----------------------------------------------------------------------

    def _note_skipped(self, path: str, listing: Listing[T]) -> Listing[T]:
        """Keep (``skipped``) and log the entries of a listing that were not used, saying how
        many and why; logged once until what is skipped changes (the server is polled every
        few seconds)."""
        if listing.skipped != self.skipped.get(path, ()):
            if listing.skipped:
                logger.warning(
                    "The server at %s sent %d unusable entr%s in GET /%s: %s",
                    self.url,
                    len(listing.skipped),
                    "y" if len(listing.skipped) == 1 else "ies",
                    path,
                    "; ".join(listing.skipped),
                )
            self.skipped[path] = listing.skipped
        return listing

    async def _identified(self) -> None:
        # a 403 means "token refused" from a Jupyter Server and "not allowed" from a gateway
        if self.kind is None:
            await self.identify()

    def _kpath(self, kernel_id: str, action: str = "") -> str:
        if not plain_kernel_id(kernel_id):
            raise ServerError(ServerStatus.NOT_FOUND, f"{short_repr(kernel_id)} is not a kernel id")
        return f"api/kernels/{kernel_id}" + (f"/{action}" if action else "")

    async def _kept_get(
        self,
        path: str,
        parse: Callable[[Any], T],
        *,
        listing: bool = False,
        raw: bool = False,
    ) -> T:
        """A GET whose parsed answer is kept with the server's ETag: the next GET sends
        ``If-None-Match``, and when the server answers 304 (tornado does for an unchanged
        answer) the kept result is returned with nothing read or parsed again. ``raw``:
        ``parse`` gets the answer's bytes (None: no body), not its JSON."""
        kept = self._kept.get(path)
        etag = kept[0] if kept else None
        data = await self._json("GET", path, listing=listing, etag=etag, raw=raw)
        if data is _UNCHANGED and kept is not None:
            return cast(T, kept[1])
        result = self._parsed(parse, data, f"GET /{path}")
        if self._etag:  # the answer just read (nothing ran on the loop in between)
            self._kept[path] = (self._etag, result)
        else:
            self._kept.pop(path, None)
        return result

    def _parsed(self, parse: Callable[[Any], T], data: object, what: str = "") -> T:
        try:
            return parse(data)
        except NotJSON:
            raise self._fail(
                ServerStatus.BAD_ANSWER, f"answered {what} with JSON that does not parse"
            ) from None
        except ValueError as error:
            raise self._fail(ServerStatus.BAD_ANSWER, f"sent a bad answer: {error}") from None

    def _fail(self, kind: ServerStatus, what: str, http_status: int | None = None) -> ServerError:
        error = ServerError(kind, f"The server at {self.url} {what}.", http_status)
        if kind in REQUEST_ERRORS:  # the server answered: it is reachable
            self._set_status(ServerStatus.REACHABLE, None)
        else:
            self._set_status(kind, error.sentence)
        return error

    def _set_status(self, status: ServerStatus, error: str | None) -> None:
        if status != self.status:
            self.status_since = datetime.now(UTC)
        self.status = status
        self.error = error

    def _session_here(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=1, ssl=self._ssl),
            )
        return self._session

    async def _json(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
        listing: bool = False,
        etag: str | None = None,
        raw: bool = False,
    ) -> Any:
        """The answer's JSON (``raw``: its bytes, or None when it has none), ``_UNCHANGED``
        for a 304 to ``etag``; a ``ServerError`` for everything else."""
        async with self._lock:
            if self._closed:
                raise ServerError(ServerStatus.CLOSED, f"The client for {self.url} is closed.")
            fetched = self._fetched.pop(path, None) if method == "GET" else None
            try:
                if fetched is not None and fetched[0] == (etag or ""):
                    status, headers, content = self._fetched_answer(fetched[1])
                else:
                    status, headers, content = await self._send(method, path, body, timeout, etag)
            except (aiohttp.ClientError, TimeoutError, OSError, _TooLarge) as error:
                raise self._transport_failure(error, timeout) from None
            self._etag = headers["etag"] if status == 200 else ""
            if status == 304 and etag:
                data: Any = _UNCHANGED
            else:
                data = self._answer(method, path, status, headers, content, listing, undecoded=raw)
            self._set_status(ServerStatus.REACHABLE, None)
            return data

    def _fetched_answer(self, answer: object) -> tuple[int, dict[str, str], bytes]:
        """What the poll connection read for a request, as ``_send`` gives it."""
        if answer is _TIMED_OUT:
            raise TimeoutError
        assert isinstance(answer, Answer)
        headers = {"type": answer.content_type, "location": "", "etag": answer.etag}
        return answer.status, headers, answer.body

    async def _poll_connection(self) -> PollConnection | None:
        """The poll connection, opened when it is not (None: it cannot be: aiohttp then
        asks, and says why); TimeoutError when the server did not let it open in time."""
        if self._poll is not None and self._poll.usable:
            return self._poll
        _close_on_its_thread(self._poll)
        self._poll = None
        tls: ssl.SSLContext | None = None
        if self._base.scheme == "https":
            tls = self._tls_context()
        host, port = self._base.raw_host or "", self._base.port or 0
        connection = await poll_thread().run(
            _open_poll(host, port, tls, self.timeout), discard=_close_on_its_thread
        )
        if connection is None:
            return None
        if self._closed:  # closed while it opened
            _close_on_its_thread(connection)
            return None
        self._poll = connection
        self.poll_connections += 1
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS checks aiohttp makes for ``verify_tls``: the user's context, the system's
        default verification, or none."""
        if isinstance(self._ssl, ssl.SSLContext):
            return self._ssl
        if self._poll_tls is None:
            self._poll_tls = ssl.create_default_context()
            if not self._ssl:
                self._poll_tls.check_hostname = False
                self._poll_tls.verify_mode = ssl.CERT_NONE
        return self._poll_tls

    def _poll_request(self, path: str, etag: str) -> bytes:
        """The GET of ``path`` with the client's headers, as bytes (``If-None-Match`` with
        ``etag`` when there is one)."""
        request = self._poll_requests.get(path)
        if request is None:
            url = self._base.join(URL(path)).with_query(_QUIET)
            host = url.raw_host or ""
            host = f"[{host}]" if ":" in host else host
            if not url.is_default_port():
                host = f"{host}:{url.port}"
            own = {"Host": host, "Accept": "*/*", "User-Agent": f"kernelmon/{__version__}"}
            given = {name.lower() for name in self._headers}  # (the user's win, as in aiohttp)
            lines = [f"GET {url.raw_path_qs} HTTP/1.1"]
            lines += [
                f"{name}: {value}" for name, value in own.items() if name.lower() not in given
            ]
            lines += [f"{name}: {value}" for name, value in self._headers.items()]
            request = ("\r\n".join(lines) + "\r\n").encode()
            self._poll_requests[path] = request
        if etag:
            return request + f"If-None-Match: {etag}\r\n\r\n".encode()
        return request + b"\r\n"

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        timeout: float | None,
        etag: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        session = self._session_here()
        url = self._base.join(URL(path))
        async with session.request(
            method,
            url,
            params=_QUIET if method == "GET" else None,
            json=body,
            headers={"If-None-Match": etag} if etag else None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
        ) as response:
            raw = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise _TooLarge
            headers = {
                "type": response.headers.get("Content-Type", ""),
                "location": response.headers.get("Location", ""),
                "etag": response.headers.get("ETag", ""),
            }
            return response.status, headers, bytes(raw)

    def _transport_failure(self, error: BaseException, timeout: float | None) -> ServerError:
        if isinstance(error, _TooLarge):
            return self._fail(
                ServerStatus.BAD_ANSWER, f"sent an answer over {MAX_ANSWER_BYTES} bytes"
            )
        if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
            return self._fail(
                ServerStatus.TLS_PROBLEM,
                f"failed the TLS check ({clean(str(error), 160)})",
            )
        if isinstance(error, TimeoutError):
            seconds = timeout or self.timeout
            return self._fail(ServerStatus.TIMEOUT, f"did not answer within {seconds:g} s")
        if isinstance(error, aiohttp.ClientConnectorError):
            return self._fail(
                ServerStatus.UNREACHABLE, f"cannot be reached ({clean(str(error.os_error))})"
            )
        if isinstance(error, aiohttp.ClientResponseError):
            return self._fail(ServerStatus.BAD_ANSWER, "did not answer in HTTP")
        return self._fail(
            ServerStatus.UNREACHABLE,
            f"dropped the connection before answering ({type(error).__name__})",
        )

    def _answer(
        self,
        method: str,
        path: str,
        status: int,
        headers: dict[str, str],
        raw: bytes,
        listing: bool,
        undecoded: bool = False,
    ) -> Any:
        what = f"{method} /{path}"
        ctype = headers["type"]
        if status in (401, 403) or (300 <= status < 400 and "login" in headers["location"]):
            said = server_message(raw)
            if status == 403 and listing and self.kind == ServerKind.ENTERPRISE_GATEWAY:
                raise self._fail(
                    ServerStatus.LISTING_FORBIDDEN,
                    "does not let clients list its kernels (the gateway needs "
                    "EG_LIST_KERNELS=True); kernelmon sees only the kernels it started there",
                    status,
                )
            if status == 403 and self.kind == ServerKind.ENTERPRISE_GATEWAY:
                # an EG refuses a bad token with 401; its 403 is about this request
                raise self._fail(ServerStatus.REFUSED, f"refused {what}: {said}", status)
            raise self._fail(
                ServerStatus.AUTH_REFUSED,
                f"refused the token (HTTP {status} on {what}); check the token and headers",
                status,
            )
        if status == 404:
            said = server_message(raw) or "not found"
            if path in ("api", "api/kernels", "api/sessions", "api/kernelspecs"):
                raise self._fail(
                    ServerStatus.BAD_ANSWER, f"has no Jupyter API at /{path} (HTTP 404)", status
                )
            raise self._fail(ServerStatus.NOT_FOUND, f"does not know that: {said}", status)
        if 300 <= status < 400:
            raise self._fail(ServerStatus.BAD_ANSWER, f"redirected {what} (HTTP {status})")
        if status >= 400:
            said = server_message(raw) or f"HTTP {status}"
            raise self._fail(ServerStatus.REFUSED, f"failed {what} (HTTP {status}): {said}", status)
        if status == 204 or not raw:
            return None
        if "json" not in ctype.lower():
            kind = "an HTML page" if b"<html" in raw[:2048].lower() else f"{ctype or 'no type'}"
            raise self._fail(ServerStatus.BAD_ANSWER, f"answered {what} with {kind}, not JSON")
        if undecoded:
            return raw
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise self._fail(
                ServerStatus.BAD_ANSWER, f"answered {what} with JSON that does not parse"
            ) from None


#: what ``_json`` returns for 304 Not Modified
_UNCHANGED = object()
#: what the poll connection fetched when the server did not answer in time
_TIMED_OUT = object()


async def fetch_listings_of(clients: list[ServerClient]) -> set[int]:
    """``fetch_listings()`` of the clients whose poll connection is open and free, all at
    once: their exchanges are handed to the poll thread together, and the loop is woken once,
    when all of them are answered (or time out), not once per server (under qasync each
    wake-up is a Qt event). Returns the ``id()`` of the clients it fetched for; the others (a
    connection to open, a request of theirs under way) are not waited for: they fetch on their
    own (``ServerWatch.poll_once``), so that none of them holds the others' answers back."""
    begun: list[tuple[ServerClient, PollConnection, list[str], list[bytes]]] = []
    for client in clients:
        connection = client._poll
        if connection is not None and client.poll_ready():
            client._fetched = {}
            await client._lock.acquire()  # free: taken at once
            begun.append((client, connection, *client._poll_requests_now()))
    ended = False
    try:
        if begun:
            batch = [
                (connection, requests, c.timeout, c._read_ahead_of)
                for c, connection, _, requests in begun
            ]
            await poll_thread().run(_exchanges(batch))
        ended = True
    finally:
        for client, connection, etags, _ in begun:
            if ended:  # (cancelled: the poll thread closed what was left half done)
                client._end_fetch(connection, etags)
            client._lock.release()
    return {id(client) for client, *_ in begun}


def _close_on_its_thread(connection: PollConnection | None) -> None:
    """Close a poll connection (if any) on the poll thread, where it lives."""
    if connection is not None:
        poll_thread().call(connection.close)


async def _open_poll(
    host: str, port: int, tls: ssl.SSLContext | None, timeout: float
) -> PollConnection | None:
    """On the poll thread: a poll connection to ``host:port`` (None: it cannot be opened;
    TimeoutError when it was not let open within ``timeout``)."""
    within = asyncio.timeout(timeout)
    try:
        async with within:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: PollConnection(MAX_ANSWER_BYTES), host, port, ssl=tls
            )
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        if within.expired():  # (a TLS handshake cut short says so in its own words)
            raise TimeoutError from None
        return None
    return connection


#: one exchange for ``_exchanges``: the connection, its requests, its timeout, and what to do
#: on the poll thread once it ended
Exchange = tuple[PollConnection, list[bytes], float, Callable[[PollConnection], None]]


async def _exchanges(batch: Sequence[Exchange]) -> None:
    """On the poll thread: each connection's exchange of its requests, each with its own
    timeout, then ``after(connection)`` of each; returns once all of them ended. A
    connection closed since it was found open answers nothing; cancelled, the exchanges
    under way are closed (left half done)."""
    loop = asyncio.get_running_loop()
    everyone = loop.create_future()
    left = len(batch)

    def one_done() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            settle(everyone)

    timers = []
    try:
        for connection, requests, timeout, _ in batch:
            if connection.usable:
                connection.exchange(requests, one_done)
                timers.append(loop.call_later(timeout, connection.time_out))
            else:
                connection.answers = []
                one_done()
        await everyone
    finally:
        for timer in timers:
            timer.cancel()
        for connection, *_ in batch:
            if connection.busy:
                connection.close()
    for connection, _, _, after in batch:
        try:
            after(connection)
        except Exception:  # a bug must not lose the other servers' answers: read on the loop
            logger.exception("Reading a poll's answers on the poll thread failed")


class _TooLarge(Exception):
    pass
