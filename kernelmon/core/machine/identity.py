"""Proof that a process is a kernel.

kernelmon signals, kills and deletes on the user's behalf, so it acts only on what it can
prove, at that moment, belongs to the kernel of a connection file (docs/identity.md says why
this evidence and not another):

* ``prove_kernel(pid, info)``: the process exists, is not a zombie, runs as this user,
  started when it was first seen (start time in clock ticks since boot, immune to
  wall-clock steps) and **holds the kernel's listening sockets** (TCP: a LISTEN socket on
  the shell and heartbeat ports; IPC: the ``<ip>-<port>`` socket files bound by it), and
  its parent does not hold them too (a forked ``multiprocessing`` worker inherits the
  listening sockets; the kernel is the ancestor-most holder). A viewer or editor of the
  file (``tail -f``, ``less``) holds no socket and is refused.
* ``find_kernel_pid(info, candidates)``: the proven kernel among candidate processes.

Which files a dead kernel leaves behind, and which kernelmon may delete, is
``kernel_files``' part (it proves with these).

Each check reads only the one process's file descriptors (psutil reads ``/proc/<pid>/fd``
and the socket tables, and nothing when the process has no socket), so proving is cheap
enough to do before every signal. The many proofs of one discovery scan share one read of
the machine's socket tables (``sockets.socket_tables_read_once``); a proof before an action
reads them as they are then.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from .sockets import shared_tables

#: The ports a kernel must be listening on for a process to be proven its kernel. Every
#: kernel binds all five; these two are enough and are what ``jupyter_client`` checks first.
PROOF_PORTS = ("shell_port", "hb_port")
#: All the ports of a connection file (the IPC socket files are ``<ip>-<port>``).
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
#: Seconds to wait for a connection when checking whether a socket is still served.
CONNECT_TIMEOUT = 1.0
#: A connection file younger than this whose kernel may still be binding its sockets (a
#: process names it as its connection file) is never deleted.
STARTUP_GRACE = 60.0
WILDCARDS = frozenset({"", "*", "0.0.0.0", "::"})
KERNEL_OPTIONS = ("-f", "--f", "--connection-file", "--connection_file")
#: At most this many descendants of a wrapper are looked at for the kernel.
MAX_DESCENDANTS = 64
#: Seconds a host name in a connection file may take to resolve, and how long an answer
#: (or a resolver that did not answer) is remembered.
RESOLVE_TIMEOUT = 2.0
RESOLVE_TTL = 60.0


@dataclass(frozen=True, slots=True)
class Proof:
    """Whether a process is proven to be a kernel; ``reason`` is a sentence for the UI when
    it is not."""

    ok: bool
    pid: int | None = None
    reason: str | None = None
    #: the evidence says it is not the kernel (gone, reused, no sockets, a worker); False
    #: when it could not be checked (another user's process, access denied)
    refuted: bool = True

    def __post_init__(self) -> None:
        if self.ok and self.pid is None:
            raise ValueError("a proof that succeeds names the proven process")

    def __bool__(self) -> bool:
        return self.ok


def refused(reason: str, pid: int | None = None, *, refuted: bool = True) -> Proof:
    return Proof(False, pid, reason, refuted)


# -- start times ----------------------------------------------------------------------------


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (None when it is gone).

    On Linux this is field 22 of ``/proc/<pid>/stat``: the kernel's own count, which no
    wall-clock step (NTP after a resume, a VM's clock) moves, so a PID reused by a newer
    process is told apart exactly. Elsewhere it falls back to psutil's ``create_time()`` in
    hundredths of a second: that is wall-clock based and moves when the clock is stepped
    (a live process may then look replaced, so kernelmon refuses to act, never the reverse).
    """
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # the command name (field 2) is in parentheses and may itself contain ") "
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            return int(fields[19])  # field 22, counting from 1 before the name
        except (IndexError, ValueError):
            return None
    try:
        return round(psutil.Process(pid).create_time() * 100)
    except psutil.Error:
        return None


# -- the sockets a kernel listens on --------------------------------------------------------


def kernel_ports(info: Mapping[str, Any], names: Iterable[str]) -> list[int] | None:
    ports = []
    for name in names:
        value = info.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            return None
        ports.append(value)
    return ports


def ipc_paths(info: Mapping[str, Any], names: Iterable[str] = PORT_NAMES) -> list[str]:
    """The socket files of an IPC kernel (``<ip>-<port>``), for the ports it names."""
    ip = info.get("ip")
    if info.get("transport") != "ipc" or not isinstance(ip, str) or not ip:
        return []
    paths = []
    for name in names:
        port = info.get(name)
        if isinstance(port, int) and not isinstance(port, bool):
            paths.append(f"{ip}-{port}")
    return paths


