"""Kernel records of an earlier kernelmon run, as read from a state file, and what adoption
asks of the machine about them (blocking calls: run them in a thread).

A record is a claim, not a proof (see adoption.py): every field is checked, and a field of
the wrong type counts as missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .machine.discovery import (
    kernel_candidates,
    parse_connection_info,
    process_table,
    read_runtime_json,
)
from .machine.identity import start_ticks
from .records import parse_isoformat
from .registry import KERNEL_ID


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class SavedKernel:
    """A kernel record of a state file, with every optional field checked (a field of the
    wrong type counts as missing)."""

    id: str
    connection_file: str
    kernel_name: str | None = None
    display_name: str | None = None
    #: the recorded process (None while a launch was only intended)
    pid: int | None = None
    #: its start time in boot clock ticks (None in records of older kernelmons)
    ticks: int | None = None
    #: boot ticks when a launch was recorded and not confirmed (None if it was)
    launching: int | None = None
    #: kernelmon's launch made the kernel the leader of its own process group
    own_group: bool = False
    cwd: str | None = None
    started: datetime | None = None
    restarts: int = 0
    #: the record's copy of the connection file's facts (no key)
    connection: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, saved: dict[str, Any]) -> SavedKernel:
        """``ValueError`` if the record names no kernel id and connection file."""
        kid, conn_file = saved.get("id"), saved.get("connection_file")
        if not isinstance(kid, str) or not KERNEL_ID.match(kid):
            raise ValueError("it has no valid kernel id")
        if not isinstance(conn_file, str) or not os.path.isabs(conn_file) or "\0" in conn_file:
            raise ValueError("it has no valid connection file path")
        if os.path.basename(conn_file) != f"kernel-{kid}.json":
            # kernelmon names its kernels' files so; anything else is not one of its records
            raise ValueError("its connection file is not named after its kernel id")
        pid = _int(saved.get("pid"))
        pid = pid if pid is not None and pid > 0 else None
        started = parse_isoformat(saved.get("started"))
        connection = saved.get("connection")
        launching = _int(saved.get("launching"))
        restarts = _int(saved.get("restarts"))
        return cls(
            id=kid,
            connection_file=conn_file,
            kernel_name=text_or_none(saved.get("kernel_name")),
            display_name=text_or_none(saved.get("display_name")),
            pid=pid,
            ticks=_int(saved.get("pid_started_ticks")) if pid is not None else None,
            launching=launching if launching is not None or pid is not None else 0,
            own_group=pid is not None and _int(saved.get("pgid")) == pid,
            cwd=text_or_none(saved.get("cwd")),
            started=started,
            restarts=max(restarts or 0, 0),
            connection=connection if isinstance(connection, dict) else None,
            raw=saved,
        )


def read_connection_file(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(connection info, None) if ``path`` is a connection file kernelmon can use for one of
    its own kernels, else (what could be read of it, what is wrong). Never blocks on a FIFO
    or a huge file (``discovery.read_runtime_json``)."""
    try:
        info = read_runtime_json(path)
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    except ValueError as e:
        return None, str(e)
    if not isinstance(info, dict):
        return None, "is not a JSON object"
    try:
        facts = parse_connection_info(info)
    except ValueError as e:
        return info, f"is not usable: {e}"
    if not facts.has_key:
        return info, "has an empty key (messages would not be signed)"
    if facts.transport == "ipc" and os.path.dirname(facts.ip) != os.path.dirname(path):
        return info, "names IPC sockets outside its own folder"
    if not isinstance(info.get("kernel_name", ""), str):
        return info, "has a 'kernel_name' that is not text"
    return info, None


def processes_naming(connection_file: str, since_ticks: int | None) -> list[int]:
    """PIDs of the processes whose arguments name ``connection_file`` (discovery's
    candidates), started at or after boot tick ``since_ticks`` if given: candidates, never
    a proof (blocking: run it in a thread)."""
    found = kernel_candidates(process_table().values(), [connection_file])
    pids = [p.pid for p in found.get(connection_file, [])]
    if since_ticks is None:
        return pids
    return [pid for pid in pids if (start_ticks(pid) or -1) >= since_ticks - 1]


def leads_group(pid: int) -> bool:
    """Whether ``pid`` leads its own process group (as kernelmon's launch makes it)."""
    try:
        return hasattr(os, "getpgid") and os.getpgid(pid) == pid
    except OSError:
        return False
