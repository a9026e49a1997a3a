"""Becoming the one instance: the lock taken and the socket listening, or who holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from ..machine.process import create_time
from .client import RunningInstance
from .protocol import InstanceError
from .sockets import (
    LOCK_NAME,
    SOCKET_NAME,
    check_socket_file,
    connect,
    instance_dir,
    listen,
    private_dir,
)

logger = logging.getLogger(__name__)


def _read_holder(fd: int) -> tuple[int | None, bool]:
    """The PID the lock holder wrote into the lock file (None if unknown), and whether it
    said it serves its socket."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None, False
    if not isinstance(data, dict):
        return None, False
    pid = data.get("pid")
    valid = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
    return (pid if valid else None), data.get("serving") is True


class InstanceLock:
    """Being the one kernelmon: the lock held and the socket bound and listening.

    Made by ``claim_instance()``; connections wait in the socket's backlog until an
    ``InstanceServer`` serves them. ``release()`` removes the socket file, then lets the
    lock go (the kernel lets it go too if the process dies).

    With the lock held but the socket unusable (a file in the way, an unwritable folder),
    ``sock`` is None and ``problem`` says why: this is still the only instance (others find
    the lock held), but they cannot hand their launch over to it, so they refuse to start.
    """

    def __init__(
        self, folder: Path, lock_fd: int, sock: socket.socket | None, problem: str | None = None
    ) -> None:
        self.folder = folder
        self.socket_path = folder / SOCKET_NAME
        self.lock_path = folder / LOCK_NAME
        self._lock_fd: int | None = lock_fd
        self.sock: socket.socket | None = sock
        self.problem = problem

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def write_record(self, serving: bool) -> None:
        """Say in the lock file who holds it and whether its socket is served yet."""
        if self._lock_fd is None:
            return
        pid = os.getpid()
        record = {"pid": pid, "started": create_time(pid), "serving": serving}
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, json.dumps(record).encode("utf-8"), 0)

    def mark_serving(self) -> None:
        """The socket is served from now on: clients stop allowing for start-up time."""
        with contextlib.suppress(OSError):
            self.write_record(serving=True)

    def release(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            self.sock.close()
            self.sock = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing the last descriptor releases the flock
            self._lock_fd = None


def claim_instance(folder: Path | None = None, wait: float = 0.0) -> InstanceLock | RunningInstance:
    """Become the one kernelmon in ``folder`` (default ``instance_dir()``), or learn who is.

    Returns an ``InstanceLock`` (the lock taken, the socket listening, or, when it cannot,
    ``problem`` saying why) or a ``RunningInstance`` (another process holds the lock, or,
    without the lock, listens on the socket; with ``wait``, still after trying for that many
    seconds, e.g. while it quits). Raises ``InstanceError`` when the lock cannot be taken or
    checked (another kernelmon may be running); nothing is deleted that is not proven to be
    a dead instance's socket.
    """
    deadline = time.monotonic() + wait
    while True:
        claimed = _claim(folder if folder is not None else instance_dir())
        if isinstance(claimed, InstanceLock) or time.monotonic() >= deadline:
            return claimed
        time.sleep(0.1)


def _claim(folder: Path) -> InstanceLock | RunningInstance:
    private_dir(folder)
    lock_path = folder / LOCK_NAME
    # O_CLOEXEC: kernels started later must not inherit (and so keep) the lock
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | flags, 0o600)
    except OSError as e:
        try:  # a read-only folder: an existing lock file locks all the same
            fd = os.open(lock_path, os.O_RDONLY | flags)
        except OSError:
            raise InstanceError(f"Cannot open the lock file {lock_path}: {e.strerror}.") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InstanceError(f"Cannot lock {lock_path}: {e.strerror}.") from e
            holder, serving = _read_holder(fd)
            os.close(fd)
            return RunningInstance(folder, holder, serving)
        sock_path = folder / SOCKET_NAME
        try:
            if _replace_stale_socket(sock_path):
                os.close(fd)  # something serves the socket without the lock: an instance
                return RunningInstance(folder, None)
            claimed = InstanceLock(folder, fd, listen(sock_path))
        except InstanceError as e:
            logger.error("This kernelmon holds the instance lock but cannot serve: %s", e)
            claimed = InstanceLock(folder, fd, None, problem=str(e))
        try:
            claimed.write_record(serving=False)
        except OSError as e:  # clients then allow for start-up time; nothing else is lost
            logger.warning("Cannot write into the lock file %s: %s", lock_path, e)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    if claimed.sock is not None:
        logger.info("This kernelmon (pid %d) is the instance serving %s", os.getpid(), sock_path)
    return claimed


def _replace_stale_socket(path: Path) -> bool:
    """With the lock held: remove a socket file nobody listens on. True if something does
    listen (it is left alone); ``InstanceError`` if ``path`` is not a socket of ours."""
    check_socket_file(path)
    if not path.exists():
        return False
    try:
        probe = connect(path, 1.0)
    except (ConnectionRefusedError, FileNotFoundError):
        logger.info("Replacing the socket file %s of an instance that is gone", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    except OSError as e:
        raise InstanceError(f"Cannot tell whether something listens on {path}: {e}.") from e
    probe.close()
    logger.warning("Something listens on %s although the instance lock was free", path)
    return True
