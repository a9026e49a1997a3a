"""Kernel processes: waiting for exit without polling, signalling a process group, and a
Popen-like handle for kernels of an earlier run (not our children) so that jupyter_client's
provisioner can manage them as if it had launched them."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import psutil

from .identity import Proof, same_process, start_ticks

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


#: How long a kernel process is waited for after SIGKILL.
KILL_WAIT = 5.0


async def stop_process(
    proc: ProcessLike,
    send_signal: Callable[[int], Awaitable[None]],
    *,
    shutdown_wait: float,
    ask: Callable[[], Awaitable[None]] | None = None,
    now: bool = False,
    name: str = "kernel",
) -> bool:
    """Stop a kernel's process, the one escalation every backend uses: unless ``now``, the
    shutdown message (``ask``) and half of ``shutdown_wait``, then ``SIGTERM`` and the other
    half; then ``SIGKILL`` and ``KILL_WAIT`` seconds. Each wait ends the moment the process
    exits (``wait_for_exit``); a step is taken only while it still runs.

    ``send_signal(signum)`` sends to the process proven to be the kernel: proving it right
    before each signal where the caller needs that (an ``AdoptedProcess`` does; a backend
    raises when it cannot prove it, and nothing is sent). Returns whether the process
    exited; ``name`` is for the log."""
    if proc.poll() is not None:
        return True
    grace = max(shutdown_wait, 0.0) / 2
    exited = False
    if not now:
        if ask is not None:
            await ask()
            exited = await wait_for_exit(proc, grace)
        if not exited:
            logger.info("%s did not exit; terminating it", name)
            await send_signal(signal.SIGTERM)
            exited = await wait_for_exit(proc, grace)
    if not exited:
        logger.info("Killing %s", name)
        await send_signal(signal.SIGKILL)
        exited = await wait_for_exit(proc, KILL_WAIT)
    return exited


class NotTheKernel(ProcessLookupError):
    """The process is no longer (provably) the kernel: nothing was signalled."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ESRCH, message)

    def __str__(self) -> str:
        return str(self.strerror)


def group_members(pgid: int | None) -> list[tuple[int, int | None]]:
    """(PID, start ticks) of the processes in process group ``pgid`` now.

    Taken while the group's leader is the proven kernel, so that later, once the kernel is
    gone, ``kill_process_group`` can tell that the group is still the same one.
    """
    if not pgid or pgid <= 1 or not hasattr(os, "getpgid"):
        return []
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid:
                found.append((proc.pid, start_ticks(proc.pid)))
    return found


def kill_process_group(
    pgid: int | None, members: list[tuple[int, int | None]] | None = None
) -> None:
    """SIGKILL whatever is left in a kernel's own process group (its children).

    A group's id is only reused once every member is gone, so with ``members`` (see
    ``group_members``) the group is signalled only while one of the processes seen when
    its leader was the proven kernel still runs (same PID, same start ticks) in it.
    Without, the caller vouches for the group. Never our own group, nor init's.
    """
    if not pgid or not hasattr(os, "killpg") or pgid in (os.getpgid(0), 0, 1):
        return
    if members is not None and not any(_in_group(pid, ticks, pgid) for pid, ticks in members):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _in_group(pid: int, ticks: int | None, pgid: int) -> bool:
    """Whether the process started at ``ticks`` as ``pid`` is still in group ``pgid``."""
    try:
        return os.getpgid(pid) == pgid and start_ticks(pid) == ticks
    except OSError:
        return False


class AdoptedProcess:
    """A Popen-like handle on a kernel process kernelmon did not launch in this run.

    It is not our child, so its exit status cannot be known: ``returncode`` becomes 0 once
    it is gone and ``exit_known`` stays False. It is made for a process proven to be the
    kernel (``proven``), whose start ticks it keeps: a process with this PID and other start
    ticks is another one (a reused PID) and counts as gone. So a signal goes to the process
    without a new proof only while it is still the one proven (``is_proven``); otherwise
    (start ticks unknown, or never proven: ``proven=False`` until ``mark_proven``) ``prove()``
    must show at that moment that it is the kernel (else ``NotTheKernel``, and nothing is
    sent; with no ``prove``, nothing is sent either). The kernel's sockets are not the
    evidence for the process proven earlier, since a kernel shutting down closes them
    before it exits. ``group``: the process
    group kernelmon's own launch created for it (its id is the kernel's PID), or None;
    jupyter_client is never given a process group to signal on its own.

    Nothing here waits: ``wait()`` never blocks (a psutil wait on a zombie whose parent
    never reaps it blocks forever); callers in the loop wait with ``wait_for_exit``.
    """

    stdin = stdout = stderr = None
    exit_known = False

    def __init__(
        self,
        pid: int,
        ticks: int | None = None,
        prove: Callable[[], Proof] | None = None,
        group: int | None = None,
        *,
        proven: bool = True,
    ) -> None:
        self.pid = pid
        #: its start ticks (now, if not given): a process with other ticks is another one
        self.ticks = ticks if ticks is not None else start_ticks(pid)
        #: its start ticks when it was last proven the kernel (None: never proven)
        self.proven_ticks = self.ticks if proven else None
        self.group = group
        self._prove = prove
        self.returncode: int | None = None

    def is_proven(self) -> bool:
        """Whether it is still the process proven the kernel: same PID, and start ticks
        unchanged since that proof (``identity.same_process``)."""
        return same_process(self.pid, self.proven_ticks)

    def mark_proven(self, ticks: int | None) -> None:
        """Note a proof, just made, that the process started at ``ticks`` is the kernel
        (ignored unless that is this process: other ticks are another process)."""
        if ticks is not None and ticks == self.ticks:
            self.proven_ticks = ticks

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                gone = psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone or (self.ticks is not None and start_ticks(self.pid) != self.ticks):
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status if the process is gone; never blocks (``TimeoutExpired`` while
        it runs: wait for it with ``wait_for_exit``)."""
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(f"process {self.pid}", timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is not None:
            return  # gone: nothing to signal (as Popen; jupyter_client kills a dead kernel)
        proof = None
        if not self.is_proven():
            if self._prove is None:
                raise NotTheKernel(
                    f"nothing was signalled: process {self.pid} was not proven to be the kernel"
                )
            proof = self._prove()
        if proof is not None and not proof.ok:
            # the kernel as kernelmon knew it is gone (or can no longer be told apart):
            # nothing more is done to this process, nor waited for
            why = proof.reason or "it could not be proven to be the kernel"
            logger.warning("Not signalling process %s: %s", self.pid, why)
            self.returncode = 0
            raise NotTheKernel(f"nothing was signalled: {why}")
        if self.group == self.pid and hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                if os.getpgid(self.pid) == self.pid:
                    os.killpg(self.pid, signum)
                    return
        os.kill(self.pid, signum)

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
    if pid is None or isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        value: Any = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    return float(value)
