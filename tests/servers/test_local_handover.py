"""A kernel of a live local jupyter_server is never stopped by signals, also while kernelmon
shows it as another application's kernel (a notebook opened after the server's last poll):
the shutdown first asks the server, so that the row joins it and the server shuts the kernel
down. A server kernelmon cannot ask (its runtime file has an empty token, as a
password-protected JupyterLab writes) makes kernelmon refuse, saying why, and leave the
process alone: signals would be undone by the server's restarter (a new process, its state
lost). The command line, with no kernelmon running, refuses the same way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from kernelmon.core import KernelMap, Settings
from kernelmon.core.errors import ActionRefused
from tests.cli.conftest import KERNELMON
from tests.servers.realservers import RealServer, start_jupyter_server
from tests.servers.test_client_faults import address, stub
from tests.servers.test_client_jupyter_server import open_notebook
from tests.servers.test_local_impostor import launch_one, stop_launcher
from tests.servers.test_local_servers import kernel_ids
from tests.waiting import wait_until


def found_as_external(kmap: KernelMap, kid: str) -> bool:
    return (
        kid in kmap
        and kmap.kernel_model(kid)["origin"] == "external"
        and kmap.kernel_model(kid)["pid"] is not None
    )


def local_map(server: RealServer, tmp_path: Path, name: str) -> KernelMap:
    root = tmp_path / f"root-{name}"
    root.mkdir()
    return KernelMap(
        # a long poll interval: a notebook opened now stays unknown to the watch for a minute
        Settings(root_dir=str(root), server_poll_interval=600, sample_interval=0.5),
        state_dir=tmp_path / f"state-{name}",
        runtime_dirs=[str(server.runtime_dir)],
    )


def test_a_live_local_servers_kernel_is_shut_down_through_it_or_not_at_all(
    aio: Any, server_factory: list[RealServer], tmp_path: Path
) -> None:
    server = start_jupyter_server(tmp_path / "js")
    server_factory.append(server)
    kmap = local_map(server, tmp_path, "asked")

    async def through_the_server() -> tuple[dict[str, Any], dict[str, Any], int]:
        await kmap.start_monitoring()
        kid = (await asyncio.to_thread(open_notebook, server, "late.ipynb"))["kernel"]["id"]
        await kmap.rescan()
        await wait_until(lambda: found_as_external(kmap, kid), what="the kernel found by its file")
        found = kmap.kernel_model(kid)
        await kmap.shutdown_kernel(kid)
        await wait_until(
            lambda: kid not in kernel_ids(server), timeout=15, what="the kernel gone from it"
        )
        with contextlib.suppress(psutil.NoSuchProcess):
            await asyncio.to_thread(psutil.Process(found["pid"]).wait, 15)
        await asyncio.sleep(4)  # longer than the server's restarter takes (~2.5 s)
        listed = await asyncio.to_thread(server.request, "GET", "api/kernels")
        return found, {"listed": listed, "in_map": kid in kmap}, kid

    try:
        found, after, kid = aio.run(through_the_server(), timeout=90)
    finally:
        aio.run(kmap.close())
    assert found["server_url"] == server.url  # its parent is the server
    assert [k["id"] for k in after["listed"]] == []  # not restarted by the server
    assert not after["in_map"]
    assert not psutil.pid_exists(found["pid"])

    # The same server, its runtime file saying what a password-protected JupyterLab's says:
    # no token. kernelmon cannot ask it, so it refuses and leaves the process alone.
    (info,) = server.runtime_dir.glob("jpserver-*.json")
    data = json.loads(info.read_text())
    data["token"] = ""
    info.write_text(json.dumps(data))
    refused = local_map(server, tmp_path, "refused")

    async def refused_shutdown() -> tuple[str, dict[str, Any], list[dict[str, Any]], str]:
        await refused.start_monitoring()
        kid = (await asyncio.to_thread(open_notebook, server, "locked.ipynb"))["kernel"]["id"]
        await refused.rescan()
        await wait_until(
            lambda: found_as_external(refused, kid), what="the kernel found by its file"
        )
        with pytest.raises(ActionRefused) as error:
            await refused.shutdown_kernel(kid)
        servers = refused.list_servers()
        # removed from kernelmon's list: still running, still the kernel's restarter
        await refused.remove_server(servers[0]["id"])
        with pytest.raises(ActionRefused) as again:
            await refused.shutdown_kernel(kid)
        assert "removed" in str(again.value)
        return str(error.value), refused.kernel_model(kid), servers, kid

    try:
        why, model, servers, kid = aio.run(refused_shutdown(), timeout=90)
        still = aio.run(asyncio.to_thread(kernel_ids, server))
    finally:
        aio.run(refused.close())
    assert [s["status"] for s in servers] == ["auth_refused"]
    assert kid in still
    assert psutil.pid_exists(model["pid"])
    assert model["origin"] == "external"  # still shown, untouched
    assert "Jupyter Server" in why
    assert "auth refused" in why
    assert "from the server's own page, or stop the server" in why
    assert model["refusals"].get("shutdown") is not None  # the table says why before a click

    # The command line with no kernelmon running acts directly, and refuses the same way.
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(server.runtime_dir))
    for name in ("KERNELMON_STATE_DIR", "KERNELMON_CONFIG_DIR", "KERNELMON_LOG_DIR"):
        env[name] = str(tmp_path / "cli" / name.lower())
    done = subprocess.run(
        [str(KERNELMON), "stop", "--yes", kid],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "from the server's own page, or stop the server" in done.stdout + done.stderr
    assert kid in kernel_ids(server)
    assert psutil.pid_exists(model["pid"])


def test_a_local_server_that_does_not_answer_in_time_gets_a_refusal(
    aio: Any, tmp_path: Path
) -> None:
    """The kernel's parent is a live local server (here: the launcher's process, named by a
    runtime file whose server answers its first poll, then hangs): the shutdown polls it,
    waits at most ``server_timeout``, then refuses and leaves the process alone."""
    runtime = tmp_path / "rt"
    runtime.mkdir()
    launcher, kernel = launch_one(runtime)
    kid = kernel["id"]
    hang, release = asyncio.Event(), asyncio.Event()

    async def listed(request: web.Request) -> web.Response:
        if hang.is_set():
            await release.wait()
        return web.json_response([])

    kmap = KernelMap(
        Settings(root_dir=str(tmp_path), server_poll_interval=600, server_timeout=1.0),
        state_dir=tmp_path / "state",
        runtime_dirs=[str(runtime)],
    )

    async def go() -> str:
        runner = await stub({"/api/kernels": listed, "/api/sessions": listed})
        (runtime / f"jpserver-{launcher.pid}.json").write_text(
            json.dumps({"pid": launcher.pid, "url": address(runner), "port": 1, "token": "t"})
        )
        try:
            await kmap.start_monitoring()
            await wait_until(lambda: found_as_external(kmap, kid), what="the kernel")
            hang.set()
            with pytest.raises(ActionRefused) as error:
                await kmap.shutdown_kernel(kid)
            return str(error.value)
        finally:
            release.set()
            await kmap.close()
            await runner.cleanup()

    try:
        why = aio.run(go(), timeout=60)
        alive = psutil.Process(kernel["pid"]).status() != psutil.STATUS_ZOMBIE
    finally:
        stop_launcher(launcher)
    assert alive
    assert "from the server's own page, or stop the server" in why.lower()
