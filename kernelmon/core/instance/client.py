"""Talking to the running instance: ``RunningInstance`` and the blocking ``request``."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..machine.process import create_time
from .protocol import (
    ANSWER_TIMEOUT,
    MAX_REPLY,
    PROTOCOL_VERSION,
    STARTUP_GRACE,
    InstanceError,
    NoAnswer,
)
from .sockets import SOCKET_NAME, check_socket_file, connect, peer_uid


@dataclass(frozen=True)
class RunningInstance:
    """Another process holds the instance lock: talk to it through its socket."""

    folder: Path
    pid: int | None
    #: The holder said it serves its socket (it is past its start-up).
    serving: bool = False

    @property
    def socket_path(self) -> Path:
        return self.folder / SOCKET_NAME

    def answer_timeout(self) -> float:
        """``ANSWER_TIMEOUT``, longer while the running instance is still starting up
        (until it serves, at most until it is ``STARTUP_GRACE`` seconds old)."""
        started = create_time(self.pid) if self.pid else None
        if started is None or self.serving:
            return ANSWER_TIMEOUT
        return max(ANSWER_TIMEOUT, STARTUP_GRACE - (time.time() - started))

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply (``ok`` true or false); ``NoAnswer`` if
        the instance does not answer within ``timeout`` (default ``answer_timeout()``)."""
        message = {"v": PROTOCOL_VERSION, "op": op, **fields}
        wait = self.answer_timeout() if timeout is None else timeout
        return request(self.socket_path, message, wait)


def request(path: Path, message: dict[str, Any], timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    """Send ``message`` to the instance socket at ``path`` and return its reply.

    Blocking, for command lines and for a launch before its event loop runs. Raises
    ``NoAnswer`` when nothing answers within ``timeout`` seconds and ``InstanceError``
    when the socket belongs to another user.
    """
    deadline = time.monotonic() + timeout
    sock: socket.socket | None = None
    while sock is None:
        check_socket_file(path)
        try:
            sock = connect(path, max(0.01, deadline - time.monotonic()))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            # the instance may be between taking the lock and listening
            if time.monotonic() >= deadline:
                raise NoAnswer(f"Nothing listens on {path} ({e.strerror}).") from e
            time.sleep(0.05)
        except OSError as e:
            raise NoAnswer(f"Could not connect to {path}: {e}.") from e
    with sock:
        uid = peer_uid(sock)
        if uid is not None and uid != os.getuid():
            raise InstanceError(f"The process listening on {path} runs as another user.")
        data = b""
        try:
            sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
            while not data.endswith(b"\n"):
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_REPLY:
                    raise InstanceError(f"The reply on {path} is longer than {MAX_REPLY} bytes.")
        except TimeoutError as e:
            raise NoAnswer(f"No answer on {path} within {timeout:g} s.") from e
        except OSError as e:
            raise NoAnswer(f"The connection to {path} failed: {e}.") from e
    try:
        reply = json.loads(data.decode("utf-8"))
    except ValueError as e:
        why = "it hung up without answering" if not data else "its answer is not JSON"
        raise NoAnswer(f"The instance on {path} did not answer properly: {why}.") from e
    if not isinstance(reply, dict):
        raise NoAnswer(f"The instance on {path} answered something that is not an object.")
    return reply
