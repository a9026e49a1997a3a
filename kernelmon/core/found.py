"""What a scan of the runtime folders found, applied to the map's records: which kernels
the map takes (``one_per_kernel``), their backends and records (``found_backend``), the
records' fields. Shared by the map's discovery and ``kernelmon list``'s one look."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import psutil

from .machine.discovery import FoundKernel
from .records import KernelRecord, Origin, assign

if TYPE_CHECKING:
    from .backends.base import KernelBackend
    from .backends.factory import BackendFactory

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


def one_per_kernel(
    kernels: Iterable[FoundKernel], live: Mapping[str, int]
) -> dict[str, FoundKernel]:
    """The kernels the map takes from a scan, by id: one that another kernelmon that still
    runs recorded as its own (``live``: kernel id or connection file -> that kernelmon's
    pid) is that kernelmon's (``owned_by_kernelmon``); of one id in several files (several
    folders), the one with a live process."""
    found: dict[str, FoundKernel] = {}
    for kernel in kernels:
        kid = kernel.kernel_id
        owner = live.get(kid) or live.get(kernel.connection_file)
        if owner is not None and kernel.pid is not None:
            kernel = owned_by_kernelmon(kernel, owner)
        other = found.get(kid)
        if other is None or (other.pid is None and kernel.pid is not None):
            found[kid] = kernel
    return found


def found_backend(
    found: FoundKernel,
    backends: BackendFactory,
    *,
    new_record: Callable[[str, str, str], KernelRecord],
    display_name: Callable[[str | None], str],
    external: Callable[[], KernelBackend],
    restore: Callable[[KernelRecord], None],
) -> KernelBackend:
    """The backend of a kernel a scan found, its record (the backend's ``record``) filled
    in; not attached (nothing is watched yet). A file with no process: a stale backend and
    a record from ``new_record(kernel_id, name, display_name)``. Another application's live
    kernel: ``external()``, which raises ``ExternalKernelError`` when it cannot be watched,
    and its idle clock from ``restore`` (the last activity a kernelmon saw, else when one
    first saw it; never its process's start, nor this launch's "now")."""
    name = found.kernel_name
    if found.origin == Origin.STALE:
        record = new_record(found.kernel_id, name or "", display_name(name))
        backend = backends.stale(record, found.connection_file)
        apply_found(record, found)
        return backend
    backend = external()
    record = backend.record
    apply_found(record, found)
    record.display_name = display_name(name)
    restore(record)
    return backend


class DisplayNames:
    """The installed kernel specs' display names ("" for a spec that is not installed),
    each looked up once in ``spec_manager()``'s specs (one not installed is looked up
    again next time: it may be installed meanwhile)."""

    def __init__(self, spec_manager: Callable[[], Any]) -> None:
        self._spec_manager = spec_manager
        self._names: dict[str, str] = {}

    def __call__(self, kernel_name: str | None) -> str:
        if not kernel_name:
            return ""
        if kernel_name not in self._names:
            try:
                spec = self._spec_manager().get_kernel_spec(kernel_name)
                self._names[kernel_name] = str(spec.display_name or "")
            except Exception:
                return ""  # not installed (yet): look again next time
        return self._names[kernel_name]
