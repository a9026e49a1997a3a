"""What the core knows about one kernel, independent of where it runs and who owns it.

A ``KernelRecord`` is plain data: the table, the culler and the events read it and never
care how the kernel is reached. *Where* a kernel lives (``location``) and *who owns it*
(``origin``) are fields, so kernels found in the Jupyter runtime folder or on a remote
server can be added later as records with other values and other backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict, cast


class Origin(StrEnum):
    """Who owns a kernel."""

    OWNED = "owned"  #: kernelmon started it and may restart and shut it down
    EXTERNAL = "external"  #: another application started it and still runs
    ORPHAN = "orphan"  #: another application started it and is gone
    STALE = "stale"  #: only a connection file is left
    #: a Jupyter Server or Enterprise Gateway runs it (``server_id`` names which); kernelmon
    #: acts on it through the server's REST API only
    SERVER = "server"


class ExecutionState(StrEnum):
    """What a kernel is doing, as kernelmon shows it."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    DEAD = "dead"
    #: alive but not answering kernel_info_request (e.g. found after a crash of kernelmon)
    UNRESPONSIVE = "unresponsive"
    #: a kernel of an earlier run that runs but could not be adopted (``reason`` says why;
    #: it can only be shut down, which kills it after proving it is the kernel)
    PROBLEM = "problem"
    UNKNOWN = "unknown"


#: Where kernelmon's own kernels live.
LOCAL = "local"


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z, as Jupyter's REST API writes it."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_isoformat(
    value: object, *, assume_utc: bool = False, max_length: int = 64
) -> datetime | None:
    """The reverse of ``isoformat``: ISO 8601 text (a trailing Z allowed) as an aware UTC
    datetime; None when it is not text, longer than ``max_length`` or unreadable. A time
    without a zone is UTC if ``assume_utc`` (as servers write it), else unreadable."""
    if not isinstance(value, str) or len(value) > max_length:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if not assume_utc:
            return None
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class KernelModel(TypedDict):
    """What ``KernelRecord.to_model`` returns: a JSON-safe description of a kernel (the
    table's row, the events' ``model``, Jupyter's REST API's fields and kernelmon's own)."""

    id: str
    name: str
    display_name: str
    origin: str
    location: str
    last_activity: str | None
    last_activity_note: str | None
    started: str | None
    execution_state: str
    connections: int
    pid: int | None
    cwd: str | None
    reason: str | None
    restarts: int
    buffered: int
    buffer_dropped: int
    messages: int
    bad_messages: int
    can_restart: bool
    can_interrupt: bool
    connection_file: str | None
    transport: str | None
    ip: str | None
    ports: dict[str, int]
    parent_pid: int | None
    parent_app: str | None
    parent_alive: bool
    server_url: str | None
    server_id: str | None
    server_name: str | None
    notebook_path: str | None
    first_seen: str | None
    orphan_since: str | None
    identity_problem: str | None
    cpu_percent: float | None
    rss: int | None
    pss: int | None
    uss: int | None
    processes: int | None
    message_rate: float | None
    #: {action: why it is refused now}; an action not named can be tried
    refusals: dict[str, str]


def new_record(
    kernel_id: str, name: str, now: datetime, display_name: str = "", cwd: str | None = None
) -> KernelRecord:
    """A record of a kernel about to join the map, first seen (and active) ``now``."""
    return KernelRecord(
        id=kernel_id,
        name=name,
        display_name=display_name,
        cwd=cwd,
        last_activity=now,
        started=now,
    )


def assign(record: KernelRecord, values: dict[str, Any]) -> set[str]:
    """Set the record's fields to ``values``; returns the names of those that changed."""
    changed = set()
    for name, value in values.items():
        if getattr(record, name) != value:
            setattr(record, name, value)
            changed.add(name)
    return changed


def as_dict(model: KernelModel) -> dict[str, Any]:
    """A model as a plain dict: what events carry and ``KernelMap.kernel_model`` returns
    while the UI's functions take ``dict[str, Any]`` (the same object, unchanged)."""
    return cast(dict[str, Any], model)


