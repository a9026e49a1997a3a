"""Servers that fail while kernelmon watches them, through the map: a real jupyter_server killed
mid-poll and started again on the same port, one whose own culler culls a kernel kernelmon
polls, and small aiohttp servers that answer too slowly, with garbage, with an HTML page or
with a refusal. Each gives a clear status; kernels stay listed while their server cannot be
asked; nothing is stuck and no exception reaches the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from kernelmon.core.events import KernelAdded, KernelEvent, KernelRemoved, ServerChanged
from tests.servers.realservers import RealServer, restart_same_port, start_jupyter_server
from tests.servers.test_client_faults import GOOD, address, stub
from tests.servers.test_client_jupyter_server import open_notebook
from tests.servers.test_map_servers import make_map
from tests.waiting import wait_until


def status_of(kmap: Any, server_id: str) -> str:
    return str(next(s for s in kmap.list_servers() if s["id"] == server_id)["status"])


def test_server_killed_mid_poll_then_restarted_on_the_same_port(
    aio: Any, server_factory: list[RealServer], tmp_path: Path, loop_errors: list[Any]
) -> None:
    server = start_jupyter_server(tmp_path / "js")
    server_factory.append(server)
    kid = open_notebook(server, "before.ipynb")["kernel"]["id"]
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=0.5)
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    async def go() -> tuple[dict[str, Any], dict[str, Any], str]:
        nonlocal server
        sid = await kmap.add_server(server.url, server.token)
        await wait_until(lambda: kid in kmap, what="the kernel listed")
        await asyncio.to_thread(server.kill)  # while kernelmon polls every 0.5 s
        await wait_until(lambda: status_of(kmap, sid) == "unreachable", what="unreachable")
        await wait_until(lambda: kmap.kernel_model(kid)["reason"] is not None, what="reason")
        while_down = kmap.kernel_model(kid)
        listed = next(s for s in kmap.list_servers() if s["id"] == sid)
        server = await asyncio.to_thread(restart_same_port, server)
        server_factory.append(server)
        await kmap.poll_servers()  # instead of waiting out the backoff
        return while_down, listed, status_of(kmap, sid)

    try:
        while_down, listed, after = aio.run(go(), timeout=120)
        gone = kid not in kmap
    finally:
        aio.run(kmap.close())
    # while the server is down, its kernel stays listed and says why
    assert while_down["execution_state"] == "unknown"
    assert while_down["reason"].startswith("server unreachable (unreachable since ")
    assert "unreachable" in while_down["refusals"]["shutdown"]
    assert listed["error"]
    assert "cannot be reached" in listed["error"]
    assert listed["status_text"].startswith("unreachable since ")
    assert after == "reachable"
    # the restarted server does not have the old kernel: gone from the server, said so
    assert gone
    (removed,) = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]
    assert removed.reason.startswith("gone from the server")
    texts = [e.text for e in events if isinstance(e, ServerChanged)]
    assert any("unreachable since" in t for t in texts)
    assert any(t.endswith(": reachable") for t in texts)
    assert loop_errors == []


def test_a_kernel_culled_by_the_server_is_gone_from_it(
    aio: Any, server_factory: list[RealServer], tmp_path: Path, loop_errors: list[Any]
) -> None:
    """The server's own culler culls a kernel kernelmon polls every 0.5 s (polling is not
    activity); kernelmon says it is gone, and that the server may have culled it."""
    server = start_jupyter_server(tmp_path / "js", cull_idle_timeout=3, cull_interval=1)
    server_factory.append(server)
    kid = open_notebook(server, "idle.ipynb")["kernel"]["id"]
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=0.5)
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    async def go() -> None:
        await kmap.add_server(server.url, server.token)
        await wait_until(lambda: kid in kmap, what="the kernel listed")
        await wait_until(lambda: kid not in kmap, timeout=60, what="the server culling it")

    try:
        aio.run(go(), timeout=90)
    finally:
        aio.run(kmap.close())
    (removed,) = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]
    assert removed.reason.startswith("gone from the server")
    assert removed.reason.endswith("(culled by the server?)")
    assert loop_errors == []


def test_slow_garbage_html_and_refusing_servers(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    mode = {"now": "good"}
    release = asyncio.Event()

    async def kernels(request: web.Request) -> web.StreamResponse:
        now = mode["now"]
        if now == "slow":
            await release.wait()
        if now == "garbage":
            return web.Response(text="{not json", content_type="application/json")
        if now == "html":
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        if now == "refused":
            return web.json_response({"message": "Forbidden"}, status=403)
        return web.json_response([GOOD])

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=60, server_timeout=0.5)

    async def go() -> dict[str, tuple[str, str | None, str | None]]:
        runner = await stub({"/api/kernels": kernels, "/api/sessions": sessions})
        seen: dict[str, tuple[str, str | None, str | None]] = {}
        try:
            sid = await kmap.add_server(address(runner), "t0ken")
            await kmap.poll_servers()
            assert "k-good" in kmap
            for now in ("slow", "garbage", "html", "refused", "good"):
                mode["now"] = now
                await kmap.poll_servers()
                server = next(s for s in kmap.list_servers() if s["id"] == sid)
                reason = kmap.kernel_model("k-good")["reason"] if "k-good" in kmap else "gone"
                seen[now] = (server["status"], server["error"], reason)
            release.set()
        finally:
            release.set()
            await kmap.close()
            await runner.cleanup()
        return seen

    seen = aio.run(go())
    assert seen["slow"][0] == "timeout"
    assert "did not answer within 0.5 s" in str(seen["slow"][1])
    assert str(seen["slow"][2]).startswith("server unreachable (timeout since")
    assert seen["garbage"][0] == "bad_answer"
    assert "JSON that does not parse" in str(seen["garbage"][1])
    assert str(seen["garbage"][2]).startswith("server not usable (bad answer since")
    assert seen["html"][0] == "bad_answer"
    assert "an HTML page" in str(seen["html"][1])
    assert seen["refused"][0] == "auth_refused"
    assert seen["good"] == ("reachable", None, None)  # kept listed all along, and back
    assert loop_errors == []


def test_a_poll_that_began_before_a_shutdown_does_not_bring_the_kernel_back(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    """The poll's GET /api/kernels is answered with the kernel, then kernelmon's DELETE
    (one request at a time: it waited its turn), then the poll's GET /api/sessions."""
    listed = [GOOD]
    hold = asyncio.Event()
    hold.set()
    arrived = asyncio.Event()

    async def kernels(request: web.Request) -> web.Response:
        arrived.set()
        await hold.wait()
        return web.json_response(list(listed))

    async def one(request: web.Request) -> web.Response:
        listed.clear()
        return web.Response(status=204)

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    async def go() -> bool:
        runner = await stub(
            {"/api/kernels": kernels, "/api/kernels/k-good": one, "/api/sessions": sessions}
        )
        try:
            await kmap.add_server(address(runner), "t0ken")
            await wait_until(lambda: "k-good" in kmap, what="the kernel listed")
            hold.clear()
            arrived.clear()
            poll = asyncio.create_task(kmap.poll_servers())
            await arrived.wait()  # the poll's listing waits at the server
            shutdown = asyncio.create_task(kmap.shutdown_kernel("k-good"))
            await asyncio.sleep(0.2)  # the DELETE queues behind it (nothing to wait on)
            hold.set()
            await asyncio.gather(poll, shutdown)
            back = "k-good" in kmap
            await kmap.poll_servers()
            return back or "k-good" in kmap
        finally:
            hold.set()
            await kmap.close()
            await runner.cleanup()

    assert aio.run(go()) is False
    added = [e for e in events if isinstance(e, KernelAdded) and e.kernel_id == "k-good"]
    assert len(added) == 1
    removed = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == "k-good"]
    assert [e.reason for e in removed] == ["shut down"]
    assert loop_errors == []
