"""Every kernel on the machine: connection files and Jupyter server files in runtime folders.

``scan_runtime(folders)`` reads ``kernel-*.json`` connection files and ``jpserver-*.json`` /
``nbserver-*.json`` server files, finds each kernel's process (the process whose command line
names the connection file) and the application that launched it, and says who owns each
kernel with the pure ``classify``. Files that cannot be read or parsed are reported in
``Scan.problems``; they never stop a scan.

``RuntimeWatcher`` rescans every few seconds (the process table is read in a worker thread)
and calls back for kernels that appeared, vanished or changed (origin, process, parent).

Connection keys and server tokens are secrets: ``FoundKernel`` keeps no key at all (the
backend that talks to the kernel reads it from the file), and ``FoundServer`` keeps its
token out of ``repr``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..periodic import Periodic
from ..records import Origin
from ..threads import run_in_thread
from .identity import (
    MAX_DESCENDANTS,
    PORT_NAMES,
    Proof,
    find_kernel_pid,
    is_local_address,
    start_ticks,
)
from .kernel_files import kernel_listening, unproven_server

logger = logging.getLogger(__name__)

#: Set to "0" to find kernels only in the runtime folders, not also through the process
#: table (the test suite does, so that other kernels on the machine stay out of its maps).
SCAN_PROCESSES_ENV = "KERNELMON_SCAN_PROCESSES"
#: Connection files larger than this are not kernel connection files.
MAX_FILE_SIZE = 1 << 20
#: Processes that adopt orphans: a kernel whose parent is one of these lost its application.
REAPER_NAMES = frozenset(
    {
        "init",
        "systemd",
        "launchd",
        "tini",
        "dumb-init",
        "docker-init",
        "catatonit",
        "s6-svscan",
        "runit",
        "upstart",
    }
)
_PYTHON_NAMES = ("python", "pypy")
#: Options after which a connection file is the kernel's own, or a frontend's to connect to.
KERNEL_OPTIONS = frozenset(
    {"-f", "--f", "--connection-file", "--connection_file", "--IPKernelApp.connection_file"}
)
CLIENT_OPTIONS = frozenset({"--existing"})


# -- what a scan finds --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """A file in a runtime folder that could not be used, and why."""

    path: str
    message: str


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
class ProcessFacts:
    """What the process table says about one process."""

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    zombie: bool = False
    create_time: float | None = None


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


@dataclass(frozen=True, slots=True)
class FoundServer:
    """A Jupyter server (or classic notebook server) info file."""

    path: str
    pid: int | None
    url: str | None
    port: int | None
    root_dir: str | None
    version: str | None
    alive: bool
    token: str = field(default="", repr=False)


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

    def by_kernel_id(self) -> dict[str, FoundKernel]:
        return {k.kernel_id: k for k in self.kernels.values()}


# -- pure decisions -----------------------------------------------------------------------


def kernel_id_from_path(path: str | os.PathLike[str]) -> str:
    """``kernel-<id>.json`` -> ``<id>``."""
    name = os.path.basename(os.fspath(path))
    if name.startswith("kernel-"):
        name = name[len("kernel-") :]
    if name.endswith(".json"):
        name = name[: -len(".json")]
    return name


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


def classify(
    kernel_id: str,
    connection_file: str,
    pid: int | None,
    parent_pid: int | None,
    parent_alive: bool,
    *,
    owned: Collection[str] = (),
    reapers: Collection[int] = (),
    first_parent_pid: int | None = None,
) -> Origin:
    """Who owns a kernel.

    ``owned`` holds kernel ids and/or connection file paths of kernelmon's own kernels.
    ``reapers`` are PIDs of processes that adopt orphans (PID 1 always is one);
    ``first_parent_pid`` is the parent seen when the kernel was first found, if any.
    """
    if kernel_id in owned or connection_file in owned:
        return Origin.OWNED
    if pid is None:
        return Origin.STALE
    if (
        parent_pid is None
        or parent_pid <= 1
        or not parent_alive
        or parent_pid in reapers
        or (first_parent_pid is not None and first_parent_pid != parent_pid)
    ):
        return Origin.ORPHAN
    return Origin.EXTERNAL


def app_summary(name: str | None, cmdline: Sequence[str]) -> str:
    """A short name for an application from its process name and command line:
    ``jupyter-lab``, ``code``, ``spyder``, ``python script.py``, ``python -m module``."""
    args = [a for a in cmdline if a]
    prog = os.path.basename(args[0]) if args else (name or "?")
    if prog.lower().startswith(_PYTHON_NAMES) or (
        name is not None and name.lower().startswith(_PYTHON_NAMES) and not args
    ):
        rest = args[1:]
        i = 0
        while i < len(rest):
            arg = rest[i]
            if arg == "-m" and i + 1 < len(rest):
                module = rest[i + 1]
                if module == "jupyter" and i + 2 < len(rest):  # python -m jupyter lab
                    return f"jupyter-{rest[i + 2]}"
                return f"python -m {module}"
            if arg == "-c":
                return "python -c"
            if arg.startswith("-"):
                i += 1
                continue
            script = os.path.basename(arg)
            if script.startswith("jupyter") and i + 1 < len(rest) and script == "jupyter":
                return f"jupyter-{rest[i + 1]}"
            return f"python {script}" if script.endswith(".py") else script
        return "python"
    if prog == "jupyter" and len(args) > 1:
        return f"jupyter-{args[1]}"
    return prog or (name or "?")


def _pick(candidate: str, paths: Sequence[str]) -> str | None:
    """The file among ``paths`` (all of one name) that ``candidate`` names: by name when it
    is the only one, else by its full path (None if that does not tell them apart)."""
    if len(paths) == 1:
        return paths[0]
    for path in paths:
        if os.path.normpath(candidate) == path or os.path.realpath(candidate) == os.path.realpath(
            path
        ):
            return path
    return None


def _named_file(
    cmdline: Sequence[str], by_name: Mapping[str, Sequence[str]]
) -> tuple[str, bool] | None:
    """(connection file, named after a kernel option?) if ``cmdline`` names one of the
    files as a kernel would; None if it names none, or names it as a frontend does."""
    previous = ""
    for arg in cmdline:
        option, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        candidate, option = (value, option) if eq else (arg, previous)
        paths = by_name.get(os.path.basename(candidate)) if candidate else None
        path = _pick(candidate, paths) if paths else None
        if path is not None:
            if option in CLIENT_OPTIONS:
                return None
            return path, option in KERNEL_OPTIONS
        previous = arg
    return None


def kernel_candidates(
    processes: Iterable[ProcessFacts], connection_files: Iterable[str]
) -> dict[str, list[ProcessFacts]]:
    """For each connection file (by path), the processes whose arguments name it: its
    kernel, the kernel's wrappers and forked workers, and viewers or editors of the file
    (only ``identity`` tells them apart). A frontend (``--existing FILE``) and a zombie
    never are. Most likely first: named after a kernel option (``-f``), innermost of a
    chain of wrappers, oldest."""
    by_name: dict[str, list[str]] = {}
    for f in connection_files:
        by_name.setdefault(os.path.basename(f), []).append(f)
    matches: dict[str, list[tuple[ProcessFacts, bool]]] = {}
    for proc in processes:
        if proc.zombie:
            continue
        named = _named_file(proc.cmdline, by_name)
        if named is not None:
            matches.setdefault(named[0], []).append((proc, named[1]))
    result: dict[str, list[ProcessFacts]] = {}
    for path, found in matches.items():
        parents = {p.ppid for p, _flagged in found}
        result[path] = [
            p
            for p, _flagged in sorted(
                found,
                key=lambda m: (not m[1], m[0].pid in parents, m[0].create_time or 0.0),
            )
        ]
    return result


#: ``prove(info, candidates)``: the proven kernel among candidate processes.
Prover = Callable[[Mapping[str, Any], Sequence[ProcessFacts]], Proof]


def prove_among(info: Mapping[str, Any], candidates: Sequence[ProcessFacts]) -> Proof:
    """The real proof (``identity.find_kernel_pid``) over the candidates' PIDs."""
    return find_kernel_pid(info, [p.pid for p in candidates])