def ip_matches(bound: str, wanted: str) -> bool:
    if bound in WILDCARDS or wanted in WILDCARDS or bound == wanted:
        return True
    if wanted == "localhost":
        return bound in ("127.0.0.1", "::1")
    try:
        return ipaddress.ip_address(bound) == ipaddress.ip_address(wanted)
    except ValueError:
        return True  # a host name: the port alone tells


def _holds_sockets(proc: psutil.Process, info: Mapping[str, Any]) -> bool:
    """Whether ``proc`` holds the kernel's listening sockets (``psutil.Error`` if it cannot
    be inspected)."""
    if info.get("transport", "tcp") == "ipc":
        wanted = set(ipc_paths(info, PROOF_PORTS))
        if len(wanted) != len(PROOF_PORTS):
            return False
        bound = _unix_paths(proc)
        if any(not os.path.isabs(p) for p in (*wanted, *bound)):
            cwd = proc.cwd()  # bound relative to the kernel's folder
            wanted = {os.path.join(cwd, p) for p in wanted}
            bound = [os.path.join(cwd, p) for p in bound]
        return wanted <= set(bound)
    ports = kernel_ports(info, PROOF_PORTS)
    ip = info.get("ip")
    if ports is None or not isinstance(ip, str):
        return False
    return set(ports) <= {port for address, port in _listening(proc) if ip_matches(address, ip)}


def _unix_paths(proc: psutil.Process) -> list[str]:
    """The paths of ``proc``'s Unix sockets that have one: from the scan's socket tables
    when read once for it (``sockets``), else from psutil."""
    tables = shared_tables()
    if tables is not None:
        return tables.unix_paths_of(proc.pid)
    bound: list[object] = [conn.laddr for conn in proc.net_connections(kind="unix")]
    return [path for path in bound if isinstance(path, str) and path]


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    """(ip, port) of ``proc``'s listening TCP sockets (from the scan's tables, as above)."""
    tables = shared_tables()
    if tables is not None:
        return tables.listening_of(proc.pid)
    return [
        (conn.laddr.ip, conn.laddr.port)
        for conn in proc.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr
    ]


def _same_user(proc: psutil.Process) -> bool:
    getuid = getattr(os, "getuid", None)
    return getuid is None or bool(proc.uids().real == getuid())


