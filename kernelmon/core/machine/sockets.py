"""The machine's sockets read once for many proofs (``identity``'s socket check).

psutil's ``Process.net_connections`` reads and parses every socket of the machine for each
process asked (``/proc/net/tcp``, ``tcp6``, ``unix``): proving 50 kernels on a machine with
a few hundred of them took half a second, most of ``kernelmon list``. A discovery scan's
proofs share one read here instead (Linux ``/proc``, read as psutil reads it); elsewhere,
and outside a scan (a proof before an action), psutil reads the tables as they are then.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator

import psutil


class SocketTables:
    """The machine's TCP listening sockets and Unix socket paths by inode, each table read
    once (when first needed), and each process's socket inodes, for many proofs in a row
    (``socket_tables_read_once``).

    psutil's ``Process.net_connections`` reads and parses every socket of the machine for
    each process asked (``/proc/net/tcp``, ``tcp6``, ``unix``): proving 50 kernels on a
    machine with a few hundred of them cost half a second. Read here (Linux ``/proc``,
    as psutil reads it) once per scan instead; a scan's proofs are of that moment anyway.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self._root = proc_root
        self._tcp: dict[int, tuple[str, int]] | None = None
        self._unix: dict[int, str] | None = None

    @classmethod
    def available(cls, proc_root: str = "/proc") -> bool:
        return sys.platform.startswith("linux") and os.path.exists(f"{proc_root}/net/tcp")

    def inodes(self, pid: int) -> set[int]:
        """The inodes of ``pid``'s open sockets (``psutil.Error`` as psutil would raise)."""
        folder = f"{self._root}/{pid}/fd"
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            raise psutil.NoSuchProcess(pid) from None
        except PermissionError:
            raise psutil.AccessDenied(pid) from None
        inodes = set()
        for name in names:
            try:
                target = os.readlink(f"{folder}/{name}")
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
        return inodes

    def listening(self) -> dict[int, tuple[str, int]]:
        """(ip, port) of every TCP socket in LISTEN state (IPv4 and IPv6), by inode."""
        if self._tcp is None:
            self._tcp = {}
            for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
                self._tcp.update(self._read_tcp(f"{self._root}/net/{name}", family))
        return self._tcp

    def unix_paths(self) -> dict[int, str]:
        """The path of every Unix socket with one, by inode."""
        if self._unix is None:
            self._unix = {}
            with contextlib.suppress(OSError), open(f"{self._root}/net/unix") as f:
                next(f, None)  # the header
                for line in f:
                    fields = line.split(maxsplit=7)
                    if len(fields) == 8 and fields[6].isdigit():
                        self._unix[int(fields[6])] = fields[7].rstrip("\n")
        return self._unix

    def listening_of(self, pid: int) -> list[tuple[str, int]]:
        """(ip, port) of ``pid``'s listening TCP sockets (``identity``'s check of the
        sockets a kernel holds reads them from here within a scan)."""
        listening = self.listening()
        return [listening[i] for i in self.inodes(pid) if i in listening]

    def unix_paths_of(self, pid: int) -> list[str]:
        """The paths of ``pid``'s Unix sockets that have one (as bound: maybe relative to
        the process's folder)."""
        paths = self.unix_paths()
        return [paths[i] for i in self.inodes(pid) if paths.get(i)]

    @staticmethod
    def _read_tcp(path: str, family: int) -> dict[int, tuple[str, int]]:
        found: dict[int, tuple[str, int]] = {}
        with contextlib.suppress(OSError), open(path) as f:
            next(f, None)  # the header
            for line in f:
                fields = line.split()
                if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                    continue
                address, _, port = fields[1].partition(":")
                with contextlib.suppress(ValueError):
                    found[int(fields[9])] = (_address(address, family), int(port, 16))
        return found


def _address(hex_address: str, family: int) -> str:
    """An address of ``/proc/net/tcp*`` (host-order 32-bit words, in hex) as text."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


_shared = threading.local()


def shared_tables() -> SocketTables | None:
    """The tables of the ``socket_tables_read_once`` this thread is in, if any."""
    return getattr(_shared, "tables", None)


@contextlib.contextmanager
def socket_tables_read_once() -> Iterator[None]:
    """Within this (in this thread), proofs share one read of the machine's socket tables
    (``SocketTables``): for the many proofs of one discovery scan. A proof before an action
    is made outside it, from the tables as they are then."""
    if getattr(_shared, "tables", None) is not None or not SocketTables.available():
        yield
        return
    _shared.tables = SocketTables()
    try:
        yield
    finally:
        _shared.tables = None
