"""What a scan of the runtime folders found, applied to the map's records (pure)."""

from __future__ import annotations

import dataclasses

import psutil

from .machine.discovery import FoundKernel
from .records import KernelRecord, Origin, assign

#: Origins of kernels another application started that still have a process.
OTHERS_LIVE = frozenset({Origin.EXTERNAL, Origin.ORPHAN})


def apply_found(
    record: KernelRecord, found: FoundKernel, owned: bool = False, *, keep_problem: bool = False
) -> set[str]:
    """Copy what a scan found onto a record; returns the names of the fields that changed.

    For kernelmon's own kernels (``owned``) only how they are reached is copied: their
    process is known better by their backend (a scan may see it mid-restart).
    ``keep_problem``: the record's identity problem stays unless the scan found one too (the
    backend's proof before an action found it, and the scan did not prove the process the
    backend acts on: a scan that ran meanwhile, or proved a process started at another time).
    """
    values: dict[str, object] = {
        "connection_file": found.connection_file,
        "transport": found.transport,
        "ip": found.ip,
        "ports": dict(found.ports),
    }
    if not owned:
        values.update(
            origin=found.origin,
            pid=found.pid,
            parent_pid=found.parent_pid,
            parent_app=found.parent_app,
            parent_alive=found.parent_alive,
            server_url=found.server_url,
        )
        if not keep_problem or found.identity_problem is not None:
            values["identity_problem"] = found.identity_problem
    return assign(record, values)


def apply_process(record: KernelRecord, found: FoundKernel) -> set[str]:
    """Copy the facts of a kernel's process onto the record of a server's kernel (its
    origin, state and server stay the server's); returns the names of the changed fields."""
    values: dict[str, object] = {
        "connection_file": found.connection_file,
        "transport": found.transport,
        "ip": found.ip,
        "ports": dict(found.ports),
        "pid": found.pid,
        "parent_pid": found.parent_pid,
        "parent_app": found.parent_app,
        "parent_alive": found.parent_alive,
        "identity_problem": found.identity_problem,
    }
    return assign(record, values)


def owned_by_kernelmon(found: FoundKernel, kernelmon_pid: int) -> FoundKernel:
    """A kernel another kernelmon process that still runs recorded as its own: external,
    its application being that kernelmon (never an orphan, whatever its parent process)."""
    return dataclasses.replace(
        found,
        origin=Origin.EXTERNAL,
        parent_pid=kernelmon_pid,
        parent_name="kernelmon",
        parent_app="kernelmon",
        parent_alive=True,
        first_parent_pid=kernelmon_pid,
    )


def descends_from(pid: int | None, parent_pid: int | None, ancestor: int | None) -> bool:
    """Whether the process ``pid`` (whose parent is ``parent_pid``) was started by the
    process ``ancestor`` (a local Jupyter server's, as its runtime file says): its child, or
    a descendant (a kernel a wrapper script launched) when ``ancestor`` did not start
    kernelmon too. A runtime file may name any pid, and init, the user's session or shell
    and kernelmon itself are ancestors of nearly every process. A few reads of the process
    table, only when the parent is not ``ancestor``."""
    if pid is None or ancestor is None or ancestor <= 1:
        return False
    if parent_pid == ancestor:
        return True
    try:
        me = psutil.Process()
        if ancestor == me.pid or any(p.pid == ancestor for p in me.parents()):
            return False
        return any(p.pid == ancestor for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False
