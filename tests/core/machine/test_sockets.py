"""One read of the machine's socket tables for a scan's proofs says what psutil says, per
process: real listening sockets (TCP over IPv4 and IPv6, Unix socket files, absolute and
relative to the process's folder) held by a real child process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kernelmon.core.machine import identity
from kernelmon.core.machine.sockets import SocketTables, shared_tables, socket_tables_read_once

pytestmark = pytest.mark.skipif(not SocketTables.available(), reason="reads Linux /proc")

HOLDER = """
import json, os, socket, sys
folder = sys.argv[1]
os.chdir(folder)
held = []
def listen(family, ip):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((ip, 0))
    s.listen()
    held.append(s)
    return s.getsockname()[1]
ports = {"v4": [listen(socket.AF_INET, "127.0.0.1") for _ in range(2)]}
if socket.has_ipv6:
    try:
        ports["v6"] = [listen(socket.AF_INET6, "::1") for _ in range(2)]
    except OSError:
        pass
for name in ("kernel-1", "kernel-2", "rel-3", "rel-4"):
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(os.path.join(folder, name) if name.startswith("kernel") else name)
    u.listen()
    held.append(u)
print(json.dumps(ports), flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict, Path]]:
    folder = tmp_path_factory.mktemp("sockets")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        yield proc.pid, ports, folder
    finally:
        proc.kill()
        proc.wait(10)


def infos(ports: dict, folder: Path) -> list[dict]:
    """Connection infos the holder holds, and ones it does not."""
    shell, hb = ports["v4"]
    found = [
        {"transport": "tcp", "ip": "127.0.0.1", "shell_port": shell, "hb_port": hb},
        {"transport": "tcp", "ip": "0.0.0.0", "shell_port": shell, "hb_port": hb},
        {"transport": "tcp", "ip": "127.0.0.2", "shell_port": shell, "hb_port": hb},
        {"transport": "tcp", "ip": "127.0.0.1", "shell_port": shell, "hb_port": 1},
        {"transport": "ipc", "ip": str(folder / "kernel"), "shell_port": 1, "hb_port": 2},
        {"transport": "ipc", "ip": "rel", "shell_port": 3, "hb_port": 4},
        {"transport": "ipc", "ip": str(folder / "kernel"), "shell_port": 1, "hb_port": 9},
    ]
    if "v6" in ports:
        shell6, hb6 = ports["v6"]
        found += [
            {"transport": "tcp", "ip": "::1", "shell_port": shell6, "hb_port": hb6},
            {"transport": "tcp", "ip": "127.0.0.1", "shell_port": shell6, "hb_port": hb6},
        ]
    return found


def test_the_tables_read_once_say_what_psutil_says(holder):
    pid, ports, folder = holder
    cases = infos(ports, folder)
    said = {}
    for target in (pid, psutil.Process(pid).ppid()):  # the holder, and a process that is not
        proc = psutil.Process(target)
        said[target] = [identity._holds_sockets(proc, info) for info in cases]
        with socket_tables_read_once():
            assert shared_tables() is not None
            read_once = [identity._holds_sockets(proc, info) for info in cases]
        assert read_once == said[target], target
    # not a comparison of two "no"s: the holder holds the sockets of the first, second,
    # fifth and sixth (and of the IPv6 one), and not of the others
    assert said[pid][:7] == [True, True, False, False, True, True, False]
    assert not any(said[psutil.Process(pid).ppid()])


def test_a_scan_reads_the_tables_once_and_a_proof_outside_it_reads_them_again(holder):
    pid, ports, folder = holder
    info = infos(ports, folder)[0]
    assert shared_tables() is None
    with socket_tables_read_once():
        tables = shared_tables()
        assert tables is not None
        assert identity._holds_sockets(psutil.Process(pid), info)
        listening = tables.listening()
        with socket_tables_read_once():  # nested: the same tables
            assert shared_tables() is tables
        # a socket opened now is not in this scan's tables (read once)...
        late = socket.socket()
        late.bind(("127.0.0.1", 0))
        late.listen()
        try:
            port = late.getsockname()[1]
            assert tables.listening() is listening
            assert port not in {p for _ip, p in listening.values()}
        finally:
            late.close()
    # ...and outside the scan every proof reads the machine as it is then
    assert shared_tables() is None


def test_a_process_that_is_gone_is_an_error_as_with_psutil():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    with pytest.raises(psutil.NoSuchProcess):
        SocketTables().inodes(dead.pid)
