"""Fixtures: real Jupyter Servers and Enterprise Gateways on loopback (see realservers.py).

Servers are shared by a test module (a server takes seconds to start on a loaded machine);
a test that breaks its server (kills it, restarts it) starts its own. The ``eg`` marker
selects the Enterprise Gateway tests (``-m eg``, or ``-m 'not eg'`` to leave them out).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.realservers import (
    RealServer,
    eg_venv,
    start_enterprise_gateway,
    start_jupyter_server,
)

#: Seconds each fixture took to set up, printed at the end of the run (-rA or the summary).
SETUP_SECONDS: dict[str, list[float]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "eg: needs a real Jupyter Enterprise Gateway (built once into its own environment)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SETUP_SECONDS:
        parts = [
            f"{name} {', '.join(f'{s:.1f}' for s in times)} s"
            for name, times in SETUP_SECONDS.items()
        ]
        terminalreporter.write_line("server fixtures set up in: " + "; ".join(parts))


def _timed(name: str, started: float) -> None:
    SETUP_SECONDS.setdefault(name, []).append(time.monotonic() - started)


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """One real jupyter_server with a token for the module's tests."""
    started = time.monotonic()
    server = start_jupyter_server(tmp_path_factory.mktemp("jupyter-server"))
    _timed("jupyter_server", started)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[list[RealServer]]:
    """Servers a test starts itself (``start_jupyter_server(tmp_path / ...)``) and appends
    here: each is stopped, with its kernels, after the test whatever happened."""
    servers: list[RealServer] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def eg_environment() -> Path:
    venv, seconds = eg_venv()
    SETUP_SECONDS.setdefault("eg environment (build or cached)", []).append(seconds)
    return venv


def _gateway(
    tmp_path_factory: pytest.TempPathFactory, venv: Path, list_kernels: bool
) -> Iterator[RealServer]:
    started = time.monotonic()
    server = start_enterprise_gateway(
        tmp_path_factory.mktemp("gateway"), venv, list_kernels=list_kernels
    )
    _timed(f"enterprise_gateway (listing {'on' if list_kernels else 'off'})", started)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, eg_environment: Path) -> Iterator[RealServer]:
    """A real Enterprise Gateway that lists its kernels (EG_LIST_KERNELS on)."""
    yield from _gateway(tmp_path_factory, eg_environment, True)


@pytest.fixture(scope="module")
def closed_gateway(
    tmp_path_factory: pytest.TempPathFactory, eg_environment: Path
) -> Iterator[RealServer]:
    """A real Enterprise Gateway with kernel listing off (its default)."""
    yield from _gateway(tmp_path_factory, eg_environment, False)


@pytest.fixture
def loop_errors(aio: Any) -> Iterator[list[dict[str, Any]]]:
    """What reached the loop's exception handler during the test (nothing should)."""
    errors: list[dict[str, Any]] = []
    loop = aio.loop
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(before)
