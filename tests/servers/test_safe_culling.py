"""The culler looks again before it shuts a server's kernel down: the server is asked about
the kernel at that moment (``GET /api/kernels/<id>``), and a kernel that became busy since the
last poll (a real jupyter_server, a cell running) is not culled; nor is one the server cannot be
asked about (a stub whose single-kernel answer fails while its listing and DELETE work)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernelmon.core.records import ExecutionState
from kernelmon.core.servers.websocket import KernelWebSocket, WebSocketTarget
from kernelmon.core.settings import Settings
from tests.servers.realservers import RealServer
from tests.servers.test_client_faults import address, stub
from tests.servers.test_local_servers import kernel_ids
from tests.servers.test_map_servers import make_map


def _cull_now(kmap: Any) -> None:
    kmap.apply_settings(
        Settings(
            root_dir=kmap.settings.root_dir,
            cull_idle_timeout=1,
            cull_interval=3600,
            server_poll_interval=3600,
        )
    )


def test_a_kernel_busy_since_the_last_poll_is_not_culled(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    kmap = make_map(tmp_path, server_token_file=True)

    async def go() -> tuple[dict[str, str], str, set[str]]:
        sid = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        kid = await kmap.start_kernel(server_id=sid)
        kmap.set_server_culling(sid, True)
        _cull_now(kmap)
        # the user runs a long cell (then closes the notebook's websocket: no connection)
        target = WebSocketTarget(
            jupyter_server.url, {"Authorization": f"token {jupyter_server.token}"}, timeout=20
        )
        socket = KernelWebSocket(target, kid, uuid.uuid4().hex)
        await socket.open()
        _, reply = socket.ask("shell", "execute_request", {"code": "import time; time.sleep(60)"})
        reply.cancel()
        for _ in range(100):
            state = await kmap.server_client(sid).get_kernel(kid)
            if state.execution_state == "busy":
                break
            await asyncio.sleep(0.1)
        await socket.close()
        # ... while kernelmon's last poll saw it idle for an hour
        record = kmap.record(kid)
        record.execution_state = ExecutionState.IDLE
        record.connections = 0
        record.last_activity -= timedelta(hours=1)
        culled = await kmap.cull_kernels()
        running = await asyncio.to_thread(kernel_ids, jupyter_server)
        state_now = str(kmap.record(kid).execution_state) if kid in kmap else "gone"
        if kid in kmap:
            await kmap.shutdown_kernel(kid)
        return culled, state_now, running & {kid}

    try:
        culled, state, still = aio.run(go())
    finally:
        aio.run(kmap.close())
    assert culled == {}
    assert state == "busy"  # what the server said when asked again, applied
    assert still  # the running cell was not killed


def test_a_server_that_cannot_be_asked_means_no_cull(
    aio: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kid = "k-idle"
    deleted: list[str] = []
    old = "2020-01-01T00:00:00Z"
    entry = {"id": kid, "name": "python3", "execution_state": "idle", "connections": 0}

    async def kernels(request: web.Request) -> web.Response:
        return web.json_response([{**entry, "last_activity": old}])

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    async def one(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            deleted.append(request.match_info["kid"])
            return web.Response(status=204)
        return web.json_response({"message": "the proxy is overloaded"}, status=503)

    kmap = make_map(tmp_path, server_token_file=True)

    async def go() -> dict[str, str]:
        runner = await stub(
            {"/api/kernels": kernels, "/api/sessions": sessions, "/api/kernels/{kid}": one}
        )
        try:
            sid = await kmap.add_server(address(runner))
            await kmap.poll_servers()
            assert kid in kmap
            kmap.set_server_culling(sid, True)
            _cull_now(kmap)
            return await kmap.cull_kernels()
        finally:
            await kmap.close()
            await runner.cleanup()

    with caplog.at_level(logging.INFO, logger="kernelmon"):
        culled = aio.run(go())
    assert culled == {}
    assert deleted == []
    said = [r.getMessage() for r in caplog.records if "Not culling kernel k-idle" in r.getMessage()]
    assert said, "the log does not say why the kernel was not culled"
    assert "could not be asked" in said[0]
    assert "overloaded" in said[0]
