"""The real ``kernelmon`` executable in subprocesses, each module with folders of its own.

Every run of it here has Qt made unimportable (a ``sitecustomize`` that puts a blocking
finder first on ``sys.meta_path`` and notes each attempt in a file): the command line and
``serve`` must never import PySide6 or qasync.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernelmon.core.instance import LOCK_NAME
from tests.discovery.conftest import _kill_tree

KERNELMON = Path(sys.executable).with_name("kernelmon")
TESTS = Path(__file__).parent.parent
LAUNCHER = TESTS / "discovery" / "launcher.py"
KERNELMON_CHILD = TESTS / "reliability" / "kernelmon_child.py"

NO_QT = """
import os, sys

class NoQt:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "qasync"):
            with open(os.environ["KERNELMON_TEST_QT_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked: the command line must not import Qt")
        return None

sys.meta_path.insert(0, NoQt())
"""


@dataclass
class Cli:
    """Runs ``kernelmon`` with this module's folders (and Qt blocked)."""

    base: Path
    env: dict[str, str]

    @property
    def runtime(self) -> Path:
        return Path(self.env["JUPYTER_RUNTIME_DIR"])

    @property
    def state(self) -> Path:
        return Path(self.env["KERNELMON_STATE_DIR"])

    @property
    def qt_log(self) -> Path:
        return Path(self.env["KERNELMON_TEST_QT_LOG"])

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KERNELMON), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,  # no terminal: commands that ask need --yes
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def models(self, *args: str) -> dict[str, dict[str, Any]]:
        """``kernelmon list --json`` by id."""
        done = self("list", "--json", *args)
        assert done.returncode == 0, done.stderr
        return {m["id"]: m for m in json.loads(done.stdout)}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(KERNELMON), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stale_file(self, kernel_id: str | None = None) -> Path:
        """A connection file whose kernel is gone (nothing runs or listens for it)."""
        kernel_id = kernel_id or str(uuid.uuid4())
        path = self.runtime / f"kernel-{kernel_id}.json"
        info = {f"{c}_port": 1 + i for i, c in enumerate(("shell", "iopub", "stdin", "control"))}
        info.update(hb_port=5, ip="127.0.0.1", transport="tcp", key="k", kernel_name="python3")
        info["signature_scheme"] = "hmac-sha256"
        path.write_text(json.dumps(info))
        return path

    def serving_pid(self) -> int | None:
        """The pid of the kernelmon serving the instance socket, once it says it serves."""
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((self.state / LOCK_NAME).read_text())
            if record.get("serving") is True:
                return int(record["pid"])
        return None


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    base = tmp_path_factory.mktemp("cli")
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_QT)
    env = dict(os.environ)
    for name, folder in (
        ("KERNELMON_STATE_DIR", "state"),
        ("KERNELMON_CONFIG_DIR", "config"),
        ("KERNELMON_LOG_DIR", "log"),
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
    ):
        (base / folder).mkdir()
        env[name] = str(base / folder)
    env["KERNELMON_SCAN_PROCESSES"] = "0"  # only this module's runtime folder
    env["KERNELMON_TEST_QT_LOG"] = str(base / "qt-imports.log")
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS.parent)])
    return Cli(base, env)


def eventually(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class Started:
    proc: subprocess.Popen[str]
    kernels: dict[str, int]  # id: pid


@pytest.fixture(scope="module")
def spawn(cli: Cli) -> Iterator[Callable[..., Started]]:
    """``spawn("launcher", n)``: n kernels started by jupyter_client in another process;
    ``spawn("kernelmon", n, "--release")``: n kernels a kernelmon (a program embedding
    ``KernelMap``) started and, with ``--release``, left for the next kernelmon to take.
    Everything is gone afterwards."""
    started: list[Started] = []

    def start(kind: str, n: int, *options: str) -> Started:
        env = {k: v for k, v in cli.env.items() if k != "PYTHONPATH"}
        if kind == "launcher":
            argv = [str(LAUNCHER), str(cli.runtime), str(n)]
        else:
            root = cli.base / "root"
            for i in range(n):
                (root / f"k{i}").mkdir(parents=True, exist_ok=True)
            argv = [str(KERNELMON_CHILD), str(root), str(n), *options]
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(TESTS.parent),
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"{kind} exited ({proc.poll()}) without a word"
        info = json.loads(line)
        kernels = {k["id"]: k["pid"] for k in info["kernels"]} if kind == "launcher" else info
        started.append(Started(proc, kernels))
        return started[-1]

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(10)
        if s.proc.stdout is not None:
            s.proc.stdout.close()
        if s.proc.stdin is not None:
            s.proc.stdin.close()
    _kill_tree({pid for s in started for pid in s.kernels.values()})
