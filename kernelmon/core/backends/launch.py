"""What a kernel kernelmon launches needs besides its manager: the transport it listens
on, what the state file keeps of its connection, the clock its launch intent is recorded
in, its exit status in words, and the log file its output goes to."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import IO

logger = logging.getLogger(__name__)

#: Unix socket paths longer than this fail (108 bytes on Linux, 104 on macOS, less a margin).
MAX_IPC_PATH = 100


def choose_transport(connection_file: str, wanted: str | None) -> tuple[str, str]:
    """(transport, ip) for a local kernel: IPC sockets beside the connection file where the
    platform has Unix sockets and the path fits, else TCP on the loopback interface."""
    ipc_prefix = os.path.splitext(connection_file)[0] + "-ipc"
    if wanted in (None, "ipc") and os.name == "posix" and len(ipc_prefix) + 3 <= MAX_IPC_PATH:
        return "ipc", ipc_prefix
    if wanted == "ipc":
        logger.info("IPC transport unavailable for %s; using TCP on 127.0.0.1", connection_file)
    return "tcp", "127.0.0.1"


#: The fields of a connection file kept in the state file (never the key): enough to
#: prove which process is the kernel when the file itself is damaged or gone.
CONNECTION_FACTS = (
    "transport",
    "ip",
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
    "signature_scheme",
    "kernel_name",
)


def boot_ticks_now() -> int | None:
    """Now, in the clock ticks since boot that processes' start times are counted in
    (None where there is no such clock)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None or not hasattr(os, "sysconf"):
        return None
    try:
        return int(time.clock_gettime(clock) * os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None


def describe_exit(code: int | None) -> str:
    """An exit status in words."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class KernelLog:
    """The file a kernel process's stdout and stderr go to (it may outlive kernelmon). It
    is kept open while the kernel runs, so that jupyter_client's auto-restarter, which
    relaunches with the same arguments, can use it too."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def handle(self) -> IO[bytes]:
        """The open file (opened, private to this user, if it is not)."""
        if self._file is None or self._file.closed:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "ab", buffering=0)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def tail(self, lines: int = 8) -> str:
        """The last lines the kernel printed, for an error message ("" if none)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return (" Its last output:\n" + "\n".join(tail)) if tail else ""

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
