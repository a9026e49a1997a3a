"""Every kernel on the machine: connection files and Jupyter server files in runtime folders.

``scan_runtime(folders)`` reads ``kernel-*.json`` connection files and ``jpserver-*.json`` /
``nbserver-*.json`` server files, finds each kernel's process (the process whose command line
names the connection file) and the application that launched it, and says who owns each
kernel with the pure ``classify``. Files that cannot be read or parsed are reported in
``Scan.problems``; they never stop a scan.

The pieces live beside it: process_table.py (processes, candidates, launching
applications), runtime_files.py (reading files, server files, folders), watcher.py
(``RuntimeWatcher``: scans again and again, the last one kept). Their names used by other
modules are importable from here too.

Connection keys and server tokens are secrets: ``FoundKernel`` keeps no key at all (the
backend that talks to the kernel reads it from the file), and ``FoundServer`` keeps its
token out of ``repr``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import Origin
from .identity import (
    PORT_NAMES,
    Proof,
    is_local_address,
    start_ticks,
)
from .kernel_files import kernel_listening, unproven_server
from .process_table import (
    REAPER_NAMES,
    ProcessFacts,
    Prover,
    app_summary,
    application_pid,
    classify,
    find_kernel_processes,
    flagged_files,
    kernel_candidates,
    process_table,
    prove_among,
)
from .runtime_files import (
    FoundServer,
    ScanProblem,
    default_folders,
    kernel_id_from_path,
    list_folder,
    read_json_noting,
    read_runtime_json,
    server_of,
)

#: What other modules import from here (defined here or in the modules beside it).
__all__ = [
    "PORT_NAMES",
    "ConnectionFacts",
    "FoundKernel",
    "FoundServer",
    "ProcessFacts",
    "Scan",
    "ScanProblem",
    "app_summary",
    "application_pid",
    "classify",
    "default_folders",
    "find_kernel_processes",
    "info_of",
    "kernel_candidates",
    "kernel_id_from_path",
    "parse_connection_info",
    "process_table",
    "read_runtime_json",
    "scan_runtime",
]

logger = logging.getLogger(__name__)

#: Set to "0" to find kernels only in the runtime folders, not also through the process
#: table (the test suite does, so that other kernels on the machine stay out of its maps).
SCAN_PROCESSES_ENV = "KERNELMON_SCAN_PROCESSES"


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """What a connection file says about where a kernel listens (never its key)."""

    transport: str
    ip: str
    ports: Mapping[str, int]
    signature_scheme: str
    kernel_name: str | None
    has_key: bool


@dataclass(frozen=True, slots=True)
class FoundKernel:
    """A kernel connection file and what was found about its process and owner."""

    kernel_id: str
    connection_file: str
    transport: str
    ip: str
    ports: Mapping[str, int] = field(hash=False)
    signature_scheme: str = "hmac-sha256"
    kernel_name: str | None = None
    origin: Origin = Origin.STALE
    pid: int | None = None
    pid_started: float | None = None
    #: the application process that launched the kernel (its current parent)
    parent_pid: int | None = None
    parent_name: str | None = None
    #: a short description of the parent application ("jupyter-lab", "code", "python x.py")
    parent_app: str | None = None
    parent_alive: bool = False
    #: the parent seen when the kernel was first found (a later change means it was
    #: reparented: its application is gone)
    first_parent_pid: int | None = None
    #: the URL of the Jupyter server whose process is the kernel's parent, if any
    server_url: str | None = None
    #: the kernel process's start in clock ticks since boot (``identity.start_ticks``)
    pid_ticks: int | None = None
    #: why the process that seems to run it could not be proven to be the kernel (it is
    #: then never signalled), None when proven or when no process runs it
    identity_problem: str | None = None
    #: found through a process's arguments, not in a runtime folder
    from_process: bool = False

    def summary(self) -> str:
        parent = f"{self.parent_app} ({self.parent_pid})" if self.parent_pid else "none"
        return (
            f"kernel {self.kernel_id} [{self.origin}] pid={self.pid} parent={parent} "
            f"{self.transport}://{self.ip}"
        )


@dataclass(slots=True)
class Scan:
    """Everything found in the runtime folders at one moment."""

    #: by connection file path (absolute)
    kernels: dict[str, FoundKernel] = field(default_factory=dict)
    servers: list[FoundServer] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    #: (pid, start, file) of processes whose arguments name a file that is not a usable
    #: connection file, so that the next scan does not read it again
    ignored: set[tuple[int, float | None, str]] = field(default_factory=set)
    #: connection files whose sockets are served although no process naming them (nor a
    #: descendant of one) is proven their kernel: path -> why it is unverifiable, or None
    #: when the server is proven to be the kernel of another file (a stale copy)
    unproven: dict[str, str | None] = field(default_factory=dict)
    #: the process table the scan read (after the folders: a kernel whose file was found
    #: was already running), for the resource sampling of the same tick
    table: Mapping[int, ProcessFacts] = field(default_factory=dict, repr=False)

    def by_kernel_id(self) -> dict[str, FoundKernel]:
        return {k.kernel_id: k for k in self.kernels.values()}


def parse_connection_info(data: object) -> ConnectionFacts:
    """The facts of a connection file's JSON, or ``ValueError`` saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    transport = data.get("transport", "tcp")
    if transport not in ("tcp", "ipc"):
        raise ValueError(f"unknown transport {transport!r}")
    ip = data.get("ip")
    if not isinstance(ip, str) or not ip:
        raise ValueError("no 'ip'")
    if any(c < " " for c in ip):
        raise ValueError("its 'ip' holds control characters")
    if transport == "tcp":
        if "*" in ip:
            raise ValueError(f"its 'ip' {ip!r} is a wildcard, not an address to connect to")
        if not is_local_address(ip):
            raise ValueError(
                f"its 'ip' {ip!r} is another machine's address (kernelmon only watches "
                "kernels on this machine)"
            )
    ports: dict[str, int] = {}
    for name in PORT_NAMES:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ValueError(f"no valid {name!r}")
        ports[name] = value
    scheme = data.get("signature_scheme", "hmac-sha256")
    if not isinstance(scheme, str):
        raise ValueError("bad 'signature_scheme'")
    if not (scheme.startswith("hmac-") and scheme[5:] in hashlib.algorithms_available):
        raise ValueError(f"unknown 'signature_scheme' {scheme!r}")
    key = data.get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError("its 'key' is not a string")
    kernel_name = data.get("kernel_name")
    return ConnectionFacts(
        transport=transport,
        ip=ip,
        ports=ports,
        signature_scheme=scheme,
        kernel_name=kernel_name if isinstance(kernel_name, str) and kernel_name else None,
        has_key=isinstance(key, str) and bool(key),
    )


