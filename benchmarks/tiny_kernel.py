"""A stand-in kernel that only speaks enough of the Jupyter protocol to be managed.

    python tiny_kernel.py -f CONNECTION_FILE [--emit-flag PATH] [--emit-interval S]

It binds shell, iopub, stdin, control and heartbeat as the connection file says, answers
``kernel_info_request`` (and ``shutdown_request``: reply, then exit) on shell and control
with signed messages, publishes ``status`` busy/idle around each request, and echoes
heartbeats. While the file ``--emit-flag`` exists it publishes one ``stream`` message every
``--emit-interval`` seconds. Any other request gets an error reply. It imports only pyzmq and
the standard library (about 20 MB RSS, most of it shared libraries), so that
``app_bench.py`` can watch 256 kernels on a small machine.
"""

from __future__ import annotations

import argparse
import datetime
import hmac
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

import zmq

DELIM = b"<IDS|MSG>"


class MiniSession:
    """The part of jupyter_client's ``Session`` this kernel needs (importing jupyter_client
    would cost ~14 MB per kernel): sign, send, receive and verify. Message ids have
    jupyter_client's form ``<session>_<pid>_<counter>``."""

    def __init__(self, key: bytes, scheme: str) -> None:
        self._auth = hmac.new(key, digestmod=scheme.split("-", 1)[1])
        self.session = str(uuid.uuid4())
        self._prefix = f"{self.session}_{os.getpid()}_"
        self._count = 0

    def _sign(self, parts: list[bytes]) -> bytes:
        h = self._auth.copy()
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def send(
        self,
        sock: zmq.Socket[bytes],
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None = None,
        ident: bytes | list[bytes] | None = None,
    ) -> None:
        header = {
            "msg_id": f"{self._prefix}{self._count}",
            "msg_type": msg_type,
            "username": "tiny",
            "session": self.session,
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
            "version": "5.3",
        }
        self._count += 1
        parts = [
            json.dumps(header).encode(),
            json.dumps((parent or {}).get("header", {})).encode(),
            b"{}",
            json.dumps(content).encode(),
        ]
        idents = [ident] if isinstance(ident, bytes) else list(ident or [])
        sock.send_multipart([*idents, DELIM, self._sign(parts), *parts])

    def recv(self, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]] | None:
        """(identities, message) of received frames, or None if malformed or unsigned."""
        try:
            i = frames.index(DELIM)
            sig, *parts = frames[i + 1 : i + 6]
            if len(parts) != 4 or not hmac.compare_digest(sig, self._sign(parts)):
                return None
            header, parent, _meta, content = (json.loads(p) for p in parts)
        except ValueError:
            return None
        return frames[:i], {"header": header, "parent_header": parent, "content": content}


def url(info: dict[str, Any], channel: str) -> str:
    transport = info.get("transport", "tcp")
    sep = ":" if transport == "tcp" else "-"
    return f"{transport}://{info['ip']}{sep}{info[channel + '_port']}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-f", dest="connection_file", required=True)
    parser.add_argument("--emit-flag", default="")
    parser.add_argument("--emit-interval", type=float, default=0.25)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts: nothing to interrupt
    with open(args.connection_file) as f:
        info = json.load(f)
    key = info.get("key", "")
    session = MiniSession(
        key.encode() if isinstance(key, str) else key,
        info.get("signature_scheme", "hmac-sha256"),
    )
    ctx = zmq.Context()
    shell = ctx.socket(zmq.ROUTER)
    control = ctx.socket(zmq.ROUTER)
    stdin = ctx.socket(zmq.ROUTER)
    iopub = ctx.socket(zmq.PUB)
    hb = ctx.socket(zmq.REP)
    for sock, name in (
        (shell, "shell"),
        (control, "control"),
        (stdin, "stdin"),
        (iopub, "iopub"),
        (hb, "hb"),
    ):
        sock.linger = 0
        sock.bind(url(info, name))
    poller = zmq.Poller()
    for sock in (shell, control, hb):
        poller.register(sock, zmq.POLLIN)

    def status(state: str, parent: dict[str, Any] | None) -> None:
        session.send(iopub, "status", {"execution_state": state}, parent=parent, ident=b"status")

    status("starting", None)
    next_emit = time.monotonic() + args.emit_interval
    count = 0
    running = True
    while running:
        timeout_ms = max(0, int((next_emit - time.monotonic()) * 1000)) if args.emit_flag else 1000
        for sock, _ in poller.poll(timeout_ms):
            if sock is hb:
                hb.send_multipart(hb.recv_multipart())
                continue
            received = session.recv(sock.recv_multipart())
            if received is None:
                continue  # bad signature or garbage: drop it, like a kernel would
            idents, msg = received
            msg_type = msg["header"]["msg_type"]
            status("busy", msg)
            if msg_type == "kernel_info_request":
                content: dict[str, Any] = {
                    "status": "ok",
                    "protocol_version": "5.3",
                    "implementation": "tiny",
                    "implementation_version": "0.1",
                    "language_info": {"name": "text", "version": "1", "file_extension": ".txt"},
                    "banner": "tiny stand-in kernel",
                    "help_links": [],
                }
                session.send(sock, "kernel_info_reply", content, parent=msg, ident=idents)
            elif msg_type == "shutdown_request":
                restart = bool(msg["content"].get("restart", False))
                reply = {"status": "ok", "restart": restart}
                session.send(sock, "shutdown_reply", reply, parent=msg, ident=idents)
                running = False
            else:
                reply_type = msg_type.replace("_request", "_reply")
                err = {"status": "error", "ename": "NotImplemented", "evalue": msg_type}
                session.send(sock, reply_type, err, parent=msg, ident=idents)
            status("idle", msg)
        if args.emit_flag and time.monotonic() >= next_emit:
            next_emit = time.monotonic() + args.emit_interval
            if os.path.exists(args.emit_flag):
                count += 1
                content = {"name": "stdout", "text": f"tick {count}\n"}
                session.send(iopub, "stream", content, ident=b"stream.stdout")
    time.sleep(0.05)  # let the last messages leave
    for sock in (shell, control, stdin, iopub, hb):
        sock.close(linger=100)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
