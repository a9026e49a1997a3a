"""What kernelmon last saw of other applications' kernels, kept across its launches.

Without it every launch of kernelmon (and every restart of monitoring) would start an
external or orphaned kernel's idle clock again at "now", so a kernelmon restarted every hour
would never cull an orphan idle for days. For each such kernel the state folder's
``external-kernels.json`` keeps when kernelmon first saw it, the last activity it saw (none
yet: the idle clock runs from the first sight), the last execution state it saw and since
when it is an orphan. Activity while no kernelmon watched is not known, so a kernel's idle
time is counted from the last activity any kernelmon saw.

The file is small and bounded (``MAX_ENTRIES``, entries not updated for ``MAX_AGE`` are
dropped, and so are kernels whose connection file went away), written atomically with mode
0600 at most every ``SAVE_EVERY`` seconds (at once when a kernel is first seen), merged with
what another kernelmon wrote meanwhile. A corrupt or hostile file is set aside (``.bad``)
and kernelmon starts from nothing; a bad entry or field is ignored alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .files import write_json_atomic
from .records import (
    ExecutionState,
    KernelRecord,
    Origin,
    isoformat,
    parse_isoformat,
    utcnow,
)

logger = logging.getLogger(__name__)

FILE_NAME = "external-kernels.json"
VERSION = 1
#: At most this many kernels are remembered (the least recently updated go first).
MAX_ENTRIES = 1000
#: Kernels not seen for this long are forgotten.
MAX_AGE = timedelta(days=30)
#: A file larger than this is not one of ours.
MAX_FILE_SIZE = 1024 * 1024
#: Seconds between writes of mere activity updates.
SAVE_EVERY = 5.0
#: What the model says (``last_activity_note``) while kernelmon saw no activity.
NOT_SEEN_ACTIVE = "not seen active since kernelmon started watching it"

_STATES = frozenset(str(s) for s in ExecutionState)


@dataclass(slots=True)
class Seen:
    """What kernelmon saw of one kernel."""

    connection_file: str
    first_seen: datetime
    updated: datetime
    last_activity: datetime | None = None
    execution_state: str = ExecutionState.UNKNOWN
    orphan_since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_file": self.connection_file,
            "first_seen": isoformat(self.first_seen),
            "updated": isoformat(self.updated),
            "last_activity": isoformat(self.last_activity),
            "execution_state": self.execution_state,
            "orphan_since": isoformat(self.orphan_since),
        }

    @classmethod
    def from_json(cls, data: object) -> Seen | None:
        """An entry as written by ``to_json``; None if its required fields are unusable
        (a bad optional field is just unknown)."""
        if not isinstance(data, dict):
            return None
        path = data.get("connection_file")
        first = _time(data.get("first_seen"))
        if not isinstance(path, str) or not path or first is None:
            return None
        state = data.get("execution_state")
        return cls(
            connection_file=path,
            first_seen=first,
            updated=_time(data.get("updated")) or first,
            last_activity=_time(data.get("last_activity")),
            execution_state=state if isinstance(state, str) and state in _STATES else "unknown",
            orphan_since=_time(data.get("orphan_since")),
        )


def _time(value: object) -> datetime | None:
    return parse_isoformat(value, max_length=40)


def read_entries(path: Path) -> dict[str, Seen]:
    """The entries of a history file ({} if there is none); raises ``ValueError`` (a
    ``json`` or size problem), ``RecursionError`` or ``OSError`` if it cannot be used."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        return {}
    if len(raw) > MAX_FILE_SIZE:
        raise ValueError(f"it is larger than {MAX_FILE_SIZE // 1024} KiB")
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("kernels"), dict):
        raise ValueError("it does not hold a kernels object")
    entries: dict[str, Seen] = {}
    for kid, value in data["kernels"].items():
        seen = Seen.from_json(value)
        if seen is not None and len(kid) <= 200:
            entries[kid] = seen
    return entries


