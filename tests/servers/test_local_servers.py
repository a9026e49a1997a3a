"""A live local jupyter_server (found by its jpserver-*.json in a runtime folder) is watched by
itself: its kernels are one row each, the server's model joined by kernel id with the process
facts discovery has (PID, memory), and shutting one down goes through the server's API. By
signals the server's restarter would undo it (a new process, its state lost). Once the server
is gone, its kernels are the machine's to look at again (found by their files)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import psutil

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import KernelAdded, KernelEvent, KernelRemoved
from tests.servers.realservers import RealServer, start_jupyter_server
from tests.servers.test_client_jupyter_server import open_notebook
from tests.waiting import wait_until


def kernel_ids(server: RealServer) -> set[str]:
    kernels = server.request("GET", "api/kernels")
    assert isinstance(kernels, list)
    return {k["id"] for k in kernels}


def added_again(events: list[KernelEvent], kid: str) -> list[KernelEvent]:
    return [e for e in events if isinstance(e, KernelAdded) and e.kernel_id == kid][1:]


def removals(events: list[KernelEvent], kid: str) -> list[str]:
    return [e.reason for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]


def test_a_local_servers_kernels_are_one_row_and_shut_down_through_the_server(
    aio: Any, server_factory: list[RealServer], tmp_path: Path
) -> None:
    server = start_jupyter_server(tmp_path / "js")
    server_factory.append(server)
    kid = open_notebook(server, "local.ipynb")["kernel"]["id"]
    left = open_notebook(server, "left.ipynb")["kernel"]["id"]
    root = tmp_path / "root"
    root.mkdir()
    kmap = KernelMap(
        Settings(root_dir=str(root), server_poll_interval=0.5, sample_interval=0.5),
        state_dir=tmp_path / "state",
        runtime_dirs=[str(server.runtime_dir)],
    )
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    def joined(k: str) -> bool:
        return k in kmap and kmap.kernel_model(k)["server_id"] is not None

    async def through_the_server() -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        await kmap.start_monitoring()
        # the server's from the start: a shutdown at once (kernelmon stop) goes through it
        assert joined(kid)
        await wait_until(
            lambda: kid in kmap and kmap.kernel_model(kid).get("pid") is not None,
            what="the server's kernel with its process",
        )
        await wait_until(
            lambda: (
                kmap.kernel_model(kid).get("notebook_path") == "local.ipynb"
                and kmap.kernel_model(kid).get("rss") is not None
            ),
            what="its notebook and its memory",
        )
        model = kmap.kernel_model(kid)
        pid = model["pid"]
        await kmap.shutdown_kernel(kid)
        # gone from the server for good: a restarted kernel would be listed again
        await wait_until(
            lambda: kid not in kernel_ids(server),
            timeout=15,
            what="the kernel gone from the server",
        )
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout=15)
        await asyncio.sleep(4)  # longer than the server's restarter takes (~2.5 s)
        assert kid not in await asyncio.to_thread(kernel_ids, server)
        return model, kmap.list_servers(), pid

    async def server_gone() -> tuple[str, list[dict[str, Any]]]:
        """Killed at once: its kernel's row stays, found by its connection file again (an
        orphan while its process runs, whose shutdown signals the proven process; stale once
        ipykernel, which exits when its parent dies, is gone: a shutdown cleans it up)."""
        await wait_until(
            lambda: joined(left) and kmap.kernel_model(left)["pid"] is not None,
            what="the other kernel",
        )
        await asyncio.to_thread(server.kill)
        await wait_until(
            lambda: left in kmap and kmap.kernel_model(left)["origin"] in ("orphan", "stale"),
            timeout=30,
            what="the kernel found by its file again",
        )
        origin = kmap.kernel_model(left)["origin"]
        servers = kmap.list_servers()
        await kmap.shutdown_kernel(left)
        assert not list(server.runtime_dir.glob(f"kernel-{left}*"))
        return origin, servers

    try:
        model, servers, pid = aio.run(through_the_server())
        origin, after = aio.run(server_gone(), timeout=60)
    finally:
        aio.run(kmap.close())
    assert not psutil.pid_exists(pid)
    local = [s for s in servers if s["local"]]
    assert [s["url"] for s in local] == [server.url]
    assert local[0]["status"] == "reachable"
    assert local[0]["kind"] == "jupyter_server"
    assert model["origin"] == "server"
    assert model["server_id"] == local[0]["id"]
    assert model["server_url"] == server.url
    assert model["connection_file"]  # the process facts of the external row it took over
    assert model["rss"] > 0
    # one row: added once (as found, or as the server's), never removed and added again
    assert added_again(events, kid) == []
    assert removals(events, kid) == ["shut down"]
    # once the server is gone
    assert origin in ("orphan", "stale")
    assert not [s for s in after if s["local"]]
    assert added_again(events, left) == []
    assert removals(events, left) == ["shut down"]
