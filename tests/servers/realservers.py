"""Real Jupyter Servers and Enterprise Gateways on loopback, for the tests.

Each server gets its own root, runtime, config and data folders, a random token and a free
port on 127.0.0.1; it is ready when its HTTP port answers ``GET /api`` (polled, no fixed
sleep), and stopping it ends it and every kernel it started, also after a failed test.

Enterprise Gateway 3.x needs jupyter_client < 7, so it runs from a virtual environment of
its own, built once per EG version and Python version under the user's cache folder
(``KERNELMON_TEST_CACHE`` overrides it) and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

EG_VERSION = "3.3.0"
#: What pip says when it cannot reach the package index (the tests then skip, not fail).
_OFFLINE_MARKS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found",
    "Could not find a version that satisfies",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)
#: Seconds a server may take to answer its first GET /api (a loaded 2-core machine).
READY_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RealServer:
    kind: str  # "jupyter_server" or "enterprise_gateway"
    url: str
    token: str
    port: int
    root: Path
    runtime_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    argv: list[str]
    env: dict[str, str]
    #: kernel processes seen under the server (kept so that a killed server's kernels end too)
    known_kernels: set[int] = field(default_factory=set)

    def request(self, method: str, path: str, body: object = None) -> object:
        """A synchronous request for the tests' own set-up (never inside the loop)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def remember_kernels(self) -> set[int]:
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.known_kernels.update(child.pid for child in children)
        return self.known_kernels

    def kill(self) -> None:
        """SIGKILL the server at once (a crash); its kernels are ended by ``stop``."""
        self.remember_kernels()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL for whatever is left."""
        self.remember_kernels()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        leftovers = []
        for pid in self.known_kernels:
            with contextlib.suppress(psutil.Error):
                leftovers.append(psutil.Process(pid))
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)


def _wait_ready(server: RealServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    request = urllib.request.Request(
        server.url + "api", headers={"Authorization": f"token {server.token}"}
    )
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the {server.kind} exited with {server.process.returncode} before it "
                f"answered:\n{server.log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the {server.kind} did not answer within {READY_TIMEOUT} s")
        time.sleep(0.1)  # polling interval, not a wait for something to happen


def _launch(
    kind: str, argv: list[str], env: dict[str, str], base: Path, port: int, token: str
) -> RealServer:
    log = base / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = RealServer(
        kind=kind,
        url=f"http://127.0.0.1:{port}/",
        token=token,
        port=port,
        root=base / "root",
        runtime_dir=base / "runtime",
        log=log,
        process=process,
        argv=argv,
        env=env,
    )
    _wait_ready(server)
    return server


def _on_a_free_port(
    kind: str,
    argv_for: Callable[[int], list[str]],
    env: dict[str, str],
    base: Path,
    token: str,
    port: int | None = None,
) -> RealServer:
    """Launches on ``port``, or on a free one: another process may take a free port
    between the probe and the server's bind, so that is tried three times."""
    tries = 1 if port else 3
    for attempt in range(tries):
        chosen = port or free_port()
        try:
            return _launch(kind, argv_for(chosen), env, base, chosen, token)
        except RuntimeError as error:
            if attempt == tries - 1 or not any(
                w in str(error) for w in ("in use", "not available")
            ):
                raise
    raise AssertionError("unreachable")


def _folders(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("root", "runtime", "config", "data"):
        (base / name).mkdir(parents=True, exist_ok=True)
    env.update(
        # only the kernel specs a Python environment always has (other tests add their own)
        JUPYTER_PATH=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_jupyter_server(
    base: Path,
    *,
    cull_idle_timeout: int = 0,
    cull_interval: int = 1,
    port: int | None = None,
    token: str | None = None,
) -> RealServer:
    """``python -m jupyter_server`` on 127.0.0.1 with a token, its own folders, and (with
    ``cull_idle_timeout``) its own idle culler on."""
    token = token or secrets.token_hex(16)
    env = _folders(base)

    culler = [
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={cull_interval}",
    ]

    def argv_for(port: int) -> list[str]:
        argv = [
            sys.executable, "-m", "jupyter_server",
            f"--IdentityProvider.token={token}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--ServerApp.root_dir={base / 'root'}",
        ]  # fmt: skip
        return argv + culler if cull_idle_timeout else argv

    return _on_a_free_port("jupyter_server", argv_for, env, base, token, port)


def restart_same_port(server: RealServer) -> RealServer:
    """A new process of the same server on the same port, with the same token."""
    server.stop()
    base = server.log.parent
    env = dict(server.env)
    for attempt in range(50):  # the port may linger for a moment after the old process
        try:
            return _launch(server.kind, server.argv, env, base, server.port, server.token)
        except RuntimeError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


# -- Enterprise Gateway ----------------------------------------------------------------------


def _cache_root() -> Path:
    configured = os.environ.get("KERNELMON_TEST_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kernelmon-tests"


def eg_venv() -> tuple[Path, float]:
    """The Enterprise Gateway environment (built now if missing) and the seconds it took.

    Skips the test, with the reason, when the package index cannot be reached."""
    tag = f"eg-{EG_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    venv = _cache_root() / tag
    ready = venv / ".kernelmon-ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(venv.parent / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, across test processes
        if ready.exists():
            return venv, time.monotonic() - started
        shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        install = subprocess.run(
            [
                str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                "--disable-pip-version-check",
                f"jupyter_enterprise_gateway=={EG_VERSION}", "ipykernel",
            ],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if install.returncode != 0:
            output = install.stdout + install.stderr
            shutil.rmtree(venv, ignore_errors=True)
            if any(mark in output for mark in _OFFLINE_MARKS):
                last = [line for line in output.splitlines() if line.strip()][-1:]
                pytest.skip(
                    "Enterprise Gateway tests need its own environment, and the package "
                    f"index cannot be reached to build it ({' '.join(last)[:200]})"
                )
            raise RuntimeError(f"building the Enterprise Gateway environment failed:\n{output}")
        ready.write_text(EG_VERSION)
    return venv, time.monotonic() - started


def start_enterprise_gateway(
    base: Path, venv: Path, *, list_kernels: bool, token: str | None = None
) -> RealServer:
    """Enterprise Gateway (local process proxy) on 127.0.0.1 with a token; kernel listing
    on or off (EG_LIST_KERNELS)."""
    token = token or secrets.token_hex(16)
    env = _folders(base)
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    # its kernel specs say "python": the gateway's environment's, which has its ipykernel
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # EG refuses to start kernels for the users in EG_UNAUTHORIZED_USERS ("root" by default;
    # tests may run as root): an empty name matches no user
    env["EG_UNAUTHORIZED_USERS"] = ""

    def argv_for(port: int) -> list[str]:
        return [
            str(venv / "bin" / "python"), "-m", "enterprise_gateway",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port_retries=0",
            f"--EnterpriseGatewayApp.auth_token={token}",
            f"--EnterpriseGatewayApp.list_kernels={list_kernels}",
        ]  # fmt: skip

    return _on_a_free_port("enterprise_gateway", argv_for, env, base, token)
