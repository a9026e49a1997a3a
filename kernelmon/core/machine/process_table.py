"""The process table, as kernel discovery reads it: every process's facts, which processes
name a connection file (candidates, never a proof), and which application launched a kernel.

Pure functions of a ``ProcessFacts`` table (tests pass made-up ones), and ``process_table()``
that reads the machine's (blocking: run it in a thread).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from ..records import Origin
from .identity import (
    MAX_DESCENDANTS,
    Proof,
    find_kernel_pid,
)
from .sockets import socket_tables_read_once

if TYPE_CHECKING:
    from .discovery import FoundKernel

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


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What the process table says about one process."""

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    zombie: bool = False
    create_time: float | None = None


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


def alive_in(table: Mapping[int, ProcessFacts], pid: int | None) -> bool:
    facts = table.get(pid) if pid else None
    return facts is not None and not facts.zombie


def flagged_files(cmdline: Sequence[str]) -> Iterator[str]:
    """The ``.json`` files named after a kernel option (``-f FILE``, ``--f=FILE``)."""
    previous = ""
    for arg in cmdline:
        option, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        candidate, option = (value, option) if eq else (arg, previous)
        if option in KERNEL_OPTIONS and candidate.endswith(".json"):
            yield candidate
        previous = arg


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
    The proofs share one read of the machine's socket tables (``socket_tables_read_once``).
    """
    with socket_tables_read_once():
        return _find_kernel_processes(table, connection_files, prove, known)


def _find_kernel_processes(
    table: Mapping[int, ProcessFacts],
    connection_files: Mapping[str, Mapping[str, Any]],
    prove: Prover,
    known: Mapping[str, FoundKernel] | None,
) -> dict[str, tuple[ProcessFacts, Proof]]:
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