def same_process(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the running process of this user that started at ``ticks``
    (``start_ticks``). For a process proven the kernel when it started then, this is
    still proof: (PID, start ticks) names one process, whatever it holds now (a kernel
    shutting down closes its sockets before it exits)."""
    if ticks is None:
        return False
    try:
        proc = psutil.Process(pid)
        running = proc.status() != psutil.STATUS_ZOMBIE and _same_user(proc)
    except psutil.Error:
        return False
    return running and start_ticks(pid) == ticks


def prove_kernel(pid: int, info: Mapping[str, Any], *, started_ticks: int | None = None) -> Proof:
    """Whether process ``pid`` is, now, the kernel of connection info ``info``.

    ``started_ticks``: the ``start_ticks`` seen when the kernel was found or launched; a
    process that started at another time is another process with a reused PID.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return refused(f"Process {pid} has exited.", pid)
        if not _same_user(proc):
            return refused(f"Process {pid} runs as another user.", pid, refuted=False)
        if started_ticks is not None and start_ticks(pid) != started_ticks:
            return refused(
                f"Process {pid} is not the kernel's process any more: the kernel exited and "
                "another process got its number.",
                pid,
            )
        if not _holds_sockets(proc, info):
            return refused(
                f"Process {pid} does not hold the kernel's sockets, so it is not the kernel "
                "(perhaps a viewer or editor of its connection file).",
                pid,
            )
        parent = proc.parent()
        if parent is not None and _holds_quietly(parent, info):
            return refused(
                f"Process {pid} is a child of process {parent.pid}, which holds the kernel's "
                "sockets too: it is a forked worker, not the kernel.",
                pid,
            )
    except psutil.NoSuchProcess:
        return refused(f"Process {pid} has exited.", pid)
    except psutil.AccessDenied:
        return refused(f"kernelmon may not inspect process {pid}.", pid, refuted=False)
    except psutil.Error as e:
        return refused(f"Process {pid} could not be inspected: {e}.", pid, refuted=False)
    return Proof(True, pid)


def _holds_quietly(proc: psutil.Process, info: Mapping[str, Any]) -> bool:
    try:
        return _holds_sockets(proc, info)
    except psutil.Error:
        return False


def find_kernel_pid(
    info: Mapping[str, Any], candidates: Iterable[int], *, descendants: bool = False
) -> Proof:
    """The kernel of ``info`` among ``candidates`` (processes whose arguments name its
    connection file), proven: a candidate holding its sockets, or the ancestor-most holder
    above it (the kernel a forked worker came from). ``descendants``: when no candidate is
    the kernel, also look among their descendants (a wrapper that names the file but hands
    it to its child another way, e.g. in an environment variable). ``reason`` says why
    none is."""
    candidates = list(dict.fromkeys(candidates))
    proof = _find_among(info, candidates)
    if proof.ok or not descendants or not proof.refuted:
        return proof
    below: list[int] = []
    for pid in candidates:
        with contextlib.suppress(psutil.Error):
            below += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    found = _find_among(info, [p for p in below if p not in candidates][:MAX_DESCENDANTS])
    return found if found.ok or not found.refuted else proof


def _find_among(info: Mapping[str, Any], candidates: Iterable[int]) -> Proof:
    first_refusal: Proof | None = None
    for pid in candidates:
        proof = prove_kernel(pid, info)
        if proof.ok:
            return proof
        try:
            proc = psutil.Process(pid)
            if not _same_user(proc) or not _holds_sockets(proc, info):
                first_refusal = first_refusal or proof
                continue
            top = proc  # a holder whose parent holds too: climb to the kernel
            while (parent := top.parent()) is not None and _holds_quietly(parent, info):
                top = parent
        except psutil.Error:
            first_refusal = first_refusal or proof
            continue
        return prove_kernel(top.pid, info)
    return first_refusal or refused("No process runs this kernel.")


# -- local addresses ------------------------------------------------------------------------


def is_local_address(ip: str, timeout: float = RESOLVE_TIMEOUT) -> bool:
    """Whether ``ip`` is an address of this machine (loopback, any, or one of its
    interfaces). A host name (``--ip=$(hostname)``) is resolved, waiting at most
    ``timeout`` seconds (``resolve_host``): blocking, call it from a worker thread."""
    if ip in ("localhost", "*", ""):
        return True
    try:
        addrs = [ipaddress.ip_address(ip)]
    except ValueError:
        addrs = [ipaddress.ip_address(a) for a in resolve_host(ip, timeout)]
    if not addrs:
        return False
    if all(a.is_loopback or a.is_unspecified for a in addrs):
        return True
    mine: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    with contextlib.suppress(Exception):
        for addresses in psutil.net_if_addrs().values():
            for a in addresses:
                if a.family in (socket.AF_INET, socket.AF_INET6):
                    with contextlib.suppress(ValueError):
                        mine.add(ipaddress.ip_address(a.address.split("%")[0]))
    # every address the name has must be this machine's (a name that also points
    # elsewhere may be connected to elsewhere)
    return all(a.is_loopback or a.is_unspecified or a in mine for a in addrs)


_resolved: dict[str, tuple[float, concurrent.futures.Future[tuple[str, ...]]]] = {}
_resolved_lock = threading.Lock()


def _lookup(host: str) -> concurrent.futures.Future[tuple[str, ...]]:
    """``getaddrinfo(host)`` in a daemon thread of its own (a hung lookup never keeps the
    process from exiting, as a pool's worker would)."""
    future: concurrent.futures.Future[tuple[str, ...]] = concurrent.futures.Future()

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            future.set_result(tuple(dict.fromkeys(str(i[4][0]).split("%")[0] for i in infos)))
        except Exception as e:
            future.set_exception(e)

    threading.Thread(target=run, name="kernelmon-resolve", daemon=True).start()
    return future


def resolve_host(host: str, timeout: float = RESOLVE_TIMEOUT) -> tuple[str, ...]:
    """The addresses of host name ``host`` (``()`` when it does not resolve within
    ``timeout`` seconds or at all). ``getaddrinfo`` has no timeout of its own, so it runs
    in a thread of its own and is waited for at most ``timeout``; answers are kept for
    ``RESOLVE_TTL`` seconds, and a name whose lookup still hangs is not looked up again
    meanwhile (a stuck resolver costs one thread, not one per scan). Thread-safe."""
    now = time.monotonic()
    with _resolved_lock:
        cached = _resolved.get(host)
        if cached is None or (cached[1].done() and now - cached[0] > RESOLVE_TTL):
            cached = (now, _lookup(host))
            _resolved[host] = cached
    try:
        return cached[1].result(timeout)
    except concurrent.futures.TimeoutError:
        return ()
    except Exception:  # it does not resolve
        return ()
