"""Kernel processes: waiting for exit without polling, signalling a process group, and a
Popen-like handle for kernels of an earlier run (not our children) so that jupyter_client's
provisioner can manage them as if it had launched them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any, Protocol

import psutil

logger = logging.getLogger(__name__)


class ProcessLike(Protocol):
    pid: int

    def poll(self) -> int | None: ...


async def wait_for_exit(proc: ProcessLike, timeout: float) -> bool:
    """Wait until ``proc`` has exited (True) or ``timeout`` passed (False).

    On Linux a pidfd wakes the loop the moment the process exits; elsewhere the process is
    polled every 10 ms.
    """
    if proc.poll() is not None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fd: int | None = None
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        with contextlib.suppress(OSError):
            fd = pidfd_open(proc.pid)
    if fd is None:
        while proc.poll() is None:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        # The process may have exited between poll() and pidfd_open().
        if proc.poll() is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited, max(0.0, deadline - loop.time()))
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.poll() is not None


def kill_process_group(pgid: int | None) -> None:
    """SIGKILL whatever is left in a kernel's own process group (its children)."""
    if not pgid or not hasattr(os, "killpg"):
        return
    if pgid in (os.getpgid(0), 0, 1):  # never our own group (or init's)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class AdoptedProcess:
    """A Popen-like handle on a kernel process kernelmon did not launch in this run.

    It is not our child, so its exit status cannot be known: ``returncode`` becomes 0 once
    it is gone and ``exit_known`` stays False.
    """

    stdin = stdout = stderr = None
    exit_known = False

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                gone = self._proc.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._proc.wait(timeout)
        self.returncode = 0
        return 0

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._proc.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def process_matches(pid: int, connection_file: str, create_time: float | None = None) -> bool:
    """Whether ``pid`` is, now, the kernel of ``connection_file``: ``identity.prove_kernel``
    (it holds the kernel's sockets; a viewer of the file or a forked worker does not pass).
    ``create_time``, if given, must match psutil's within a second too (prefer
    ``identity.start_ticks`` and ``prove_kernel(started_ticks=...)``: immune to clock steps)."""
    from .discovery import read_runtime_json
    from .identity import prove_kernel

    try:
        info = read_runtime_json(connection_file)
        if create_time is not None and abs(psutil.Process(pid).create_time() - create_time) > 1.0:
            return False
    except (OSError, ValueError, psutil.Error):
        return False
    return isinstance(info, dict) and prove_kernel(pid, info).ok


def create_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        value: Any = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    return float(value)
