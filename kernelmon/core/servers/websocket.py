"""A console's connection to a server's kernel over the kernel websocket.

``GET /api/kernels/<id>/channels?session_id=<session>`` upgraded to a websocket (aiohttp, with
the token and TLS settings of the server's ``ServerClient``). kernelmon asks for the subprotocol
``v1.kernel.websocket.jupyter.org`` (jupyter_server 2: one binary frame per message, the
message's parts as the kernel sent them); a server that does not select it (jupyter_server 1,
Enterprise Gateway 3, gateways' proxies) speaks the legacy protocol: one JSON text frame per
message with a ``channel`` key (a binary frame when the message has buffers).

Messages are built by ``jupyter_client.session.Session`` without a key: the server signs what
it passes on to the kernel with the kernel's key, which never leaves the server. The session
id is the console's own and stays the same while the app runs, so that a server buffering
the kernel's output while no client is connected (jupyter_server's ``buffer_offline_messages``)
replays what the console missed when it connects again.

Opened only while a console is open: each open websocket counts in the kernel's
``connections`` on the server (see docs/servers.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from yarl import URL

from ..protocol.connection import KernelConnection
from .model import plain_kernel_id, short_repr
from .status import ServerError, ServerStatus, clean
from .ws_frames import pack_v1, unpack_legacy_binary, unpack_v1

if TYPE_CHECKING:
    from .client import ServerClient

logger = logging.getLogger(__name__)

SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
#: Largest message read (a plot or a big table; jupyter_server's own limit is 10 MiB by default).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: How long ``open`` waits for the end of the server's replay of buffered messages [s].
REPLAY_WAIT = 3.0
#: How long opening a websocket may take at least [s].
OPEN_TIMEOUT = 30.0
CHANNELS = ("shell", "control", "stdin", "iopub")

OnMessage = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class WebSocketTarget:
    """Where and how to reach a server: its base URL, the headers of its requests (the
    token's ``Authorization`` among them) and its TLS setting."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl: bool | ssl.SSLContext = True
    timeout: float = 10.0

    @classmethod
    def of_client(cls, client: ServerClient) -> WebSocketTarget:
        """The same server, token, headers and TLS setting as ``client``'s requests."""
        # the client keeps these private (they hold the token); this module is its sibling
        return cls(client.url, dict(client._headers), client._ssl, client.timeout)


# -- the websocket ------------------------------------------------------------------------


class KernelWebSocket:
    """One websocket to one kernel of a server, for one session.

    ``on_message(channel, msg)`` gets each message (dicts as ``Session.deserialize`` makes
    them); ``on_closed(sentence)`` is called once if the websocket closes without ``close``
    (the server went away, the kernel was shut down)."""

    def __init__(
        self,
        target: WebSocketTarget,
        kernel_id: str,
        session_id: str,
        on_message: OnMessage | None = None,
    ) -> None:
        self.target = target
        self.kernel_id = kernel_id
        self.session = Session(key=b"unused", session=session_id, username="kernelmon")
        # no key: the server signs what it passes on (the kernel's key stays on the server)
        # and sends the parts of the kernel's messages without their signature. Made without
        # one at first, Session logs "Message signing is disabled" at every console opened.
        self.session.key = b""
        self.on_message = on_message
        self.on_closed: Callable[[str], None] | None = None
        #: "v1" or "legacy" once open
        self.protocol = ""
        self.closed = False
        #: messages that could not be read (skipped)
        self.bad_messages = 0
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @property
    def session_id(self) -> str:
        return str(self.session.session)

    @property
    def url(self) -> URL:
        """The kernel's ``channels`` URL; ``ServerError`` for an id that is not a plain kernel
        id (one with ``../`` would take the token to another path of the same host)."""
        if not plain_kernel_id(self.kernel_id):
            raise ServerError(
                ServerStatus.NOT_FOUND,
                f"{short_repr(self.kernel_id)} is not a kernel id; no websocket is opened to it.",
            )
        base = URL(self.target.url)
        return base.join(URL(f"api/kernels/{self.kernel_id}/channels")).with_query(
            session_id=self.session_id
        )

    def failure(self, kind: ServerStatus, what: str) -> ServerError:
        return ServerError(kind, f"The server at {self.target.url} {what}.")

    async def open(self) -> None:
        """Connect; raises ``ServerError`` saying why not (token refused, no such kernel,
        unreachable, TLS, timeout)."""
        url = self.url  # refuses an id that is not a kernel's before anything is sent
        http = aiohttp.ClientSession(headers=dict(self.target.headers))
        try:
            # a server answers the upgrade once the kernel answered its kernel_info_request
            # (a kernel still starting takes a while): more time than a plain request
            async with asyncio.timeout(max(self.target.timeout, OPEN_TIMEOUT)):
                ws = await http.ws_connect(
                    url,
                    protocols=(SUBPROTOCOL,),
                    ssl=self.target.ssl,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                    max_msg_size=MAX_MESSAGE_BYTES,
                    heartbeat=30.0,
                )
        except BaseException as error:
            await http.close()
            if isinstance(error, Exception):
                raise self._open_failure(error) from None
            raise
        self._http, self._ws = http, ws
        self.protocol = "v1" if ws.protocol == SUBPROTOCOL else "legacy"
        self._reader = asyncio.ensure_future(self._read(ws))
        logger.debug(
            "Websocket to kernel %s at %s open (%s protocol)",
            self.kernel_id,
            self.target.url,
            self.protocol,
        )

    def _open_failure(self, error: Exception) -> ServerError:
        kid = self.kernel_id
        if isinstance(error, aiohttp.WSServerHandshakeError):
            if error.status in (401, 403):
                return self.failure(
                    ServerStatus.AUTH_REFUSED,
                    f"refused the console's websocket (HTTP {error.status}); check the token "
                    "and headers",
                )
            if error.status == 404:
                return self.failure(ServerStatus.NOT_FOUND, f"has no kernel {kid}")
            if 300 <= error.status < 400:
                return self.failure(ServerStatus.AUTH_REFUSED, "redirected the websocket (login?)")
            if error.status == 200 or error.status == 0:
                return self.failure(ServerStatus.BAD_ANSWER, "does not offer kernel websockets")
            return self.failure(
                ServerStatus.REFUSED,
                f"refused the websocket to kernel {kid} (HTTP {error.status}: "
                f"{clean(error.message or '', 120)})",
            )
        if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
            return self.failure(
                ServerStatus.TLS_PROBLEM, f"failed the TLS check ({clean(str(error))})"
            )
        if isinstance(error, TimeoutError):
            return self.failure(ServerStatus.TIMEOUT, "did not open the websocket in time")
        if isinstance(error, aiohttp.ClientConnectorError):
            return self.failure(
                ServerStatus.UNREACHABLE, f"cannot be reached ({clean(str(error.os_error))})"
            )
        return self.failure(
            ServerStatus.UNREACHABLE,
            f"dropped the websocket before it opened ({type(error).__name__})",
        )

    def send(self, channel: str, msg_type: str, content: dict[str, Any] | None = None) -> str:
        """Send a request on ``shell``, ``control`` or ``stdin``; returns its msg_id."""
        ws = self._ws
        if self.closed or ws is None or ws.closed:
            raise RuntimeError("The websocket to the kernel is closed; open the console again.")
        if channel not in ("shell", "control", "stdin"):
            raise ValueError(f"{channel!r} is not a channel a request is sent on")
        msg = self.session.msg(msg_type, content or {})
        if self.protocol == "v1":
            pack = self.session.pack
            parts = [pack(msg["header"]), pack({}), pack(msg["metadata"]), pack(msg["content"])]
            task = ws.send_bytes(pack_v1(channel, parts))
        else:
            msg["channel"] = channel
            task = ws.send_str(json.dumps(msg, default=json_default))
        # aiohttp's send only queues the frame in the transport: nothing to wait for
        asyncio.ensure_future(task).add_done_callback(_log_send_failure)
        return str(msg["header"]["msg_id"])

    def ask(
        self, channel: str, msg_type: str, content: dict[str, Any] | None = None
    ) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Send a request; returns its msg_id and a future of its reply (cancelled if the
        websocket closes first; cancel it to stop waiting)."""
        msg_id = self.send(channel, msg_type, content)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = fut
        fut.add_done_callback(lambda _f: self._replies.pop(msg_id, None))
        return msg_id, fut

    async def request(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Send a request and wait for its reply (``TimeoutError`` after ``timeout``)."""
        _msg_id, fut = self.ask(channel, msg_type, content)
        return await asyncio.wait_for(fut, timeout)

    def _decode(self, frame: aiohttp.WSMessage) -> tuple[str, dict[str, Any]]:
        if frame.type == aiohttp.WSMsgType.BINARY and self.protocol == "v1":
            channel, parts = unpack_v1(frame.data)
            if len(parts) < 4:
                raise ValueError("a v1 frame with fewer than four parts")
            msg = self.session.deserialize([b"", *parts], content=True, copy=True)
            return channel, msg
        if frame.type == aiohttp.WSMsgType.BINARY:
            msg = unpack_legacy_binary(frame.data)
        else:
            msg = json.loads(frame.data)
        if not isinstance(msg, dict) or not isinstance(msg.get("header"), dict):
            raise ValueError("a message without a header")
        channel = msg.pop("channel", None)
        msg.setdefault("parent_header", {})
        msg.setdefault("content", {})
        msg.setdefault("metadata", {})
        msg.setdefault("buffers", [])
        msg["msg_type"] = msg["header"].get("msg_type")
        msg["msg_id"] = msg["header"].get("msg_id")
        return str(channel or "iopub"), msg

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = "closed the websocket"
        try:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    if frame.type == aiohttp.WSMsgType.ERROR:
                        reason = f"broke the websocket ({clean(str(ws.exception()), 120)})"
                    break
                try:
                    channel, msg = self._decode(frame)
                except Exception as error:  # a malformed message costs only itself
                    self.bad_messages += 1
                    logger.debug("Skipped a malformed websocket message: %s", error)
                    continue
                self._deliver(channel, msg)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            reason = f"broke the websocket ({type(error).__name__}: {clean(str(error), 120)})"
        if not self.closed:
            if ws.close_code not in (None, 1000):
                reason += f" (code {ws.close_code})"
            await self._shut()
            if self.on_closed is not None:
                try:
                    self.on_closed(
                        f"The server at {self.target.url} {reason}: the console is no longer "
                        "connected to the kernel; open it again to reconnect."
                    )
                except Exception:
                    logger.exception("A websocket's close callback failed")

    def _deliver(self, channel: str, msg: dict[str, Any]) -> None:
        parent = msg.get("parent_header") or {}
        fut = self._replies.get(str(parent.get("msg_id", ""))) if channel != "iopub" else None
        if fut is not None and not fut.done():
            fut.set_result(msg)
        if self.on_message is not None:
            try:
                self.on_message(channel, msg)
            except Exception:
                logger.exception("A console's message handler failed")

    async def _shut(self) -> None:
        self.closed = True
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()
        ws, self._ws = self._ws, None
        http, self._http = self._http, None
        try:
            if ws is not None and not ws.closed:
                await ws.close()
        except Exception as error:  # closing a broken websocket
            logger.debug("Closing a websocket: %s", error)
        finally:
            if http is not None:
                await http.close()

    async def close(self) -> None:
        """Close the websocket (the server then buffers the kernel's output for this session,
        if it buffers)."""
        if self.closed:
            return
        self.closed = True
        reader = self._reader
        await self._shut()
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


def _log_send_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("A websocket send failed: %s", task.exception())


class ServerKernelConnection(KernelConnection):
    """What ``KernelMap.connect`` hands a console for a server's kernel: the interface of
    ``KernelConnection`` (``execute``, ``send``, ``close``, ``replayed``, ``on_lost``...) over
    a ``KernelWebSocket``. ``replayed`` counts the messages the server replayed from its
    buffer when the websocket opened (``dropped`` stays 0: the server does not say); a
    websocket that closes by itself is told through ``on_lost(0, sentence)``."""

    def __init__(
        self,
        kernel_id: str,
        socket: KernelWebSocket,
        closer: Callable[[ServerKernelConnection], Awaitable[None]],
    ) -> None:
        # not KernelConnection.__init__: there are no ZeroMQ channels behind this one
        self.kernel_id = kernel_id
        self.socket = socket
        self.replayed = 0
        self.dropped = 0
        self.lost = 0
        self.closed = False
        self.on_lost: Callable[[int, str], None] | None = None
        self._server_closer = closer
        self._closing = False
        socket.on_closed = self._on_socket_closed

    @property
    def session_key(self) -> str:
        return self.socket.session_id

    @property
    def protocol(self) -> str:
        return self.socket.protocol

    def send(self, channel: str, msg_type: str, content: dict[str, Any] | None = None) -> str:
        if self.closed:
            raise RuntimeError("This connection is closed; connect again to send messages.")
        return self.socket.send(channel, msg_type, content)

    async def request(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any] | None = None,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """Send a request and wait for its reply (e.g. ``usage_request`` on ``control``)."""
        if self.closed:
            raise RuntimeError("This connection is closed; connect again to send messages.")
        return await self.socket.request(channel, msg_type, content, timeout)

    async def open(self) -> None:
        """Open the websocket, and count the messages the server replays from its buffer:
        it writes them all before it reads anything from the client, so every message
        that comes before the reply to a ``kernel_info_request`` sent at once on the control
        channel (answered even while the kernel runs code) is a replayed one."""
        on_message = self.socket.on_message
        seen = 0

        def counting(channel: str, msg: dict[str, Any]) -> None:
            nonlocal seen
            # statuses are not output (a console shows none of them)
            if msg.get("msg_type") != "status" and channel == "iopub":
                seen += 1
            if on_message is not None:
                on_message(channel, msg)

        self.socket.on_message = counting
        try:
            await self.socket.open()
            _marker, fut = self.socket.ask("control", "kernel_info_request")
            await asyncio.wait({fut}, timeout=REPLAY_WAIT)  # no answer yet: counted so far
            fut.cancel()
            if self.socket.closed:
                raise self.socket.failure(
                    ServerStatus.UNREACHABLE, "closed the websocket as soon as it opened"
                )
        except BaseException:
            await self.socket.close()
            raise
        finally:
            self.socket.on_message = on_message
        self.replayed = seen

    def _on_socket_closed(self, sentence: str) -> None:
        self.closed = True
        if self.on_lost is not None:
            try:
                self.on_lost(0, sentence)
            except Exception:
                logger.exception("A frontend's lost-output callback failed")

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = self.closed = True
        await self.socket.close()
        await self._server_closer(self)
