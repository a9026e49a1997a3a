"""Which files a connection file's kernel leaves behind, and which of them kernelmon may
delete: only a dead kernel's own (docs/identity.md, "Where the proof is made").

* ``kernel_listening(info)``: why a kernel of ``info`` may still run (something listens).
* ``kernel_of_other_file`` / ``unproven_server``: a served file whose server is proven the
  kernel of another file is a stale copy of that one.
* ``kernel_files(connection_file)``: the files kernelmon may delete: the file itself and
  the IPC socket files derived from it, only inside the file's own folder, only when
  nothing listens on the kernel's sockets; ``remove_kernel_files`` deletes exactly those
  (``remove_connection_files`` too, logging what stays).
* ``make_private`` / ``make_sockets_private``: folders 0700, an IPC kernel's sockets 0600.

Everything here blocks (it reads ``/proc``, connects to sockets): call it from a worker
thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from .identity import (
    CONNECT_TIMEOUT,
    KERNEL_OPTIONS,
    PORT_NAMES,
    PROOF_PORTS,
    STARTUP_GRACE,
    WILDCARDS,
    find_kernel_pid,
    ip_matches,
    ipc_paths,
    is_local_address,
    kernel_ports,
    prove_kernel,
    resolve_host,
)

logger = logging.getLogger(__name__)

# -- what may be deleted --------------------------------------------------------------------


def _served(path: str) -> bool:
    """Whether a process accepts connections on the Unix socket file ``path`` (when in
    doubt: True)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        s.close()
    return True


def _tcp_served(ip: str, port: int) -> bool:
    host = "127.0.0.1" if ip in WILDCARDS or ip == "localhost" else ip
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a host name: resolved with a bounded wait, never by connect
        addresses = resolve_host(host)
        if not addresses:
            return True  # in doubt: served
        host = addresses[0]
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return True


def kernel_listening(info: Mapping[str, Any]) -> str | None:
    """Why a kernel of ``info`` may still be running (something listens on one of its
    sockets, or it cannot be checked), or None when nothing does."""
    if info.get("transport", "tcp") == "ipc":
        for path in ipc_paths(info):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode) and _served(path):
                    return f"a process listens on the kernel's socket {path}"
        return None
    ip = info.get("ip")
    ports = kernel_ports(info, PROOF_PORTS)
    if not isinstance(ip, str) or ports is None:
        return "it names no usable address"
    if not is_local_address(ip):
        return f"it names another machine's address ({ip})"
    for port in ports:
        if _tcp_served(ip, port):
            return f"a process listens on the kernel's port {port}"
    return None


@dataclass(frozen=True, slots=True)
class KernelFiles:
    """The files kernelmon may delete for a connection file, and why others are kept."""

    removable: tuple[str, ...]
    #: (path, reason) of files left in place
    kept: tuple[tuple[str, str], ...] = ()
    #: why the connection file itself is kept (None if it may go, or is gone)
    reason: str | None = None