def info_of(facts: ConnectionFacts) -> dict[str, Any]:
    """Connection info (without key) from a file's facts, as ``identity`` reads it."""
    return {"transport": facts.transport, "ip": facts.ip, **facts.ports}


def _process_connection_files(
    table: Mapping[int, ProcessFacts],
    known: Mapping[str, object],
    previous: Scan | None,
    scan: Scan,
) -> dict[str, ConnectionFacts]:
    """Connection files outside the runtime folders that a process names as a kernel
    would (nbclient, papermill and plain ``KernelManager`` users write ``/tmp/tmpXXXX.json``):
    absolute paths to regular files of this user, read without blocking. Files that are not
    connection files are remembered (``Scan.ignored``) and not read again for that process."""
    known_real = {os.path.realpath(p) for p in known}
    kept = previous.kernels if previous is not None else {}
    ignored = previous.ignored if previous is not None else set()
    getuid = getattr(os, "getuid", None)
    found: dict[str, ConnectionFacts] = {}
    for proc in table.values():
        if proc.zombie:
            continue
        for path in flagged_files(proc.cmdline):
            key = (proc.pid, proc.create_time, path)
            if not os.path.isabs(path) or path in found or path in known:
                continue
            if key in ignored:
                scan.ignored.add(key)
                continue
            before = kept.get(path)
            if before is not None and before.from_process and before.pid == proc.pid:
                found[path] = ConnectionFacts(
                    before.transport,
                    before.ip,
                    before.ports,
                    before.signature_scheme,
                    before.kernel_name,
                    True,
                )
                continue
            try:
                if os.path.realpath(path) in known_real:
                    continue
                if getuid is not None and os.stat(path).st_uid != getuid():
                    raise ValueError("another user's file")
                found[path] = parse_connection_info(read_runtime_json(path))
            except (OSError, ValueError):
                scan.ignored.add(key)
    return found


