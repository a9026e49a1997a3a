"""A kernel id from a server that is not a plain id is never used: the listings skip such
kernels and sessions (the log says how many and why), and the websocket refuses such an id
before anything, least of all the token, is sent (``../`` would take it to another path of
the same host). Stub servers: a real one cannot be made to send such ids."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernelmon.core.servers import ServerError, ServerStatus
from kernelmon.core.servers.model import parse_kernels, parse_sessions
from kernelmon.core.servers.websocket import KernelWebSocket, WebSocketTarget
from tests.servers.test_client_faults import GOOD, address, stub
from tests.servers.test_map_servers import make_map

HOSTILE = "../../../bob/api/kernels/x"


def test_listings_skip_ids_that_are_not_plain() -> None:
    kernels = parse_kernels([GOOD, {**GOOD, "id": HOSTILE}, {**GOOD, "id": "a/b"}])
    assert [k.id for k in kernels.items] == ["k-good"]
    assert len(kernels.skipped) == 2
    assert all("not a plain kernel id" in why for why in kernels.skipped)
    sessions = parse_sessions(
        [
            {"id": "s1", "path": "a.ipynb", "type": "notebook", "kernel": {"id": "k-good"}},
            {"id": "s2", "path": "b.ipynb", "type": "notebook", "kernel": {"id": HOSTILE}},
        ]
    )
    assert [s.kernel_id for s in sessions.items] == ["k-good"]
    assert len(sessions.skipped) == 1


def test_a_server_listing_a_hostile_id_keeps_its_good_kernels(
    aio: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def kernels(request: web.Request) -> web.Response:
        return web.json_response([GOOD, {**GOOD, "id": HOSTILE}])

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response(
            [{"id": "s2", "path": "b.ipynb", "type": "notebook", "kernel": {"id": HOSTILE}}]
        )

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> tuple[set[str], int]:
        runner = await stub({"/api/kernels": kernels, "/api/sessions": sessions})
        try:
            await kmap.add_server(address(runner))
            await kmap.poll_servers()
            await kmap.poll_servers()  # said once, not at every poll
            warned = [r for r in caplog.records if "entry in GET /api/kernels:" in r.getMessage()]
            return {m["id"] for m in kmap.list_kernels()}, len(warned)
        finally:
            await kmap.close()
            await runner.cleanup()

    with caplog.at_level(logging.WARNING, logger="kernelmon"):
        ids, warnings = aio.run(go())
    assert "k-good" in ids
    assert HOSTILE not in ids
    assert warnings == 1, "\n".join(r.getMessage() for r in caplog.records)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "1 unusable entry in GET /api/kernels" in said
    assert "not a plain kernel id" in said


def test_the_websocket_refuses_an_id_that_is_not_plain(aio: Any) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=404)

    async def go() -> ServerError:
        runner = await stub({"/user/bob/api/kernels/x/channels": elsewhere})
        try:
            base = address(runner) + "user/ann/"
            target = WebSocketTarget(base, {"Authorization": "token ann-s-token"}, timeout=5)
            socket = KernelWebSocket(target, HOSTILE, "session")
            with pytest.raises(ServerError) as caught:
                await socket.open()
            await socket.close()
            return caught.value
        finally:
            await runner.cleanup()

    error = aio.run(go())
    assert seen == []  # ann's token went nowhere
    assert error.kind == ServerStatus.NOT_FOUND
    assert "is not a kernel id" in str(error)