@dataclass(slots=True)
class KernelRecord:
    """The facts about one kernel. Mutated only by the core, read by everyone."""

    id: str
    name: str
    origin: Origin = Origin.OWNED
    location: str = LOCAL
    display_name: str = ""
    execution_state: str = ExecutionState.STARTING
    #: The last activity seen; the culler counts idle time from it. While
    #: ``last_activity_note`` says why none was seen, it is when kernelmon first saw the
    #: kernel, and the model's ``last_activity`` is None.
    last_activity: datetime = field(default_factory=utcnow)
    last_activity_note: str | None = None
    started: datetime = field(default_factory=utcnow)
    connections: int = 0
    pid: int | None = None
    cwd: str | None = None
    reason: str | None = None
    restarts: int = 0
    buffered: int = 0
    buffer_dropped: int = 0
    messages: int = 0
    bad_messages: int = 0
    #: whether kernelmon may restart / interrupt it (set by the backend)
    can_restart: bool = True
    can_interrupt: bool = True
    # -- how it is reached and who started it (filled for every kernel with a file) --
    connection_file: str | None = None
    transport: str | None = None
    ip: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    #: the application that launched the kernel (for kernels kernelmon did not start)
    parent_pid: int | None = None
    parent_app: str | None = None
    parent_alive: bool = False
    #: the Jupyter server whose process started the kernel, if one was found (for a
    #: server's kernel: the server it is listed by)
    server_url: str | None = None
    #: the server (``KernelMap.list_servers``) that lists this kernel, its name, and the
    #: path of the notebook (else console, else file) of the kernel's session there
    server_id: str | None = None
    server_name: str | None = None
    notebook_path: str | None = None
    #: whether kernelmon's culler may shut this server's kernel down (the user allowed it
    #: for its server; never for other kernels: their origin decides)
    server_culling: bool = False
    #: when a kernelmon first saw this kernel of another application (kept across launches)
    first_seen: datetime | None = None
    #: since when its application is gone (an orphan)
    orphan_since: datetime | None = None
    #: why kernelmon cannot prove which process is this kernel ("unverifiable"): it then
    #: sends it no signal (docs/identity.md); None when proven or not needed
    identity_problem: str | None = None
    # -- resource use of the kernel's process tree (latest sample; None until sampled) --
    cpu_percent: float | None = None
    rss: int | None = None
    pss: int | None = None
    uss: int | None = None
    processes: int | None = None
    message_rate: float | None = None
    #: What the kernel's backend refuses now (see ``KernelBackend.refusals``): set by the
    #: backend, called for each model.
    refusals_of: Callable[[], dict[str, str]] | None = field(
        default=None, repr=False, compare=False
    )

    def to_model(self) -> KernelModel:
        """A JSON-safe dict (what the table and Jupyter's REST API show)."""
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name or self.name,
            "origin": str(self.origin),
            "location": self.location,
            "last_activity": None if self.last_activity_note else isoformat(self.last_activity),
            "last_activity_note": self.last_activity_note,
            "started": isoformat(self.started),
            "execution_state": str(self.execution_state),
            "connections": self.connections,
            "pid": self.pid,
            "cwd": self.cwd,
            "reason": self.reason,
            "restarts": self.restarts,
            "buffered": self.buffered,
            "buffer_dropped": self.buffer_dropped,
            "messages": self.messages,
            "bad_messages": self.bad_messages,
            "can_restart": self.can_restart,
            "can_interrupt": self.can_interrupt,
            "connection_file": self.connection_file,
            "transport": self.transport,
            "ip": self.ip,
            "ports": dict(self.ports),
            "parent_pid": self.parent_pid,
            "parent_app": self.parent_app,
            "parent_alive": self.parent_alive,
            "server_url": self.server_url,
            "server_id": self.server_id,
            "server_name": self.server_name,
            "notebook_path": self.notebook_path,
            "first_seen": isoformat(self.first_seen),
            "orphan_since": isoformat(self.orphan_since),
            "identity_problem": self.identity_problem,
            "cpu_percent": self.cpu_percent,
            "rss": self.rss,
            "pss": self.pss,
            "uss": self.uss,
            "processes": self.processes,
            "message_rate": self.message_rate,
            "refusals": self.refusals_of() if self.refusals_of is not None else {},
        }