#: Programs that start a kernel for an application (a wrapper in a kernel spec, an
#: environment runner): when one of them just started the kernel, the application is above.
LAUNCHER_NAMES = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "fish",
        "env",
        "conda",
        "mamba",
        "micromamba",
        "uv",
        "pixi",
        "poetry",
        "pipenv",
        "hatch",
        "pdm",
        "nice",
        "nohup",
        "setsid",
        "stdbuf",
        "timeout",
    }
)
#: A launcher started at most this many seconds before its child "just started" it.
LAUNCH_WINDOW = 5.0


def _program(proc: ProcessFacts) -> str:
    arg0 = proc.cmdline[0] if proc.cmdline else ""
    return (os.path.basename(arg0) or proc.name).lower()


def application_pid(
    kernel: ProcessFacts, connection_file: str, table: Mapping[int, ProcessFacts]
) -> int:
    """The PID of the application that launched ``kernel``: its first ancestor that is not
    part of the kernel's own launch chain. A wrapper whose arguments name the same
    connection file (``bash wrap.sh FILE``, ``sh -c "... -f FILE"``, ``conda run ...``) is
    part of it, and so is a shell or environment runner that started just before its child
    (it only exec'd or forked the kernel)."""
    name = os.path.basename(connection_file)
    child, pid = kernel, kernel.ppid
    seen = {kernel.pid}
    while pid > 1 and pid not in seen:
        proc = table.get(pid)
        if proc is None or proc.name.lower() in REAPER_NAMES:
            break
        seen.add(pid)
        names_it = any(name in arg for arg in proc.cmdline)
        just_started = (
            _program(proc) in LAUNCHER_NAMES
            and proc.create_time is not None
            and child.create_time is not None
            and 0 <= child.create_time - proc.create_time <= LAUNCH_WINDOW
        )
        if not (names_it or just_started):
            break
        child, pid = proc, proc.ppid
    return pid


