"""The crash-safe record of the kernels kernelmon started, for adoption after a crash.

Each running kernelmon (each ``KernelMap``) keeps one small JSON file in the state folder,
``kernels-<pid>-<token>.json``, rewritten atomically on every change (temporary file, fsync,
rename; mode 0600 in a folder only the owner can enter). It names its owner process (PID
and start time), so a later run adopts the kernels of files whose owner is gone and leaves
those of a kernelmon that still runs alone.

The format is versioned; readers ignore fields they do not know, so a newer kernelmon reads
an older file and an older one reads what it can of a newer file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .process import create_time
from .settings import write_json_atomic

logger = logging.getLogger(__name__)

STATE_VERSION = 1
ENV_STATE_DIR = "KERNELMON_STATE_DIR"


def default_state_dir() -> Path:
    """``$KERNELMON_STATE_DIR``, or the user's state folder for kernelmon."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("kernelmon", appauthor=False))


def _secure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


class StateFile:
    """This process's record of its kernels."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.owner_pid = os.getpid()
        self.owner_started = create_time(self.owner_pid)
        self.path = folder / f"kernels-{self.owner_pid}-{uuid.uuid4().hex[:8]}.json"
        self.error: str | None = None

    def check(self) -> str | None:
        """Whether this process can write its record now (a probe file is written and
        removed); the problem in words, also kept in ``error``, or None."""
        try:
            _secure_dir(self.folder)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            self.error = (
                f"kernelmon cannot write to its state folder {self.folder}: {e.strerror or e}"
            )
            logger.error("%s", self.error)
        else:
            self.error = None
        return self.error

    def save(self, kernels: list[dict[str, Any]], released: bool = False) -> None:
        """Write the records; on failure log it, remember it in ``error``, keep running.

        ``released``: the kernels are left running for whoever comes next (the file names no
        owner, so any later ``restore()``, even in this process, adopts them).
        """
        owner = (
            {"pid": None} if released else {"pid": self.owner_pid, "started": self.owner_started}
        )
        data = {"version": STATE_VERSION, "owner": owner, "kernels": kernels}
        try:
            _secure_dir(self.folder)
            if kernels:
                write_json_atomic(self.path, data)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.error = None
        except OSError as e:
            self.error = f"Could not write kernelmon's state file {self.path}: {e}"
            logger.error("%s", self.error)

    def others(self) -> list[tuple[Path, list[dict[str, Any]]]]:
        """State files of earlier runs whose owner is gone, with their kernel records."""
        found: list[tuple[Path, list[dict[str, Any]]]] = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("kernels-*.json")):
            if path == self.path:
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                owner = data.get("owner", {})
                kernels = [k for k in data.get("kernels", []) if isinstance(k, dict)]
            except (OSError, ValueError, AttributeError) as e:
                logger.warning("Ignoring unreadable state file %s: %s", path, e)
                continue
            if _owner_alive(owner):
                continue
            found.append((path, kernels))
        return found


def _owner_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    started = create_time(pid)
    if started is None:
        return False
    recorded = owner.get("started")
    return not isinstance(recorded, int | float) or abs(started - recorded) < 1.0