def scan_runtime(
    folders: Iterable[str | os.PathLike[str]],
    owned: Collection[str] = (),
    previous: Scan | None = None,
    table: Mapping[int, ProcessFacts] | None = None,
    *,
    prove: Prover = prove_among,
    from_processes: bool | None = None,
) -> Scan:
    """Read the runtime folders and the process table (blocking: run it in a thread).

    ``owned``: kernel ids or connection file paths of kernelmon's own kernels.
    ``previous``: the last scan, so that a kernel whose parent changed since it was first
    seen is known to be orphaned even when its new parent is not a known reaper, and a
    kernel proven then is not proven again.
    ``table``, ``prove``: a process table and a proof to use instead of the machine's (for
    tests with made-up processes).
    ``from_processes``: also find kernels through the process table (default: unless the
    environment variable ``KERNELMON_SCAN_PROCESSES`` is ``0``).
    """
    if from_processes is None:
        from_processes = os.environ.get(SCAN_PROCESSES_ENV, "1") != "0"
    scan = Scan()
    conn_files: dict[str, ConnectionFacts] = {}
    server_files: list[tuple[Path, object]] = []
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder).absolute()
        if folder.resolve() in seen:  # the same folder twice, or through a symbolic link
            continue
        seen.add(folder.resolve())
        for entry in list_folder(folder, scan.problems):
            name = entry.name
            if not name.endswith(".json"):
                continue
            if name.startswith("kernel-"):
                data = read_json_noting(entry, scan.problems)
                if data is None:
                    continue
                try:
                    conn_files[str(entry)] = parse_connection_info(data)
                except ValueError as e:
                    scan.problems.append(ScanProblem(str(entry), f"is not a connection file: {e}"))
            elif name.startswith(("jpserver-", "nbserver-")):
                data = read_json_noting(entry, scan.problems)
                if data is not None:
                    server_files.append((entry, data))
    if table is None:
        table = process_table()
    scan.table = table
    from_process = (
        _process_connection_files(table, conn_files, previous, scan) if from_processes else {}
    )
    for server_file, data in server_files:
        try:
            scan.servers.append(server_of(server_file, data, table))
        except ValueError as e:
            scan.problems.append(ScanProblem(str(server_file), f"is not a server info file: {e}"))
    before = previous.kernels if previous is not None else {}
    infos = {path: info_of(facts) for path, facts in {**conn_files, **from_process}.items()}
    kernels = find_kernel_processes(table, infos, prove=prove, known=before)
    reapers = {pid for pid, p in table.items() if p.name.lower() in REAPER_NAMES} | {1}
    server_urls = {s.pid: s.url for s in scan.servers if s.pid and s.alive}
    for path, facts in {**conn_files, **from_process}.items():
        by_process = path in from_process
        kernel_id = kernel_id_from_path(path)
        proc, proof = kernels.get(path, (None, None))
        if by_process and (proc is None or proof is None or not proof.ok):
            continue  # only proven kernels are found through the process table
        pid = proc.pid if proc else None
        parent = table.get(proc.ppid) if proc else None
        parent_pid = proc.ppid if proc and proc.ppid else None
        parent_alive = parent is not None and not parent.zombie
        old = before.get(path)
        first_parent = parent_pid
        if old is not None and old.pid == pid and old.first_parent_pid is not None:
            first_parent = old.first_parent_pid
        origin = classify(
            kernel_id,
            path,
            pid,
            parent_pid,
            parent_alive,
            owned=owned,
            reapers=reapers,
            first_parent_pid=first_parent,
        )
        problem = proof.reason if proof is not None and not proof.ok else None
        if pid is None and origin == Origin.STALE:
            problem = _unproven(path, infos, kernels, previous, scan)
            if problem is not None:  # served: a live kernel that cannot be proven
                origin = Origin.EXTERNAL
        ticks = None
        if proc is not None and proof is not None and proof.ok:
            same = old is not None and old.pid == pid and old.pid_started == proc.create_time
            ticks = old.pid_ticks if same and old is not None else start_ticks(proc.pid)
        scan.kernels[path] = FoundKernel(
            kernel_id=kernel_id,
            connection_file=path,
            transport=facts.transport,
            ip=facts.ip,
            ports=facts.ports,
            signature_scheme=facts.signature_scheme,
            kernel_name=facts.kernel_name,
            origin=origin,
            pid=pid,
            pid_started=proc.create_time if proc else None,
            parent_pid=parent_pid,
            parent_name=parent.name if parent else None,
            parent_app=app_summary(parent.name, parent.cmdline) if parent else None,
            parent_alive=parent_alive,
            first_parent_pid=first_parent,
            server_url=server_urls.get(parent_pid) if parent_pid else None,
            pid_ticks=ticks,
            identity_problem=problem,
            from_process=by_process,
        )
    return scan


def _unproven(
    path: str,
    infos: Mapping[str, Mapping[str, Any]],
    kernels: Mapping[str, tuple[ProcessFacts, Proof]],
    previous: Scan | None,
    scan: Scan,
) -> str | None:
    """Why the connection file ``path``, with no proven kernel, must still be taken for a
    live kernel that cannot be proven (its sockets are served: by a kernel started in a
    way kernelmon cannot follow, in a container, behind a tunnel), or None when nothing
    serves them or their server is proven to be the kernel of another file (``path`` is a
    stale copy). The slow part (the machine's socket table) is done once per file and
    remembered while its sockets stay served."""
    info = infos[path]
    listening = kernel_listening(info)
    if listening is None:
        return None
    if previous is not None and path in previous.unproven:
        problem = previous.unproven[path]
    else:
        key = _sockets_key(info)
        copy = any(
            other != path and proof.ok and _sockets_key(infos[other]) == key
            for other, (_proc, proof) in kernels.items()
        )
        problem = None if copy else unproven_server(path, info, listening)
    scan.unproven[path] = problem
    return problem


def _sockets_key(info: Mapping[str, Any]) -> tuple[object, ...]:
    return tuple(info.get(k) for k in ("transport", "ip", *PORT_NAMES))
