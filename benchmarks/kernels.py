"""What every contender shares: a frontend's shell socket, the bare kernel, the raw watcher.

``ShellClient`` is the benchmark's own frontend: one DEALER socket of its own session that
sends ``execute_request`` / ``kernel_info_request`` and waits for the reply. Every contender
uses it the same way, so its (small) cost is the same for all of them. It never reads IOPub:
only the watcher under test does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session

DELIM = b"<IDS|MSG>"


def channel_url(info: dict[str, Any], channel: str) -> str:
    transport = info.get("transport", "tcp")
    sep = ":" if transport == "tcp" else "-"
    return f"{transport}://{info['ip']}{sep}{info[channel + '_port']}"


def _key(info: dict[str, Any]) -> bytes:
    key = info.get("key", b"")
    return key.encode() if isinstance(key, str) else key


class ShellClient:
    """A frontend's shell (or control) DEALER socket with a session of its own.

    A plain zmq socket, polled every ``POLL`` s while a reply is awaited (no reader on the
    loop: its cost and its wake-ups are the same under every loop and every manager).
    """

    POLL = 0.005

    def __init__(self, info: dict[str, Any], channel: str = "shell") -> None:
        self.session = Session(
            key=_key(info),
            signature_scheme=info.get("signature_scheme", "hmac-sha256"),
            session=f"bench-{uuid.uuid4()}",
            username="bench",
        )
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.sock.connect(channel_url(info, channel))
        self.replies: dict[str, dict[str, Any]] = {}

    def send(self, msg_type: str, content: dict[str, Any] | None = None) -> str:
        msg = self.session.send(self.sock, msg_type, content or {})
        assert msg is not None
        return str(msg["header"]["msg_id"])

    def poll(self) -> None:
        """Read whatever replies arrived (without waiting)."""
        while self.sock.poll(0):
            frames = self.sock.recv_multipart(zmq.NOBLOCK)
            _ids, parts = self.session.feed_identities(frames)
            msg = self.session.deserialize(parts)
            self.replies[msg["parent_header"].get("msg_id", "")] = msg

    async def reply(self, msg_id: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.poll()
            if msg_id in self.replies:
                return self.replies.pop(msg_id)
            if loop.time() > deadline:
                raise TimeoutError(f"no reply within {timeout:g} s")
            await asyncio.sleep(self.POLL)

    async def kernel_info(
        self, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
    ) -> dict[str, Any]:
        """Send kernel_info_request (again every 2 s, as kernelmon's probe does) until a
        reply comes; fail early if ``proc`` exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ids: list[str] = []
        sent = float("-inf")
        while loop.time() < deadline:
            if loop.time() - sent >= 2.0:
                ids.append(self.send("kernel_info_request"))
                sent = loop.time()
            self.poll()
            for msg_id in ids:
                if msg_id in self.replies:
                    return self.replies.pop(msg_id)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"kernel exited with {proc.returncode}")
            await asyncio.sleep(self.POLL)
        raise TimeoutError("no kernel_info_reply")

    def execute_request(self, code: str, user_expressions: dict[str, str] | None = None) -> str:
        return self.send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": user_expressions or {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    async def execute(
        self, code: str, timeout: float = 60.0, user_expressions: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return await self.reply(self.execute_request(code, user_expressions), timeout)

    def close(self) -> None:
        self.sock.close(linger=0)


