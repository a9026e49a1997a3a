"""The crash-safe record of the kernels kernelmon started, for adoption after a crash.

Each running kernelmon (each ``KernelMap``) keeps one small JSON file in the state folder,
``kernels-<pid>-<token>.json``, rewritten atomically on every change (temporary file, fsync,
rename; mode 0600 in a folder only the owner can enter). It names its owner process (PID
and start time in boot clock ticks, which a step of the wall clock does not move), so a
later run adopts the kernels of files whose owner is gone and leaves those of a kernelmon
that still runs alone (they are listed as that kernelmon's, see ``live_kernels``).

A kernel's record is written *before* its process is launched (``pid`` null: the intent)
and confirmed with its PID and start ticks right after, so that a kernel never runs
without a record, whatever instant kernelmon is killed at.

A file that cannot be read or makes no sense (any JSON at all may be found there) is left
as it is and reported in ``problems``; it never stops the other files from being adopted.

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

from .files import write_json_atomic
from .folder_lock import FolderLock
from .machine.identity import start_ticks
from .machine.process import create_time

logger = logging.getLogger(__name__)

STATE_VERSION = 1
#: State files larger than this are not kernelmon's.
MAX_STATE_FILE = 4 << 20
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


def default_state_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """The state folder: ``folder`` if given, else ``$KERNELMON_STATE_DIR``, else the user's
    state folder for kernelmon (the one lookup of it)."""
    if folder:
        return Path(folder)
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
        self.owner_ticks = start_ticks(self.owner_pid)
        self.path = folder / f"kernels-{self.owner_pid}-{uuid.uuid4().hex[:8]}.json"
        self.error: str | None = None
        #: state files of other runs that could not be used, and why (path -> message)
        self.problems: dict[str, str] = {}
        #: what was read of each file, by (path, mtime, size): files are read again only
        #: when they change
        self._cache: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._probe_error: str | None = None

    def adoption_lock(self) -> FolderLock:
        """The lock that serializes adoption among every kernelmon using this folder."""
        return FolderLock(self.folder, "adoption")

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
            {"pid": None}
            if released
            else {
                "pid": self.owner_pid,
                "started": self.owner_started,
                "started_ticks": self.owner_ticks,
            }
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
        return [(path, kernels) for path, alive, kernels in self._read_all() if alive is None]

    def live_kernels(self) -> dict[str, int]:
        """Kernels recorded by other kernelmon processes that still run: connection file
        and kernel id -> that kernelmon's PID."""
        owned: dict[str, int] = {}
        for _path, alive, kernels in self._read_all(quiet=True):
            if alive is None:
                continue
            for k in kernels:
                for key in ("id", "connection_file"):
                    if isinstance(k.get(key), str):
                        owned[k[key]] = alive
        return owned

    def _read_all(self, quiet: bool = False) -> list[tuple[Path, int | None, list[dict[str, Any]]]]:
        """(path, PID of its live owner or None, kernel records) of every other state file
        that can be read; the others are reported in ``problems``."""
        found: list[tuple[Path, int | None, list[dict[str, Any]]]] = []
        try:
            paths = sorted(self.folder.glob("kernels-*.json"))
        except OSError:
            return found
        problems: dict[str, str] = {}
        cache: dict[Path, tuple[tuple[int, int], Any]] = {}
        for path in paths:
            if path == self.path:
                continue
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                cached = self._cache.get(path)
                if cached is not None and cached[0] == stamp:
                    result = cached[1]
                else:
                    try:
                        result = read_state_file(path)
                    except ValueError as e:
                        result = e
                cache[path] = (stamp, result)
                if isinstance(result, ValueError):
                    raise result
                owner, kernels = result
            except (OSError, ValueError) as e:
                problems[str(path)] = str(e)
                if not quiet and str(path) not in self.problems:
                    logger.warning("Ignoring kernelmon state file %s: %s", path, e)
                continue
            found.append((path, owner_alive(owner), kernels))
        self._cache = cache
        if not quiet:
            self.problems = problems
        return found


def read_state_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(owner, kernel records) of a state file; ``ValueError`` says what is wrong with it.

    Whatever the file holds (any JSON, any size, any nesting), this returns or raises
    ``OSError``/``ValueError``: records that are not objects are left out, an owner that is
    not an object is an owner that is gone.
    """
    with path.open("rb") as f:
        raw = f.read(MAX_STATE_FILE + 1)
    if len(raw) > MAX_STATE_FILE:
        raise ValueError("it is too large to be a kernelmon state file")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("it is nested too deeply to be a kernelmon state file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"it is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    kernels = data.get("kernels")
    if not isinstance(kernels, list):
        raise ValueError("it has no list of kernels")
    owner = data.get("owner")
    return (owner if isinstance(owner, dict) else {}), [k for k in kernels if isinstance(k, dict)]


def owner_alive(owner: dict[str, Any]) -> int | None:
    """The PID of a state file's owner if that process still runs (not a reused PID).

    The start time in boot ticks decides where the file has it: a step of the wall clock
    moves ``create_time`` (boot time + ticks), not the ticks. Older files have only the
    wall-clock start time, compared to within a second.
    """
    pid = owner.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    ticks = owner.get("started_ticks")
    if isinstance(ticks, int) and not isinstance(ticks, bool):
        now = start_ticks(pid)
        if now is not None:
            return pid if now == ticks else None
    started = create_time(pid)
    if started is None:
        return None
    recorded = owner.get("started")
    if isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return pid
    return pid if abs(started - recorded) < 1.0 else None
