"""Frontends attached through the map, and offline buffering for those that left.

``Frontends`` owns nothing beyond each entry's connections and buffer (``Entry.connections``,
``Entry.buffered``, ``Entry.executing``): a frontend's request is activity (``last_activity``),
its connection counts in ``connections``, and the reply to kernelmon's last execute_request
means the kernel is idle even while its IOPub stream is behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .backends.base import Action
from .errors import KernelDead
from .events import OutputLost
from .protocol import iopub
from .protocol.buffering import MessageBuffer
from .protocol.channels import OnMessage, SessionChannels
from .protocol.connection import KernelConnection
from .protocol.wire import channel_url
from .records import ExecutionState
from .registry import Changing, Entry

if TYPE_CHECKING:
    from .servers.client import ServerClient
    from .servers.websocket import ServerKernelConnection, WebSocketTarget

logger = logging.getLogger(__name__)

#: How long connect() waits at most for a new frontend's iopub subscription to be live.
NUDGE_TIMEOUT = 2.0


def lost_text(n: int, in_other_runs: int = 0) -> str:
    """The sentence that tells a user about output lost on the way from the kernel.
    ``in_other_runs`` of the ``n`` messages were numbered while another client's code ran:
    those may instead have been input prompts the kernel sent to that client alone (nothing
    kernelmon sees tells them apart: ``iopub.Feed.last_in_other_runs``)."""
    what = f"{n:,} message{'' if n == 1 else 's'} of the kernel's output (each one or more lines)"
    dropped = (
        f"the kernel's IOPub socket dropped {'it' if n == 1 else 'them'} while kernelmon was behind"
    )
    prompts = "the kernel sent to that client alone (kernelmon cannot tell which)"
    if in_other_runs <= 0:
        return f"{what} never reached kernelmon: {dropped}."
    if in_other_runs >= n:
        return (
            f"{what} never reached kernelmon while another client's code ran: either {dropped}, "
            f"or {'it was an input prompt' if n == 1 else 'some were input prompts'} {prompts}."
        )
    return (
        f"{what} never reached kernelmon: {dropped}. {in_other_runs:,} of them were numbered "
        f"while another client's code ran and may instead be input prompts {prompts}."
    )


class FrontendsRegistry(Changing, Protocol):
    """What the frontends part reads of the registry."""

    def get(self, kernel_id: str) -> Entry: ...
    def on_forget(self, step: Callable[[str], None]) -> None: ...


class Frontends:
    """``connect``, connection counting and offline buffering of the map's kernels."""

    def __init__(self, registry: FrontendsRegistry) -> None:
        self._registry = registry
        #: For a server id, the client of that server (None: not known). Set by whoever
        #: knows the servers; the frontend of a server's kernel (its backend's
        #: ``server_id()``) then talks over the server's kernel websocket, with the
        #: client's token, headers and TLS setting (``servers.websocket``).
        self.server_client: Callable[[str], ServerClient | None] | None = None
        #: open websocket connections by kernel id (the server counts them itself)
        self._server_connections: dict[str, list[ServerKernelConnection]] = {}
        # a server's kernel leaves the map by several paths (its server removed, the kernel
        # gone from the server): each one closes its websockets
        registry.on_forget(self._close_server_connections)

    def notify_connect(self, kernel_id: str) -> None:
        """A frontend connected (counts in ``connections``)."""
        record = self._registry.get(kernel_id).record
        record.connections += 1
        self._registry.changed(record, {"connections"}, None)

    def notify_disconnect(self, kernel_id: str) -> None:
        """A frontend disconnected."""
        record = self._registry.get(kernel_id).record
        record.connections = max(0, record.connections - 1)
        self._registry.changed(record, {"connections"}, None)

    def _touch(self, kernel_id: str) -> None:
        """A frontend sent the kernel a request: that is activity."""
        entry = self._registry.find(kernel_id)
        if entry is not None:
            now = self._registry.now()
            entry.record.last_activity = now
            self._registry.changed(entry.record, {"last_activity"}, now)

    async def connect(
        self, kernel_id: str, session_key: str, on_message: OnMessage
    ) -> KernelConnection:
        """Attach a frontend. With the session key of a frontend that left while buffering
        was on, the buffered messages are delivered first, in order, then live ones; a
        different session key discards that buffer. A server's kernel is reached over its
        server's websocket, where the server buffers and replays (``_connect_server``)."""
        target = self.server_target(kernel_id)
        if target is not None:
            return await self._connect_server(kernel_id, target, session_key, on_message)
        entry = self._registry.get(kernel_id)
        refused = entry.backend.refusal(Action.CONNECT)
        if refused is not None:
            raise KernelDead(f"Kernel {kernel_id}: {refused}.")
        if not isinstance(session_key, str) or not session_key:
            raise ValueError("A frontend connection needs a non-empty session key.")
        channels: SessionChannels | None = None
        replayed = dropped = 0
        if entry.buffered is not None:
            if entry.buffered.session_key == session_key:
                channels, entry.buffered = entry.buffered, None
            else:
                self.discard_buffer(entry)
        if channels is None:
            channels = SessionChannels(
                entry.backend.connection_info, session_key, lambda: self._touch(kernel_id)
            )
            channels.on_request = lambda msg_type, msg_id: self._request_sent(
                entry, msg_type, msg_id
            )
            channels.on_reply = lambda msg_type, parent: self._reply_seen(entry, msg_type, parent)
            channels.on_lost = lambda n: self._output_lost(entry, channels, n)
            channels.on_quiet_tail = lambda: self._ask_for_status(entry)
            try:
                await self._nudge(entry, channels)
            except BaseException:
                channels.close()
                raise
        conn = KernelConnection(kernel_id, channels, self._close_connection)
        entry.connections.append(conn)
        self.notify_connect(kernel_id)
        channels.handler = on_message
        if channels.buffer is not None:
            dropped = channels.buffer.dropped
            replayed = channels.replay()
            channels.buffer = None
            self._buffer_changed(entry)
        conn.replayed, conn.dropped = replayed, dropped
        conn.lost, channels.lost_while_away = channels.lost_while_away, 0
        return conn

    def server_target(self, kernel_id: str) -> WebSocketTarget | None:
        """How to reach a server's kernel over its websocket (None: not a server's kernel,
        or its server is not known)."""
        entry = self._registry.find(kernel_id)
        server_id = entry.backend.server_id() if entry is not None else None
        client = self.server_client(server_id) if server_id and self.server_client else None
        if client is None:
            return None
        from .servers.websocket import WebSocketTarget

        return WebSocketTarget.of_client(client)

    async def _connect_server(
        self, kernel_id: str, target: WebSocketTarget, session_key: str, on_message: OnMessage
    ) -> KernelConnection:
        """A frontend of a server's kernel: the kernel websocket with ``session_key`` as its
        session id, so that the server replays what this session missed while away (the
        server keeps the buffer, and counts the connection in the kernel's model)."""
        from .servers.websocket import KernelWebSocket, ServerKernelConnection

        if not isinstance(session_key, str) or not session_key:
            raise ValueError("A frontend connection needs a non-empty session key.")
        socket = KernelWebSocket(target, kernel_id, session_key, on_message)
        conn = ServerKernelConnection(kernel_id, socket, self._close_server_connection)
        await conn.open()
        self._server_connections.setdefault(kernel_id, []).append(conn)
        return conn

    async def _close_server_connection(self, conn: ServerKernelConnection) -> None:
        conns = self._server_connections.get(conn.kernel_id, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self._server_connections.pop(conn.kernel_id, None)

    def _ask_for_status(self, entry: Entry) -> None:
        """Make the kernel publish something (kernelmon's probe asks for its info: busy and
        idle statuses, which are not activity), so that a loss at the end of a job shows as
        a gap in its message numbers."""
        probe = entry.backend.probe
        if probe is not None:
            probe.send_kernel_info()

    def _output_lost(self, entry: Entry, channels: SessionChannels, n: int) -> None:
        """``n`` of the kernel's IOPub messages never reached kernelmon: tell the frontend
        of ``channels`` (or keep the count for its return) and the event log."""
        conn = next((c for c in entry.connections if c.channels is channels), None)
        feed = iopub.feed_for(channel_url(entry.backend.connection_info, "iopub"))
        text = lost_text(n, feed.last_in_other_runs if feed is not None else 0)
        if conn is None:
            channels.lost_while_away += n
        else:
            conn.lost += n
            if conn.on_lost is not None:
                try:
                    conn.on_lost(n, text)
                except Exception:
                    logger.exception("A frontend's lost-output callback failed")
        self._registry.emit(
            OutputLost(entry.record.id, messages=n, session=channels.session_key, text=text)
        )

    async def _nudge(self, entry: Entry, channels: SessionChannels) -> None:
        """Wait until a new frontend's iopub subscription is live, so that nothing the kernel
        publishes after ``connect`` returns is lost (a SUB socket misses what is sent before
        its subscription reaches the kernel). kernelmon's probe asks kernel_info until the
        new socket sees a message; probe traffic is not activity. Gives up after
        ``NUDGE_TIMEOUT`` (a kernel busy with silent code answers late)."""
        probe = entry.backend.probe
        if probe is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NUDGE_TIMEOUT
        sent: list[asyncio.Future[dict[str, Any]]] = []
        live = asyncio.ensure_future(channels.iopub_live.wait())
        pause = 0.02
        try:
            while not live.done() and loop.time() < deadline:
                sent.append(probe.send_kernel_info())
                await asyncio.wait([live], timeout=min(pause, max(0.0, deadline - loop.time())))
                pause = min(pause * 2, 0.25)
        finally:
            live.cancel()
            for fut in sent:
                fut.cancel()
        if not channels.iopub_live.is_set():
            logger.debug("IOPub of kernel %s silent while connecting", entry.record.id)

    async def _close_connection(self, conn: KernelConnection) -> None:
        channels = conn.channels
        channels.handler = None
        entry = self._registry.find(conn.kernel_id)
        if entry is None or conn not in entry.connections:
            channels.close()
            return
        entry.connections.remove(conn)
        self.notify_disconnect(conn.kernel_id)
        same_session = any(c.session_key == conn.session_key for c in entry.connections)
        if self._registry.settings.buffer_offline_messages and not same_session:
            self._start_buffering(entry, channels)
        else:
            channels.close()

    def _request_sent(self, entry: Entry, msg_type: str, msg_id: str) -> None:
        if msg_type == "execute_request":
            entry.executing.add(msg_id)

    def _reply_seen(self, entry: Entry, msg_type: str, parent_id: str) -> None:
        """The reply to the last execute_request sent through kernelmon means the kernel is
        idle, even if its IOPub stream is still far behind (a flood)."""
        if msg_type != "execute_reply" or parent_id not in entry.executing:
            return
        entry.executing.discard(parent_id)
        watcher = entry.backend.watcher
        if watcher is not None:
            watcher.request_finished(parent_id)
        record = entry.record
        running = watcher is not None and watcher.running  # another client's request
        if not entry.executing and not running and record.execution_state == ExecutionState.BUSY:
            record.execution_state = ExecutionState.IDLE
            self._registry.changed(record, {"execution_state"}, None)

    def _start_buffering(self, entry: Entry, channels: SessionChannels) -> None:
        if entry.buffered is not None:
            self.discard_buffer(entry)
        s = self._registry.settings
        buffer = MessageBuffer(s.buffer_max_messages, s.buffer_max_bytes)
        channels.buffer = buffer
        channels.on_buffered = lambda: self._buffer_changed(entry)
        entry.buffered = channels
        self._buffer_changed(entry)

    def discard_buffer(self, entry: Entry) -> None:
        if entry.buffered is not None:
            entry.buffered.close()
            entry.buffered = None
            self._buffer_changed(entry)

    def close(self, entry: Entry) -> None:
        """Close every frontend's channels of a kernel leaving the map, and its buffer."""
        for conn in list(entry.connections):
            conn.closed = True
            conn.channels.close()
        entry.connections.clear()
        self.discard_buffer(entry)
        self._close_server_connections(entry.record.id)

    def _close_server_connections(self, kernel_id: str) -> None:
        for server_conn in self._server_connections.pop(kernel_id, []):
            task = asyncio.ensure_future(server_conn.close())
            task.add_done_callback(_log_close_failure)

    def settings_changed(self, entries: list[Entry]) -> None:
        """Apply new buffering settings to the buffers kept now."""
        settings = self._registry.settings
        for entry in entries:
            if entry.buffered is None or entry.buffered.buffer is None:
                continue
            if not settings.buffer_offline_messages:
                self.discard_buffer(entry)
            else:
                entry.buffered.buffer.set_caps(
                    settings.buffer_max_messages, settings.buffer_max_bytes
                )
                self._buffer_changed(entry)

    def _buffer_changed(self, entry: Entry) -> None:
        buf = entry.buffered.buffer if entry.buffered is not None else None
        record = entry.record
        buffered = len(buf) if buf is not None else 0
        dropped = buf.dropped if buf is not None else record.buffer_dropped
        if (buffered, dropped) != (record.buffered, record.buffer_dropped):
            record.buffered, record.buffer_dropped = buffered, dropped
            self._registry.changed(record, {"buffered", "buffer_dropped"}, None)


def _log_close_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Closing a server kernel's websocket failed: %s", task.exception())
