"""Serving the instance socket: ``InstanceServer`` answers each request line with an op."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any

from .lock import InstanceLock
from .protocol import (
    IDLE_TIMEOUT,
    MAX_LINE,
    MAX_SKIP,
    PROTOCOL_VERSION,
    Handler,
    InstanceError,
    OpError,
    error_reply,
)
from .sockets import peer_uid

logger = logging.getLogger(__name__)


class InstanceServer:
    """Serves the instance socket of an ``InstanceLock`` on the running asyncio loop.

    ``hello`` is built in; ``add_op(name, handler)`` adds an op: ``handler(request)``
    returns the reply's fields (``ok`` is added) or raises ``OpError``.
    """

    def __init__(self, lock: InstanceLock, version: str) -> None:
        self.lock = lock
        self.version = version
        self.started = time.time()
        self.ops: dict[str, Handler] = {"hello": self._hello}
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing = False

    def add_op(self, name: str, handler: Handler) -> None:
        self.ops[name] = handler

    async def _hello(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": self.version,
            "protocol": PROTOCOL_VERSION,
            "started": self.started,
            "ops": sorted(self.ops),
        }

    async def start(self) -> None:
        if self.lock.sock is None:
            raise InstanceError("The instance lock was released; there is nothing to serve.")
        self._server = await asyncio.start_unix_server(self._serve_client, sock=self.lock.sock)

    async def close(self) -> None:
        """Stop serving (open connections are closed) and release the lock."""
        self._closing = True  # a connection accepted but not yet served is hung up on
        if self._server is not None:
            self._server.close()
            self._server = None
        for _ in range(3):  # connections accepted a moment ago reach _serve_client
            await asyncio.sleep(0)
        for writer in list(self._clients.values()):
            writer.close()  # its reader sees the end of the stream: the task ends
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        self.lock.release()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients[task] = writer
        try:
            if self._closing:
                return
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                logger.warning("Refused a connection to the instance socket from uid %d", uid)
                await self._send(
                    writer, error_reply("refused", "This kernelmon serves its own user only.")
                )
                return
            await self._serve_lines(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_lines(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer each line in turn. A line longer than ``MAX_LINE`` gets an error and is
        skipped (after ``MAX_SKIP`` bytes of it, or ``IDLE_TIMEOUT`` of silence, the client
        is hung up on). asyncio's ``readline`` drops or keeps the rest of a line too long
        depending on whether its end has arrived yet, hence this small splitter."""
        too_long = error_reply("too-long", f"A request may be at most {MAX_LINE} bytes long.")
        buffer = bytearray()
        skipping = 0  # bytes of a line too long skipped so far; 0 when not skipping
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            except TimeoutError:
                return  # an idle client: hang up
            if not chunk:
                return
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if skipping:
                    if end < 0:
                        skipping += len(buffer)
                        buffer.clear()
                        if skipping > MAX_SKIP:
                            return
                        break
                    del buffer[: end + 1]
                    skipping = 0
                elif end < 0:
                    if len(buffer) > MAX_LINE:
                        await self._send(writer, too_long)
                        skipping = len(buffer)
                        buffer.clear()
                    break
                elif end > MAX_LINE:
                    await self._send(writer, too_long)
                    del buffer[: end + 1]
                else:
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    await self._send(writer, await self.handle_line(line))

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply).encode("utf-8") + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (never raises)."""
        try:
            message = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):
            return error_reply("bad-json", "The request is not a JSON object on one line.")
        if not isinstance(message, dict):
            return error_reply("bad-request", "The request must be a JSON object.")
        reply = await self._dispatch(message)
        request_id = message.get("id")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            reply["id"] = request_id
        return reply

    async def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        version = message.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION or isinstance(version, bool):
            return error_reply(
                "unsupported-version",
                f"This kernelmon speaks protocol version {PROTOCOL_VERSION}, not {version!r}.",
            )
        op = message.get("op")
        handler = self.ops.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(sorted(self.ops))
            return error_reply("unknown-op", f"Unknown op {op!r}; this kernelmon knows: {known}.")
        try:
            fields = await handler(message)
            reply = {"v": PROTOCOL_VERSION, "ok": True, **fields}
            json.dumps(reply)  # a handler's mistake must not break the connection
        except OpError as e:
            return error_reply(e.code, str(e))
        except Exception as e:
            logger.exception("The instance op %r failed", op)
            return error_reply("internal", f"The op {op!r} failed inside kernelmon: {e}")
        return reply
