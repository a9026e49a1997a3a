"""Kernels started "the way other tools do": by ``launcher.py`` in a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.backends.external import read_connection_file
from kernelmon.core.machine import discovery
from kernelmon.core.protocol.channels import SessionChannels
from kernelmon.core.records import ExecutionState
from tests.waiting import wait_until

LAUNCHER = Path(__file__).with_name("launcher.py")


@dataclass
class Launched:
    """A launcher process and the kernels it started."""

    proc: subprocess.Popen[str]
    runtime: Path
    kernels: list[dict[str, Any]]
    pids: set[int] = field(default_factory=set)

    def kernel(self, i: int = 0) -> dict[str, Any]:
        return self.kernels[i]


def _kill_tree(pids: set[int]) -> None:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            procs += [p, *p.children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=5)


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Launched]]:
    """``launch(n=1, kernel_name="python3", env=None, temp=False)`` starts a launcher with
    ``n`` kernels in a runtime folder of its own (``temp``: where a plain ``KernelManager``
    puts them, a temporary file in that folder, given to the launcher as ``TMPDIR``).
    Every process started (launchers, kernels, the kernels' children) is gone afterwards."""
    started: list[Launched] = []

    def start(
        n: int = 1,
        kernel_name: str = "python3",
        env: dict[str, str] | None = None,
        temp: bool = False,
    ) -> Launched:
        runtime = tmp_path_factory.mktemp("runtime")
        environ = {**os.environ, **(env or {})}
        if temp:
            environ["TMPDIR"] = str(runtime)
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "-" if temp else str(runtime), str(n), kernel_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
        )
        launched = Launched(proc, runtime, [])
        started.append(launched)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"launcher failed: see {runtime}"
        info = json.loads(line)
        launched.kernels = info["kernels"]
        launched.pids = {k["pid"] for k in launched.kernels}
        return launched

    yield start
    for launched in started:
        # Remember the kernels' children before the kernels go (they would be reparented).
        tree = set(launched.pids)
        for pid in launched.pids:
            with contextlib.suppress(psutil.Error):
                tree |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        if launched.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert launched.proc.stdin is not None
                launched.proc.stdin.close()
            try:
                launched.proc.wait(10)
            except subprocess.TimeoutExpired:
                launched.proc.send_signal(signal.SIGKILL)
                launched.proc.wait(5)
        if launched.proc.stdout is not None:
            launched.proc.stdout.close()
        _kill_tree(tree)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Path]:
    # A short path, as a user's runtime folder is: under pytest-xdist's deeper temporary
    # folders an IPC socket path would not fit and the map's kernels would use TCP.
    folder = Path(tempfile.mkdtemp(prefix="km-rt-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def kmap(aio, runtime, tmp_path_factory):
    """A kernel map with discovery on, kernels and connection files in ``runtime``."""
    root = tmp_path_factory.mktemp("root")
    km = KernelMap(
        Settings(root_dir=str(root), kernel_info_timeout=30, sample_interval=0.2),
        shutdown_wait=2.0,
        connection_dir=str(runtime),
        runtime_dirs=[str(runtime)],
    )
    aio.run(km.start_monitoring())
    yield km
    aio.run(km.close())
    assert len(km) == 0


class Frontend:
    """A test's own frontend session on a kernel (kernelmon's SessionChannels)."""

    def __init__(self, connection_file: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.channels = SessionChannels(
            read_connection_file(connection_file), f"test-{os.getpid()}", lambda: None
        )
        self.channels.handler = lambda channel, msg: self.messages.append((channel, msg))

    def execute(self, code: str) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        return self.channels.send("shell", "execute_request", content)

    def reply(self, msg_id: str) -> dict[str, Any] | None:
        for channel, msg in self.messages:
            if channel == "shell" and msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    def iopub(self) -> list[dict[str, Any]]:
        return [m for c, m in self.messages if c == "iopub"]

    def close(self) -> None:
        self.channels.close()


@pytest.fixture
def frontends() -> Iterator[Callable[[str], Frontend]]:
    opened: list[Frontend] = []

    def open_frontend(connection_file: str) -> Frontend:
        f = Frontend(connection_file)
        opened.append(f)
        return f

    yield open_frontend
    for f in opened:
        f.close()


async def interrupted_cell(
    kmap: KernelMap, kernel_id: str, front: Frontend | Callable[[], Frontend]
) -> dict[str, Any]:
    """Run a long cell through ``front`` (or the frontend it opens, inside the loop),
    interrupt it with ``kmap`` once the map shows the kernel busy, and return its reply."""
    if not isinstance(front, Frontend):
        front = front()
    await asyncio.sleep(0.3)  # the shell socket connects
    msg_id = front.execute("import time; time.sleep(30)")
    await wait_until(
        lambda: kmap.record(kernel_id).execution_state == ExecutionState.BUSY, what="busy"
    )
    await kmap.interrupt_kernel(kernel_id)
    await wait_until(lambda: front.reply(msg_id) is not None, timeout=10, what="reply")
    reply = front.reply(msg_id)
    assert reply is not None
    return reply


def own_processes(monkeypatch: pytest.MonkeyPatch, *roots: int) -> None:
    """Discovery sees only ``roots`` and their descendants in the process table (other
    people's kernels on the machine stay out of the test's map)."""
    whole = discovery.process_table

    def table() -> dict[int, discovery.ProcessFacts]:
        full = whole()
        keep: set[int] = set()
        for root in roots:
            with contextlib.suppress(psutil.Error):
                keep |= {root, *(c.pid for c in psutil.Process(root).children(recursive=True))}
        return {pid: facts for pid, facts in full.items() if pid in keep}

    monkeypatch.setattr(discovery, "process_table", table)