def find_kernel_processes(
    table: Mapping[int, ProcessFacts],
    connection_files: Mapping[str, Mapping[str, Any]],
    *,
    prove: Prover = prove_among,
    known: Mapping[str, FoundKernel] | None = None,
) -> dict[str, tuple[ProcessFacts, Proof]]:
    """For each connection file (path -> its connection info), its kernel process, with
    ``ppid`` replaced by the application that launched it (``application_pid``), and the
    proof: ``ok`` when proven (``identity``), else a candidate that could not be checked and
    why. When every candidate is refuted, their descendants are tried (a wrapper that hands
    the file to its child in an environment variable). Files whose candidates and their
    descendants are all refuted (viewers, editors, no process) are left out.

    ``known``: the last scan's kernels; one proven then, whose process is still a
    candidate with the same start time, is not proven again (a kernel keeps its sockets).
    """
    candidates = kernel_candidates(table.values(), connection_files)
    result: dict[str, tuple[ProcessFacts, Proof]] = {}
    children: dict[int, list[ProcessFacts]] | None = None
    for path, procs in candidates.items():
        before = (known or {}).get(path)
        proof: Proof | None = None
        if before is not None and before.pid is not None and before.identity_problem is None:
            facts = table.get(before.pid)
            if (
                facts is not None
                and facts.create_time == before.pid_started
                and _below(facts, {p.pid for p in procs}, table)
            ):
                proof = Proof(True, facts.pid)
        if proof is None:
            proof = prove(connection_files[path], procs)
        if not proof.ok and proof.refuted:
            # a wrapper that names the file but hands it to its child another way
            # (an environment variable): the kernel is among its descendants
            if children is None:
                children = {}
                for facts in table.values():
                    children.setdefault(facts.ppid, []).append(facts)
            below = _descendants(procs, children)
            if below:
                deeper = prove(connection_files[path], below)
                if deeper.ok or not deeper.refuted:
                    proof = deeper
        if proof.pid is None or proof.pid not in table or (not proof.ok and proof.refuted):
            continue
        facts = table[proof.pid]
        app = application_pid(facts, path, table)
        result[path] = (dataclasses.replace(facts, ppid=app), proof)
    return result


def _below(proc: ProcessFacts, pids: Collection[int], table: Mapping[int, ProcessFacts]) -> bool:
    """Whether ``proc`` is one of ``pids`` or a descendant of one."""
    seen: set[int] = set()
    current: ProcessFacts | None = proc
    while current is not None and current.pid not in seen and len(seen) <= MAX_DESCENDANTS:
        if current.pid in pids:
            return True
        seen.add(current.pid)
        current = table.get(current.ppid)
    return False


