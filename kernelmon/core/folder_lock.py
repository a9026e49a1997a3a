"""An exclusive lock on a folder, for work only one holder at a time may do there.

``FolderLock(folder, "adoption")`` locks ``<folder>/.adoption.lock`` with ``flock`` (or
``msvcrt.locking`` on Windows). The lock belongs to the open file, so it excludes other
processes and other holders in the same process alike, and the operating system releases
it when the holder exits, however it exits (a ``kill -9`` never leaves it held). Waiting
for it never blocks the event loop: ``acquire`` retries a non-blocking attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from types import TracebackType

#: How often ``acquire`` tries again while another holder has the lock.
RETRY = 0.05


class FolderLock:
    """An exclusive, non-blocking lock on one name in one folder."""

    def __init__(self, folder: str | os.PathLike[str], name: str) -> None:
        self.path = Path(folder) / f".{name}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True if this holder has it now. Raises
        ``OSError`` if the lock file cannot be created (e.g. an unwritable folder)."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if _lock(fd):
                self._fd = fd
                return True
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return False

    async def acquire(self, timeout: float | None = None) -> bool:
        """Wait (without blocking the loop) until the lock is ours; False on ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.try_acquire():
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(RETRY)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                _unlock(fd)
            os.close(fd)

    async def __aenter__(self) -> FolderLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
