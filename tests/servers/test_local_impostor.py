"""A local server's runtime file names any pid and URL it likes. A ``jpserver-*.json`` whose
server lists the id of a kernel it did not start (another application's, found by its
connection file) takes over nothing: the kernel's row stays another application's, gets no
server, and its shutdown never goes to that server. Two impostors: one naming a live process
that is no kernel's ancestor, one naming the test's own process (an ancestor of every kernel
it starts, and of kernelmon)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from kernelmon.core import KernelMap, Settings
from tests.discovery.conftest import LAUNCHER
from tests.servers.test_client_faults import address, stub
from tests.waiting import wait_until

Handler = Callable[[web.Request], Awaitable[web.Response]]


def launch_one(runtime: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A kernel another application started (``launcher.py``): the launcher and the kernel
    (its id, pid and connection file)."""
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(runtime), "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    return launcher, json.loads(launcher.stdout.readline())["kernels"][0]


def stop_launcher(launcher: subprocess.Popen[str]) -> None:
    """Its stdin closed, the launcher shuts down the kernels left and exits."""
    with contextlib.suppress(OSError):
        assert launcher.stdin is not None
        launcher.stdin.close()
    launcher.wait(20)


def impostor(kid: str, asked: list[str], count_listings: bool) -> tuple[Handler, ...]:
    """A server's routes listing ``kid`` as its kernel: kernels, one kernel (its methods
    noted in ``asked``; listings too with ``count_listings``), and empty sessions."""

    async def listed(request: web.Request) -> web.Response:
        if count_listings:
            asked.append(request.method)
        return web.json_response([{"id": kid, "name": "python3", "execution_state": "idle"}])

    async def one(request: web.Request) -> web.Response:
        asked.append(request.method)
        return web.Response(status=204)

    async def nothing(request: web.Request) -> web.Response:
        return web.json_response([])

    return listed, one, nothing


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_runtime_file_listing_anothers_kernel_takes_nothing_over(
    aio: Any, tmp_path: Path
) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    launcher, kernel = launch_one(runtime)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    kid = kernel["id"]
    asked: list[str] = []
    listed, one, nothing = impostor(kid, asked, count_listings=True)

    async def specs(request: web.Request) -> web.Response:
        return web.json_response({"default": "python3", "kernelspecs": {}})

    kmap = KernelMap(
        Settings(root_dir=str(tmp_path), server_poll_interval=0.5, sample_interval=0.5),
        shutdown_wait=2.0,
        state_dir=tmp_path / "state",
        runtime_dirs=[str(runtime)],
    )

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]], bool, bool]:
        runner = await stub(
            {
                "/api/kernels": listed,
                "/api/sessions": nothing,
                "/api/kernelspecs": specs,
                "/api/kernels/{kid}": one,
            }
        )
        url = address(runner)
        for pid in (bystander.pid, os.getpid()):
            (runtime / f"jpserver-{pid}.json").write_text(
                json.dumps({"pid": pid, "url": url, "port": 1, "token": "t", "root_dir": "/"})
            )
        try:
            await kmap.start_monitoring()
            await wait_until(lambda: kid in kmap, what="the kernel found by its file")
            polled = len(asked)
            await wait_until(lambda: len(asked) >= polled + 4, what="both impostors polled")
            model = kmap.kernel_model(kid)
            servers = kmap.list_servers()
            await kmap.shutdown_kernel(kid)
            # its launcher reaps it only when it ends: a zombie until then
            await wait_until(lambda: not running(kernel["pid"]), what="the kernel's exit")
            return model, servers, "DELETE" in asked, running(kernel["pid"])
        finally:
            await kmap.close()
            await runner.cleanup()

    try:
        model, servers, deleted, alive = aio.run(go(), timeout=90)
    finally:
        bystander.kill()
        bystander.wait()
        stop_launcher(launcher)
    assert sorted(s["pid"] for s in servers) == sorted([bystander.pid, os.getpid()])
    assert {s["status"] for s in servers} == {"reachable"}
    assert model["origin"] == "external"
    assert model["server_id"] is None
    assert model["pid"] == kernel["pid"]
    assert not deleted  # stopped by kernelmon itself (its process proven), not by the impostor
    assert not alive


def start_kernel(connection_file: Path) -> subprocess.Popen[bytes]:
    """An ipykernel that writes its own connection file (the test's child)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def test_a_servers_row_whose_process_it_did_not_start_is_handed_back(
    aio: Any, tmp_path: Path
) -> None:
    """An impostor lists a kernel id before its kernel runs (a row of that server with no
    process); the kernel that then starts with that id is another process's child, so
    discovery gives the row back to that application instead of adding its facts."""
    runtime = tmp_path / "rt"
    runtime.mkdir()
    kid = str(uuid.uuid4())
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    asked: list[str] = []
    listed, one, nothing = impostor(kid, asked, count_listings=False)

    kmap = KernelMap(
        Settings(root_dir=str(tmp_path), server_poll_interval=0.5, sample_interval=0.5),
        shutdown_wait=2.0,
        state_dir=tmp_path / "state",
        runtime_dirs=[str(runtime)],
    )
    kernel: subprocess.Popen[bytes] | None = None

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        nonlocal kernel
        runner = await stub(
            {"/api/kernels": listed, "/api/sessions": nothing, "/api/kernels/{kid}": one}
        )
        (runtime / f"jpserver-{bystander.pid}.json").write_text(
            json.dumps({"pid": bystander.pid, "url": address(runner), "port": 1, "token": "t"})
        )
        try:
            await kmap.start_monitoring()
            await wait_until(lambda: kid in kmap, what="the impostor's row")
            before = kmap.kernel_model(kid)
            kernel = await asyncio.to_thread(start_kernel, runtime / f"kernel-{kid}.json")
            await wait_until(
                lambda: kmap.kernel_model(kid)["origin"] == "external",
                timeout=30,
                what="the row handed back to the kernel's application",
            )
            await kmap.poll_servers()
            after = kmap.kernel_model(kid)
            await kmap.shutdown_kernel(kid)
            await wait_until(lambda: kernel.poll() is not None, what="the kernel's exit")
            return before, after
        finally:
            await kmap.close()
            await runner.cleanup()

    try:
        before, after = aio.run(go(), timeout=90)
    finally:
        bystander.kill()
        bystander.wait()
        if kernel is not None:
            kernel.kill()
            kernel.wait()
    assert before["origin"] == "server"
    assert before["pid"] is None
    assert after["origin"] == "external"  # still after the impostor's next poll
    assert after["server_id"] is None
    assert after["pid"] == kernel.pid
    assert asked == []  # the impostor was never asked to shut it down