def _descendants(
    procs: Sequence[ProcessFacts], children: Mapping[int, Sequence[ProcessFacts]]
) -> list[ProcessFacts]:
    """The living descendants of ``procs`` that are not among them (at most
    ``MAX_DESCENDANTS``), nearest first."""
    seen = {p.pid for p in procs}
    found: list[ProcessFacts] = []
    queue = list(procs)
    while queue and len(found) < MAX_DESCENDANTS:
        for child in children.get(queue.pop(0).pid, ()):
            if child.pid not in seen and not child.zombie:
                seen.add(child.pid)
                found.append(child)
                queue.append(child)
    return found[:MAX_DESCENDANTS]


def info_of(facts: ConnectionFacts) -> dict[str, Any]:
    """Connection info (without key) from a file's facts, as ``identity`` reads it."""
    return {"transport": facts.transport, "ip": facts.ip, **facts.ports}


# -- reading the machine ------------------------------------------------------------------


def process_table() -> dict[int, ProcessFacts]:
    """Every process visible to us (unreadable fields are left empty, never raised)."""
    table: dict[int, ProcessFacts] = {}
    for proc in psutil.process_iter(
        ["pid", "ppid", "name", "cmdline", "status", "create_time"], ad_value=None
    ):
        try:
            info = proc.info
        except psutil.Error:  # pragma: no cover - process_iter already caught these
            continue
        table[proc.pid] = ProcessFacts(
            pid=proc.pid,
            ppid=info.get("ppid") or 0,
            name=info.get("name") or "",
            cmdline=tuple(info.get("cmdline") or ()),
            zombie=info.get("status") == psutil.STATUS_ZOMBIE,
            create_time=info.get("create_time"),
        )
    return table


def read_runtime_file(path: str | os.PathLike[str], limit: int = MAX_FILE_SIZE) -> bytes:
    """A runtime file's bytes, never blocking on it: opened non-blocking (a FIFO or device
    would block a plain ``open``), regular files only, at most ``limit`` bytes.
    ``OSError`` if it cannot be read, ``ValueError`` saying why it is not a runtime file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if st.st_size > limit:
            raise ValueError("is too large for a Jupyter runtime file")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError("is too large for a Jupyter runtime file")
    return b"".join(chunks)


def read_runtime_json(path: str | os.PathLike[str]) -> Any:
    """A runtime file's JSON (``read_runtime_file``); ``ValueError`` says what is wrong."""
    raw = read_runtime_file(path)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"is not valid JSON: {e}") from None


def _read_json(path: Path, problems: list[ScanProblem]) -> Any:
    try:
        return read_runtime_json(path)
    except OSError as e:
        problems.append(ScanProblem(str(path), f"cannot be read: {e.strerror or e}"))
    except ValueError as e:
        problems.append(ScanProblem(str(path), str(e)))
    return None


def _list(folder: Path, problems: list[ScanProblem]) -> list[Path]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as e:
        problems.append(ScanProblem(str(folder), f"cannot be listed: {e.strerror or e}"))
        return []
    return [folder / n for n in sorted(names)]


def _is_alive(table: Mapping[int, ProcessFacts], pid: int | None) -> bool:
    facts = table.get(pid) if pid else None
    return facts is not None and not facts.zombie


def _server(path: Path, data: object, table: Mapping[int, ProcessFacts]) -> FoundServer:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def get(key: str, kind: type) -> Any:
        value = data.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    pid = get("pid", int)
    return FoundServer(
        path=str(path),
        pid=pid,
        url=get("url", str),
        port=get("port", int),
        root_dir=get("root_dir", str) or get("notebook_dir", str),
        version=get("version", str),
        alive=_is_alive(table, pid),
        token=get("token", str) or "",
    )


def _flagged_files(cmdline: Sequence[str]) -> Iterator[str]:
    """The ``.json`` files named after a kernel option (``-f FILE``, ``--f=FILE``)."""
    previous = ""
    for arg in cmdline:
        option, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        candidate, option = (value, option) if eq else (arg, previous)
        if option in KERNEL_OPTIONS and candidate.endswith(".json"):
            yield candidate
        previous = arg


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
        for path in _flagged_files(proc.cmdline):
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
        for entry in _list(folder, scan.problems):
            name = entry.name
            if not name.endswith(".json"):
                continue
            if name.startswith("kernel-"):
                data = _read_json(entry, scan.problems)
                if data is None:
                    continue
                try:
                    conn_files[str(entry)] = parse_connection_info(data)
                except ValueError as e:
                    scan.problems.append(ScanProblem(str(entry), f"is not a connection file: {e}"))
            elif name.startswith(("jpserver-", "nbserver-")):
                data = _read_json(entry, scan.problems)
                if data is not None:
                    server_files.append((entry, data))
    if table is None:
        table = process_table()
    from_process = (
        _process_connection_files(table, conn_files, previous, scan) if from_processes else {}
    )
    for server_file, data in server_files:
        try:
            scan.servers.append(_server(server_file, data, table))
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


