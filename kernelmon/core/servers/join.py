"""A server's poll applied to the kernel map: its kernels join the map, change, or leave it.

One row per kernel: a kernel a local server lists that discovery already shows (found by its
connection file, as another application's kernel) and whose process that server started
becomes the server's kernel *in the same row* (``Registry.replace``), keeping its process
facts (PID, connection file; the sampler keeps measuring it). A kernel that is no longer
listed by a server that answered leaves the map as "gone from the server" (with "culled by
the server?" when it was idle); while a server cannot be asked, its kernels stay listed,
their state unknown and their ``reason`` saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from itertools import compress
from operator import is_not
from typing import TYPE_CHECKING, Any

from ..backends.factory import BackendFactory
from ..found import descends_from
from ..records import ExecutionState, KernelRecord, Origin, assign
from ..registry import Entry, Membership
from .config import Applied
from .model import RemoteKernel, kernel_state
from .status import ServerStatus

if TYPE_CHECKING:
    from .config import Snapshot
    from .watch import ServerWatch

logger = logging.getLogger(__name__)

#: Facts of a kernel's process on this machine, kept when a found kernel joins its server.
PROCESS_FIELDS = (
    "pid",
    "cwd",
    "connection_file",
    "transport",
    "ip",
    "ports",
    "parent_pid",
    "parent_app",
    "parent_alive",
    "first_seen",
    "identity_problem",
    "cpu_percent",
    "rss",
    "pss",
    "uss",
    "processes",
)
#: Origins of the rows a local server's kernel takes over (found by discovery).
_FOUND = frozenset({Origin.EXTERNAL, Origin.ORPHAN, Origin.STALE})


#: What the servers part reads of the registry and changes in it.
JoinRegistry = Membership


def entries_of(
    registry: JoinRegistry, watch: ServerWatch, among: Iterable[str] | None = None
) -> list[Entry]:
    """The map's entries of ``watch``'s server: its index ``watch.rows`` read (ids that left
    the map, or are no longer its kernels, are dropped from it), all of them or those
    ``among`` its ids."""
    entries = []
    for kid in list(watch.rows) if among is None else among:
        entry = registry.find(kid)
        if entry is not None and entry.backend.server_id() == watch.id:
            entries.append(entry)
        else:
            del watch.rows[kid]
            watch.applied = None
    return entries


def _facts(watch: ServerWatch, kernel: RemoteKernel, path: str | None) -> dict[str, Any]:
    config = watch.config
    return kernel_state(kernel) | {
        "server_id": config.id,
        "server_url": config.url,
        "server_name": config.name,
        "notebook_path": path,
        "server_culling": config.kernelmon_culling,
        "last_activity_note": None,
    }


def joinable(record: KernelRecord, server_pid: int | None) -> bool:
    """Whether a found kernel's row may become the local server's (whose process is
    ``server_pid``): its process was started by the server's (its child or a descendant),
    or it has no process (a connection file, the kernel maybe starting: discovery hands the
    row back if the process it finds later is not the server's). A runtime file names any
    pid and URL it likes: a kernel id listed by such a server takes over no running kernel."""
    return record.origin == Origin.STALE or descends_from(record.pid, record.parent_pid, server_pid)


def _new_entry(
    registry: JoinRegistry,
    backends: BackendFactory,
    watch: ServerWatch,
    kernel: RemoteKernel,
    old: Entry | None,
) -> Entry:
    record = registry.new_record(kernel.id, kernel.name, watch.display_name(kernel.name))
    record.origin = Origin.SERVER
    record.location = watch.config.url
    info: dict[str, Any] | None = None
    if old is not None and joinable(old.record, watch.config.pid):
        for name in PROCESS_FIELDS:
            setattr(record, name, getattr(old.record, name))
        record.started = old.record.started
        record.messages = old.record.messages
        try:
            info = old.backend.connection_info
        except Exception:
            info = None
    return Entry(record, backends.server(record, watch, info))


def apply_snapshot(
    registry: JoinRegistry,
    backends: BackendFactory,
    watch: ServerWatch,
    snapshot: Snapshot | None,
    now: datetime,
    *,
    others: bool = True,
) -> None:
    """Make the map's kernels of ``watch``'s server what a poll saw (see the module).
    ``others=False``: the snapshot says nothing of the kernels it does not have (a start's
    answer, the one new kernel), which are left as they are."""
    last, watch.applied = watch.applied, None
    if snapshot is None:
        _unreachable(registry, watch)
        return
    for kid, ended in list(watch.ended.items()):
        if snapshot.number > ended:
            del watch.ended[kid]  # this poll began after the shutdown: it tells the truth
    kernels = snapshot.kernels
    if (
        others
        and last is not None
        and last.members == registry.members
        and snapshot.paths is last.paths
        and kernels.keys() == last.kernels.keys()
    ):
        # The last poll applied whole left every kernel it listed a row of this server as it
        # said, and no entry of the map came, went or was replaced since: only the kernels the
        # server says otherwise now need a look (a poll where one kernel of a hundred changed
        # looks at one; the listings keep their order, and so their dicts: ``_by_id``).
        fresh = list(compress(kernels, map(is_not, kernels.values(), last.kernels.values())))
        if _apply_kernels(registry, backends, watch, snapshot, fresh) == len(fresh):
            watch.applied = Applied(kernels, snapshot.paths, registry.members)
        return
    if snapshot.unchanged and _all_ours(registry, watch, snapshot):
        return  # the cost of a poll of an unchanged server: a lookup per kernel
    ours = _apply_kernels(registry, backends, watch, snapshot, kernels)
    if not others:
        return
    for entry in entries_of(registry, watch, [kid for kid in watch.rows if kid not in kernels]):
        kid = entry.record.id
        if entry.shutting_down:
            continue
        if watch.born.get(kid, -1) >= snapshot.number:
            continue  # added while this poll ran: the next one judges it
        if snapshot.complete or kid in snapshot.missing:
            gone(registry, watch, entry)
        else:
            _set_unseen(registry, entry, watch)
    if ours == len(kernels) == len(watch.rows) and not watch.ended:
        watch.applied = Applied(kernels, snapshot.paths, registry.members)


def _apply_kernels(
    registry: JoinRegistry,
    backends: BackendFactory,
    watch: ServerWatch,
    snapshot: Snapshot,
    kids: Iterable[str],
) -> int:
    """Apply what the snapshot says of the kernels ``kids``; returns how many of them are
    now rows of this server as it said."""
    config = watch.config
    kernels, rows, paths, find, shut = (
        snapshot.kernels,
        watch.rows,
        snapshot.paths,
        registry.find,
        watch.ended,
    )
    ours = 0
    for kid in kids:
        # (this loop runs for every kernel of a server whose listing changed: the common
        # case, a row as the server said it last time, is decided first and with the least)
        kernel = kernels[kid]
        row = rows.get(kid)
        path = paths.get(kid)
        if row is not None and row[0] is kernel and row[1] == path:
            entry = find(kid)
            if row[2] is entry:
                ours += 1
                continue  # its row, as the server said last time (others changed)
        else:
            entry = find(kid)
        if kid in shut:
            continue  # listed by a poll that began before kernelmon shut it down
        owner = entry.backend.server_id() if entry is not None else None
        if owner == config.id:
            assert entry is not None
            same = row is not None and row[0] == kernel and row[1] == path
            rows[kid] = (kernel, path, entry)
            ours += 1
            if same:
                continue  # as the server said last time (read again, the same)
            fields = assign(entry.record, _facts(watch, kernel, path))
            if fields:
                registry.changed(entry.record, fields, None)
            continue
        if entry is None or (
            config.local
            and owner is None
            and entry.record.origin in _FOUND
            and not entry.shutting_down
            and joinable(entry.record, config.pid)
        ):
            new = _new_entry(registry, backends, watch, kernel, entry)
            assign(new.record, _facts(watch, kernel, path))
            watch.born.setdefault(kid, snapshot.number)
            rows[kid] = (kernel, path, new)
            ours += 1
            if entry is None:
                registry.add(new)
                logger.info("Kernel %s of %s joins the map", kid, config.url)
            else:
                registry.replace(new)
                logger.info("Kernel %s is now shown as a kernel of %s", kid, config.url)
        # else: kernelmon's own, or another server's kernel of the same id
    return ours


def _all_ours(registry: JoinRegistry, watch: ServerWatch, snapshot: Snapshot) -> bool:
    """Whether every kernel of the snapshot is a row of this server already (else one found
    since, or started by someone else, joins): its row's entry is still the map's."""
    rows, find = watch.rows, registry.find
    for kid in snapshot.kernels:
        row = rows.get(kid)
        if row is None or find(kid) is not row[2]:
            return False
    return True


def gone(registry: JoinRegistry, watch: ServerWatch, entry: Entry) -> None:
    """A kernel the server no longer lists leaves the map, saying so."""
    record = entry.record
    reason = f"gone from the server {watch.config.name}"
    # a server keeps a kernel nobody opened a websocket to "starting" in its model: to its
    # culler that is an idle kernel like any other
    if record.execution_state in (ExecutionState.IDLE, ExecutionState.STARTING):
        reason += " (culled by the server?)"
    logger.warning("Kernel %s is %s", record.id, reason)
    watch.born.pop(record.id, None)
    watch.rows.pop(record.id, None)
    watch.applied = None
    if record.id in watch.config.started:
        watch.config.started.remove(record.id)
    entry.backend.close()
    registry.remove(entry, reason)


def _set_unseen(registry: JoinRegistry, entry: Entry, watch: ServerWatch) -> None:
    why = (
        f"the server {watch.config.name} does not let kernelmon list its kernels; "
        "it shows only the kernels kernelmon started there"
    )
    _mark_unknown(registry, watch, entry, why)


def _mark_unknown(registry: JoinRegistry, watch: ServerWatch, entry: Entry, why: str) -> None:
    """The server cannot say how the kernel is now: its state is unknown, for ``why``."""
    watch.row_is_news(entry.record.id)
    fields = assign(entry.record, {"execution_state": ExecutionState.UNKNOWN, "reason": why})
    if fields:
        registry.changed(entry.record, fields, None)


def _unreachable(registry: JoinRegistry, watch: ServerWatch) -> None:
    lost = watch.status in (ServerStatus.UNREACHABLE, ServerStatus.TIMEOUT)
    why = f"server {'unreachable' if lost else 'not usable'} ({watch.status_text()})"
    for entry in entries_of(registry, watch):
        _mark_unknown(registry, watch, entry, why)


def set_culling(registry: JoinRegistry, watch: ServerWatch) -> None:
    """The server's kernels follow its ``kernelmon_culling`` flag."""
    for entry in entries_of(registry, watch):
        if assign(entry.record, {"server_culling": watch.config.kernelmon_culling}):
            registry.changed(entry.record, {"server_culling"}, None)