class BareKernel:
    """An ipykernel we launch ourselves (``python -m ipykernel_launcher -f connfile``)."""

    def __init__(self, runtime_dir: str, cwd: str, transport: str = "ipc") -> None:
        self.cwd = cwd
        self.transport = transport
        self.connection_file = os.path.join(runtime_dir, f"kernel-bare-{uuid.uuid4()}.json")
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def launch(self) -> None:
        if not self.info:
            ip = "127.0.0.1"
            if self.transport == "ipc":
                ip = os.path.splitext(self.connection_file)[0] + "-ipc"
            _fname, cfg = write_connection_file(
                self.connection_file,
                ip=ip,
                key=uuid.uuid4().hex.encode(),
                transport=self.transport,
            )
            self.info = dict(cfg)
        env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file],
            cwd=self.cwd,
            env=env,
            start_new_session=True,
        )

    async def start(self, timeout: float = 30.0) -> None:
        """Launch and wait for the kernel_info_reply."""
        self.launch()
        shell = ShellClient(self.info)
        try:
            await shell.kernel_info(timeout, self.proc)
        finally:
            shell.close()

    async def shutdown(self, timeout: float = 10.0) -> None:
        """shutdown_request on control, then wait for the process to exit (kill if late)."""
        if self.proc is None:
            return
        control = ShellClient(self.info, "control")
        try:
            control.send("shutdown_request", {"restart": False})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self.proc.poll() is None and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        finally:
            control.close()
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        """Kill the process if needed; remove the connection file and IPC socket files."""
        self.kill()
        paths = [self.connection_file]
        if self.info.get("transport") == "ipc":
            ports = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
            paths += [f"{self.info['ip']}-{self.info[p]}" for p in ports]
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass


class RawWatcher:
    """The minimal IOPub watcher: a plain SUB socket read from the event loop, draining every
    ready message per wake-up; verifies the HMAC, parses header and parent header, and
    tracks the execution state from ``status`` messages.

    A drain stops after ``BATCH`` messages and continues on the next loop iteration,
    otherwise a flood would starve the loop for as long as it lasts (kernelmon's stops after
    a time budget per loop turn instead; this floor keeps the simplest form).
    """

    BATCH = 256

    def __init__(self, info: dict[str, Any], coalesce: float = 0.0) -> None:
        #: With ``coalesce`` > 0, one wake-up per batch at most every ``coalesce`` seconds: a
        #: wake-up sooner than that after the last drain schedules the next drain for then
        #: (libzmq's IO thread gathers the messages meanwhile) instead of draining at once.
        self.coalesce = coalesce
        self._last_drain = float("-inf")
        self._due: asyncio.TimerHandle | None = None
        scheme = info.get("signature_scheme", "hmac-sha256")
        self._auth = hmac.new(_key(info), digestmod=getattr(hashlib, scheme.split("-", 1)[1]))
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        if coalesce:
            # Room for what arrives between drains, as kernelmon's subscribers have.
            self.sock.setsockopt(zmq.RCVHWM, 10_000)
        self.sock.connect(channel_url(info, "iopub"))
        self.closed = False
        self.count = 0
        self.bad = 0
        self.state = "starting"
        self.last_activity = time.time()
        self._loop = asyncio.get_running_loop()
        self._fd = self.sock.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._on_readable)
        self._loop.call_soon(self._drain)

    def _on_readable(self) -> None:
        if not self.coalesce:
            self._drain()
            return
        if self.closed or self._due is not None:
            return
        wait = self._last_drain + self.coalesce - time.perf_counter()
        if wait <= 0:
            self._drain()
        elif self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # also clears the FD's readiness
            self._due = self._loop.call_later(wait, self._on_due)

    def _on_due(self) -> None:
        self._due = None
        self._drain()

    def _drain(self) -> None:
        if self.closed:
            return
        self._last_drain = time.perf_counter()
        sock = self.sock
        auth = self._auth
        recv = sock.recv_multipart
        n = 0
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            if n == self.BATCH:
                self._loop.call_soon(self._drain)
                return
            n += 1
            frames = recv(zmq.NOBLOCK)
            try:
                i = frames.index(DELIM)
                sig, header, parent, metadata, content = frames[i + 1 : i + 6]
            except ValueError:
                self.bad += 1
                continue
            mac = auth.copy()
            mac.update(header)
            mac.update(parent)
            mac.update(metadata)
            mac.update(content)
            if not hmac.compare_digest(mac.hexdigest().encode(), sig):
                self.bad += 1
                continue
            h = json.loads(header)
            json.loads(parent)
            self.count += 1
            self.last_activity = time.time()
            if h["msg_type"] == "status":
                state = json.loads(content).get("execution_state")
                if state in ("starting", "idle", "busy", "restarting", "dead"):
                    self.state = state

    def close(self) -> None:
        self.closed = True
        if self._due is not None:
            self._due.cancel()
        try:
            self._loop.remove_reader(self._fd)
        except Exception:
            pass
        self.sock.close(linger=0)