def _own_regular(path: str, kind: int) -> str | None:
    """Why ``path`` is not ours to delete as a file of ``kind`` (None if it is)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "it does not exist"
    except OSError as e:
        return f"it cannot be checked: {e.strerror or e}"
    if stat.S_IFMT(st.st_mode) != kind:
        return "it is not a " + ("socket" if kind == stat.S_IFSOCK else "regular file")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        return "it belongs to another user"
    return None


def _naming_processes(connection_file: str) -> tuple[list[int], list[int]]:
    """(PIDs of processes whose arguments name ``connection_file``, those of them naming it
    after a kernel option such as ``-f``): a scan of the process table, for deletions only."""
    target = os.path.realpath(connection_file)
    name = os.path.basename(connection_file)
    naming: list[int] = []
    as_kernel: list[int] = []
    for proc in psutil.process_iter(["cmdline"], ad_value=None):
        args = proc.info.get("cmdline") or ()
        for i, arg in enumerate(args):
            option, eq, value = arg.partition("=")
            named, flagged = (value, option in KERNEL_OPTIONS) if eq else (arg, False)
            if not eq and i > 0 and args[i - 1] in KERNEL_OPTIONS:
                flagged = True
            if os.path.basename(named) == name and os.path.realpath(named) == target:
                naming.append(proc.pid)
                if flagged:
                    as_kernel.append(proc.pid)
                break
    return naming, as_kernel


def _holders(info: Mapping[str, Any]) -> set[int]:
    """PIDs of this user's processes listening on the kernel's shell socket, from the
    machine's socket table (psutil reads every process's descriptors: only for the rare
    served file no process naming it is proven to serve)."""
    pids: set[int] = set()
    try:
        if info.get("transport", "tcp") == "ipc":
            paths = ipc_paths(info, ("shell_port",))
            if not paths:
                return pids
            wanted = os.path.abspath(paths[0])
            for conn in psutil.net_connections(kind="unix"):
                if conn.pid and isinstance(conn.laddr, str) and conn.laddr == wanted:
                    pids.add(conn.pid)
            return pids
        ports, ip = kernel_ports(info, ("shell_port",)), info.get("ip")
        if ports is None or not isinstance(ip, str):
            return pids
        for conn in psutil.net_connections(kind="tcp"):
            if (
                conn.pid
                and conn.status == psutil.CONN_LISTEN
                and conn.laddr
                and conn.laddr.port == ports[0]
                and ip_matches(conn.laddr.ip, ip)
            ):
                pids.add(conn.pid)
    except (psutil.Error, OSError):
        pass
    return pids


def _same_sockets(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("transport", "ip", *PORT_NAMES)
    return all(
        a.get(k, "tcp" if k == "transport" else None)
        == b.get(k, "tcp" if k == "transport" else None)
        for k in keys
    )


def kernel_of_other_file(connection_file: str, info: Mapping[str, Any]) -> str | None:
    """The other connection file whose kernel, proven, serves the sockets ``info`` names
    (``connection_file`` is then a stale copy of it), or None. Blocking: call it from a
    worker thread."""
    from .discovery import read_runtime_json

    target = os.path.realpath(connection_file)
    for pid in sorted(_holders(info)):
        proof = find_kernel_pid(info, [pid])
        if not proof.ok or proof.pid is None:
            continue
        try:
            proc = psutil.Process(proof.pid)
            args, cwd = proc.cmdline(), proc.cwd()
        except psutil.Error:
            continue
        for i, arg in enumerate(args):
            option, eq, value = arg.partition("=")
            named = value if eq and option in KERNEL_OPTIONS else None
            if not eq and i > 0 and args[i - 1] in KERNEL_OPTIONS:
                named = arg
            if not named:
                continue
            other = os.path.realpath(os.path.join(cwd, named))
            if other == target:
                return None  # it is this file's kernel
            try:
                other_info = read_runtime_json(other)
            except (OSError, ValueError):
                continue
            if (
                isinstance(other_info, dict)
                and _same_sockets(other_info, info)
                and prove_kernel(proof.pid, other_info)
            ):
                return other
    return None


def unproven_server(connection_file: str, info: Mapping[str, Any], listening: str) -> str | None:
    """Why a connection file whose sockets are served (``listening``, from
    ``kernel_listening``) must be taken for a live kernel that cannot be proven, or None
    when the server is proven to be the kernel of another file (a stale copy of it)."""
    other = kernel_of_other_file(connection_file, info)
    if other is not None:
        return None
    return (
        f"{listening.capitalize()}, but no process could be proven to be its kernel (it may "
        "be started through a wrapper kernelmon cannot follow, or run in a container or "
        "behind a tunnel)."
    )


def _file_in_use(path: str, info: Mapping[str, Any]) -> str | None:
    """Why a live process may be using the connection file ``path`` (None if none is): a
    process that names it (or a descendant of one) is proven its kernel, its sockets are
    served by a process that cannot be proven to be another file's kernel, or a process
    names it as its connection file while the file is young (a kernel binds its sockets
    after the file is written)."""
    listening = kernel_listening(info)
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        age = 0.0
    young = -STARTUP_GRACE < age < STARTUP_GRACE
    if listening is None and not young:
        return None  # nothing serves its sockets and no kernel can still be starting on it
    naming, as_kernel = _naming_processes(path)
    if listening is not None:
        proof = find_kernel_pid(info, naming, descendants=True)
        if proof.ok:
            return f"process {proof.pid} runs this kernel"
        if naming and not proof.refuted:
            return f"{listening}, and {proof.reason}"
        unproven = unproven_server(path, info, listening)
        if unproven is not None:
            return unproven.rstrip(".")
    if young and as_kernel:
        return "a process names it as its connection file and may still be starting"
    return None


def _keep(path: str, why: str) -> KernelFiles:
    return KernelFiles((), ((path, why),), why)


def kernel_files(connection_file: str, info: Mapping[str, Any] | None = None) -> KernelFiles:
    """What kernelmon may delete for ``connection_file``: the file itself, when no live
    process uses it (no process naming it holds the kernel's sockets or may still be
    starting on it), and the IPC socket files derived from it (``<ip>-<port>``) that are our
    sockets inside the connection file's own folder on which nothing listens. Nothing a
    record or another file names is ever deleted on its word (a stale copy of a live
    kernel's file goes, the live kernel's sockets stay). ``info``: the parsed contents."""
    path = os.path.abspath(connection_file)
    if not os.path.lexists(path):
        return KernelFiles(())  # nothing left to delete (its socket files are unknown)
    if not path.endswith(".json"):
        return _keep(path, "it is not a connection file (*.json)")
    why = _own_regular(path, stat.S_IFREG)
    if why is not None:
        return _keep(path, why)
    from .discovery import parse_connection_info, read_runtime_json

    try:
        if info is None:
            info = read_runtime_json(path)
        parse_connection_info(info)
    except (OSError, ValueError) as e:
        return _keep(path, f"it cannot be read as a connection file: {e}")
    assert info is not None
    busy = _file_in_use(path, info)
    if busy is not None:
        return _keep(path, busy)
    removable = [path]
    kept: list[tuple[str, str]] = []
    folder = os.path.realpath(os.path.dirname(path))
    for sock in ipc_paths(info):
        if not os.path.lexists(sock):
            continue
        if not os.path.isabs(sock) or os.path.realpath(os.path.dirname(sock)) != folder:
            kept.append((sock, "it is not in the connection file's folder"))
            continue
        why = _own_regular(sock, stat.S_IFSOCK)
        if why is None and _served(sock):
            why = "a process listens on it (a live kernel's socket)"
        if why is not None:
            kept.append((sock, why))
        else:
            removable.append(sock)
    return KernelFiles(tuple(removable), tuple(kept))


def remove_kernel_files(connection_file: str, info: Mapping[str, Any] | None = None) -> KernelFiles:
    """Delete what ``kernel_files`` allows (blocking: run it in a thread); returns it."""
    files = kernel_files(connection_file, info)
    for path in files.removable:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return files


# -- private folders ------------------------------------------------------------------------


def make_private(folder: str) -> None:
    """Create ``folder`` (0700) or, when it exists and is ours, take group and other access
    away from it. ``PermissionError`` if it belongs to another user."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.stat(folder)
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return
    if st.st_uid != getuid():
        raise PermissionError(
            f"The connection folder {folder} belongs to another user; kernelmon keeps its "
            "kernels' connection files only in folders of its own."
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, stat.S_IMODE(st.st_mode) & 0o700)


def make_sockets_private(info: Mapping[str, Any]) -> None:
    """Take group and other access away from an IPC kernel's socket files (0600): zmq
    creates them with the kernel's umask. Files that are not our sockets are left alone."""
    for path in ipc_paths(info):
        if _own_regular(path, stat.S_IFSOCK) is None:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)


def remove_connection_files(connection_file: str) -> None:
    """Remove a dead kernel's connection file and, for IPC kernels, its socket files: only
    what ``kernel_files`` proves is the dead kernel's own (in the file's folder, nothing
    listening); what stays is logged."""
    files = remove_kernel_files(connection_file)
    for path, why in files.kept:
        logger.warning("Kept %s: %s", path, why)
