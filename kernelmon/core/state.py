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
import uuid
from pathlib import Path
from typing import Any

from .process import create_time
from .settings import write_json_atomic

logger = logging.getLogger(__name__)

STATE_VERSION = 1
ENV_STATE_DIR = "KERNELMON_STATE_DIR"


#: A kernel record as long as a real one, written by ``StateFile.check`` for the kernel about
#: to start.
PROBE_RECORD = {
    "id": "0" * 36,
    "kernel_name": "probe",
    "display_name": "x" * 40,
    "connection_file": "/" + "x" * 120,
    "pid": 2**22,
    "pgid": 2**22,
    "pid_started": 1e9,
    "cwd": "/" + "x" * 120,
    "started": "2000-01-01T00:00:00.000000+00:00",
    "restarts": 0,
}


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
        self._probe_error: str | None = None

    def check(self, kernels: list[dict[str, Any]]) -> str | None:
        """Whether the records can be written now: ``kernels`` (this process's records)
        and one more, for a kernel about to start, are written to a probe file beside the
        state file, synced and removed (an empty file would prove nothing on a full disk).
        Blocking (it writes and syncs): run it off the event loop. Returns the probe's
        problem in words, or None; a failure is kept in ``error``, and a success clears
        only a probe's error (a failed ``save()`` stays in ``error`` until a save works)."""
        owner = {"pid": self.owner_pid, "started": self.owner_started}
        data = {"version": STATE_VERSION, "owner": owner, "kernels": [*kernels, PROBE_RECORD]}
        try:
            _secure_dir(self.folder)
            probe = self.folder / f".probe-{self.path.name}"
            write_json_atomic(probe, data)
            probe.unlink()
        except OSError as e:
            problem = f"kernelmon cannot write to its state folder {self.folder}: {e.strerror or e}"
            logger.error("%s", problem)
            if self.error is None or self.error is self._probe_error:  # a save's stays
                self.error = self._probe_error = problem
            return problem
        if self.error is self._probe_error:
            self.error = None
        self._probe_error = None
        return None

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