def default_folders(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The Jupyter runtime folder followed by ``extra`` folders."""
    from jupyter_core.paths import jupyter_runtime_dir

    return [Path(jupyter_runtime_dir()), *(Path(f) for f in extra)]


# -- watching -----------------------------------------------------------------------------


def _changed(old: FoundKernel, new: FoundKernel) -> bool:
    def facts(k: FoundKernel) -> tuple[object, ...]:
        return (k.origin, k.pid, k.parent_pid, k.parent_alive, k.kernel_name, k.identity_problem)

    return facts(old) != facts(new)


class RuntimeWatcher:
    """Rescans runtime folders every ``interval`` seconds and reports what changed.

    ``on_appeared(kernel)``, ``on_vanished(kernel)`` and ``on_changed(old, new)`` are called
    on the loop's thread, then ``on_scanned(scan)`` with the whole scan; one that raises is
    logged and the others still run. A kernel
    "changes" when its origin, process, parent or kernel name changes. ``owned`` is asked
    on every scan for the kernel ids / connection files kernelmon owns. New problems (a
    file that cannot be read) are logged once each and kept in ``problems``.
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]] | None = None,
        *,
        interval: float = 2.0,
        owned: Callable[[], Collection[str]] = frozenset,
        on_appeared: Callable[[FoundKernel], None] | None = None,
        on_vanished: Callable[[FoundKernel], None] | None = None,
        on_changed: Callable[[FoundKernel, FoundKernel], None] | None = None,
        on_scanned: Callable[[Scan], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        self.folders = [Path(f) for f in folders] if folders is not None else default_folders()
        self.interval = interval
        self._owned = owned
        self.on_appeared = on_appeared
        self.on_vanished = on_vanished
        self.on_changed = on_changed
        self.on_scanned = on_scanned
        #: called with each new scan in the scan's worker thread, before the callbacks (for
        #: blocking work on what was found, such as reading connection files)
        self.prepare: Callable[[Scan], None] | None = None
        self.scan = Scan()
        self.problems: dict[tuple[str, str], ScanProblem] = {}
        self._periodic = Periodic(
            self.rescan, lambda: self.interval, "Scanning the Jupyter runtime folders"
        )
        self._lock = asyncio.Lock()

    @property
    def kernels(self) -> dict[str, FoundKernel]:
        return self.scan.kernels

    @property
    def running(self) -> bool:
        return self._periodic.running

    def start(self) -> None:
        """Start the periodic scans (inside a running loop); the first one runs at once."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def rescan(self) -> Scan:
        """Scan now (in a worker thread), report the differences, return the scan."""
        async with self._lock:
            owned = frozenset(self._owned())
            new = await run_in_thread(self._scan, owned)
            old, self.scan = self.scan, new
            self._report_problems(new.problems)
            for path, kernel in new.kernels.items():
                before = old.kernels.get(path)
                if before is None:
                    self._call(self.on_appeared, kernel)
                elif _changed(before, kernel):
                    self._call(self.on_changed, before, kernel)
            for path, kernel in old.kernels.items():
                if path not in new.kernels:
                    self._call(self.on_vanished, kernel)
            self._call(self.on_scanned, new)
            return new

    def _scan(self, owned: Collection[str]) -> Scan:
        scan = scan_runtime(self.folders, owned, self.scan)
        self._call(self.prepare, scan)
        return scan

    def _report_problems(self, problems: list[ScanProblem]) -> None:
        current = {(p.path, p.message): p for p in problems}
        for key, problem in current.items():
            if key not in self.problems:
                logger.info("Runtime file %s %s", problem.path, problem.message)
        self.problems = current

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: FoundKernel | Scan) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("A runtime watcher callback failed")