class ExternalHistory:
    """The history file of one state folder, and what this kernelmon adds to it."""

    def __init__(self, folder: Path, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = folder / FILE_NAME
        self._clock = clock
        self._dropped: set[str] = set()
        self._dirty = False
        self._saved_at = 0.0
        self._failing = False
        self._entries = self._read()

    def _read(self) -> dict[str, Seen]:
        try:
            return read_entries(self.path)
        except (ValueError, RecursionError, OSError) as e:
            why = "it nests too deeply" if isinstance(e, RecursionError) else str(e)
            logger.warning("Ignoring the unusable history file %s: %s", self.path, why)
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_name(self.path.name + ".bad"))
            return {}

    def get(self, kernel_id: str) -> Seen | None:
        return self._entries.get(kernel_id)

    def restore(self, record: KernelRecord) -> None:
        """Give a newly found kernel what earlier sightings know: its idle clock starts at
        the last activity seen or, if none was, at its first sighting (now, if this is it;
        then the file is written at once)."""
        now = self._clock()
        seen = self._entries.get(record.id)
        if seen is None or seen.connection_file != record.connection_file:
            seen = Seen(record.connection_file or "", first_seen=now, updated=now)
            self._entries[record.id] = seen
            self._dropped.discard(record.id)
            self._dirty = True
            self._saved_at = 0.0  # the first sighting must survive a crash: save now
        record.first_seen = seen.first_seen
        if seen.last_activity is not None:
            record.last_activity = seen.last_activity
            record.last_activity_note = None
        else:
            record.last_activity = seen.first_seen
            record.last_activity_note = NOT_SEEN_ACTIVE
        if record.origin == Origin.ORPHAN:
            record.orphan_since = seen.orphan_since or now
        self.note(record)

    def note(self, record: KernelRecord) -> None:
        """Take what the record now says (call it now and then, and when it leaves)."""
        seen = self._entries.get(record.id)
        if seen is None or seen.connection_file != record.connection_file:
            return
        if record.origin == Origin.ORPHAN and record.orphan_since is None:
            record.orphan_since = self._clock()
        elif record.origin != Origin.ORPHAN:
            record.orphan_since = None
        activity = record.last_activity if record.last_activity_note is None else None
        values = (activity, str(record.execution_state), record.orphan_since)
        if values != (seen.last_activity, seen.execution_state, seen.orphan_since):
            if seen.orphan_since is None and record.orphan_since is not None:
                self._saved_at = 0.0  # when it became an orphan: save now
            seen.last_activity, seen.execution_state, seen.orphan_since = values
            seen.updated = self._clock()
            self._dirty = True

    def note_all(self, records: Iterable[KernelRecord]) -> None:
        for record in records:
            self.note(record)

    def drop(self, kernel_id: str) -> None:
        """The kernel is gone (its connection file was removed): forget it."""
        if self._entries.pop(kernel_id, None) is not None:
            self._dropped.add(kernel_id)
            self._dirty = True

    def forget_if_gone(self, kernel_id: str) -> None:
        """The kernel left the map: forget it if its connection file is gone too (a kernel
        merely not watched for a while, discovery off, keeps its history)."""
        seen = self._entries.get(kernel_id)
        if seen is not None and not os.path.lexists(seen.connection_file):
            self.drop(kernel_id)
            self.save()

    def save(self, force: bool = False) -> None:
        """Write what changed (at most every ``SAVE_EVERY`` s unless ``force``), merged with
        what other kernelmons wrote for kernels this one does not watch."""
        if not self._dirty or (not force and time.monotonic() - self._saved_at < SAVE_EVERY):
            return
        try:
            on_disk = read_entries(self.path)
        except (ValueError, RecursionError, OSError):
            on_disk = {}
        merged = {k: v for k, v in on_disk.items() if k not in self._dropped}
        merged.update(self._entries)
        oldest = self._clock() - MAX_AGE
        kept = sorted(
            ((k, v) for k, v in merged.items() if v.updated >= oldest),
            key=lambda item: item[1].updated,
        )[-MAX_ENTRIES:]
        data = {"version": VERSION, "kernels": {k: v.to_json() for k, v in kept}}
        try:
            write_json_atomic(self.path, data)
        except OSError as e:
            # an unwritable state folder (the window says so): try again later, quietly
            log = logger.warning if not self._failing else logger.debug
            log("Could not save what kernelmon saw of other kernels: %s", e)
            self._failing = True
            self._saved_at = time.monotonic()
            return
        self._failing = False
        self._entries = dict(kept)
        self._dirty = False
        self._saved_at = time.monotonic()
        self._dropped.clear()
