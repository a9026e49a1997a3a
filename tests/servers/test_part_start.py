"""Starting a kernel on a server through the map, where the start is slow or the server goes
away meanwhile: small aiohttp servers hold the ``POST /api/kernels`` (a real server answers it
as soon as it can). A gateway's kernel id is chosen by kernelmon and kept before the POST is
sent, so a start that times out is still followed, and never sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernelmon.core import KernelMap, Settings
from kernelmon.core.errors import KernelStartFailed, KernelStartTimeout
from kernelmon.core.servers.part import START_GRACE
from tests.servers.test_client_faults import GOOD, address, stub
from tests.servers.test_map_servers import make_map
from tests.waiting import wait_until

SPECS = {"default": "python3", "kernelspecs": {"python3": {"name": "python3", "spec": {}}}}


class Gateway:
    """An Enterprise Gateway that forbids listing, whose launches end when the test says."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.posts: list[dict[str, Any]] = []
        #: the servers file's ``started`` lists when each POST arrived
        self.kept_at_post: list[list[str]] = []
        self.launched: set[str] = set()
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    def routes(self) -> dict[str, Any]:
        return {
            "/api": self.version,
            "/api/kernels": self.kernels,
            "/api/kernels/{kid}": self.one,
            "/api/sessions": self.sessions,
            "/api/kernelspecs": self.specs,
        }

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "2.0.0", "gateway_version": "3.3.0"})

    async def kernels(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"message": "Forbidden"}, status=403)
        body = await request.json()
        self.posts.append(body)
        saved = json.loads((self.state / "servers.json").read_text())
        self.kept_at_post.append([k for s in saved["servers"] for k in s["started"]])
        self.arrived.set()
        await self.release.wait()  # the launch takes as long as the test says
        kid = body.get("env", {}).get("KERNEL_ID") or str(uuid.uuid4())
        self.launched.add(kid)
        return web.json_response({**GOOD, "id": kid}, status=201)

    async def one(self, request: web.Request) -> web.Response:
        kid = request.match_info["kid"]
        if kid not in self.launched:
            return web.json_response({"message": f"Kernel does not exist: {kid}"}, status=404)
        if request.method == "DELETE":
            self.launched.discard(kid)
            return web.Response(status=204)
        return web.json_response({**GOOD, "id": kid})

    async def sessions(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def specs(self, request: web.Request) -> web.Response:
        return web.json_response(SPECS)


def saved_started(tmp_path: Path) -> list[str]:
    saved = json.loads((tmp_path / "state" / "servers.json").read_text())
    return [k for s in saved["servers"] for k in s["started"]]


def gateway_map(tmp_path: Path, **settings: Any) -> KernelMap:
    """A map whose requests may take 0.3 s, and whose start ``kernel_info_timeout``."""
    values: dict[str, Any] = {"server_poll_interval": 3600, "server_timeout": 0.3}
    return make_map(tmp_path, server_token_file=True, **{**values, **settings})


@contextlib.asynccontextmanager
async def serving(gateway: Gateway, kmap: KernelMap, **routes: Any) -> AsyncIterator[str]:
    """The gateway's address while the test runs; the map closed and the gateway's held
    launches let go after it."""
    runner = await stub({**gateway.routes(), **routes})
    try:
        yield address(runner)
    finally:
        gateway.release.set()
        await kmap.close()
        await runner.cleanup()


def test_a_gateway_start_slower_than_a_request_waits_for_the_launch(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    """A gateway's POST answers after its launch (30 s by default): the start waits
    ``kernel_info_timeout`` for it, not the ``server_timeout`` of other requests."""
    gateway = Gateway(tmp_path / "state")
    kmap = gateway_map(tmp_path, kernel_info_timeout=30)

    async def go() -> str:
        async with serving(gateway, kmap) as url:
            sid = await kmap.add_server(url, "t0ken")
            start = asyncio.create_task(kmap.start_kernel(server_id=sid))
            await gateway.arrived.wait()
            await asyncio.sleep(1.0)  # longer than server_timeout: the launch goes on
            gateway.release.set()
            kid = await start
            assert kid in kmap
            return kid

    kid = aio.run(go())
    # the id was kernelmon's, given to the gateway as KERNEL_ID and kept before the POST
    assert [p["env"]["KERNEL_ID"] for p in gateway.posts] == [kid]
    assert gateway.kept_at_post == [[kid]]
    assert uuid.UUID(kid).version == 4
    assert saved_started(tmp_path) == [kid]
    assert loop_errors == []


def test_a_gateway_start_that_times_out_is_followed_and_not_sent_again(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    gateway = Gateway(tmp_path / "state")
    kmap = gateway_map(tmp_path, kernel_info_timeout=0.5)

    async def go() -> tuple[str, bool, bool]:
        async with serving(gateway, kmap) as url:
            sid = await kmap.add_server(url, "t0ken")
            with pytest.raises(KernelStartTimeout) as caught:
                await kmap.start_kernel(server_id=sid, env={"KERNEL_USERNAME": "ann"})
            (kid,) = gateway.kept_at_post[0]
            await kmap.poll_servers()  # the gateway still launches it: not there yet
            before = kid in kmap
            gateway.release.set()
            await wait_until(lambda: kid in gateway.launched, what="the launch's end")
            await kmap.poll_servers()
            return str(caught.value), before, kid in kmap

    said, before, after = aio.run(go())
    (post,) = gateway.posts  # sent once
    kid = post["env"]["KERNEL_ID"]
    assert post["env"]["KERNEL_USERNAME"] == "ann"
    assert "did not answer within 0.5 s" in said
    assert kid in said
    assert "follows it" in said
    assert not before
    assert after  # the kernel the gateway started is in the map
    assert saved_started(tmp_path) == [kid]
    assert loop_errors == []


def test_a_start_the_gateway_refuses_is_not_followed(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    gateway = Gateway(tmp_path / "state")

    async def refuse(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"message": "Forbidden"}, status=403)
        gateway.posts.append(await request.json())
        return web.json_response({"message": "KERNEL_USERNAME is not allowed"}, status=403)

    kmap = gateway_map(tmp_path)

    async def go() -> str:
        async with serving(gateway, kmap, **{"/api/kernels": refuse}) as url:
            sid = await kmap.add_server(url, "t0ken")
            with pytest.raises(KernelStartFailed) as caught:
                await kmap.start_kernel(server_id=sid)
            await wait_until(lambda: saved_started(tmp_path) == [], what="the id forgotten")
            return str(caught.value)

    said = aio.run(go())
    assert "is not allowed" in said
    assert len(gateway.posts) == 1
    assert loop_errors == []


def test_a_started_id_the_gateway_never_has_is_followed_for_a_while_only(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    """A start that timed out and whose launch failed on the gateway: its id is asked for
    until START_GRACE passed without the gateway having it, then forgotten (a fake clock)."""
    gateway = Gateway(tmp_path / "state")
    now = [datetime.now(UTC)]
    root = tmp_path / "root"
    root.mkdir()
    settings = Settings(
        root_dir=str(root),
        server_token_file=True,
        server_poll_interval=3600,
        kernel_info_timeout=0.3,
    )
    kmap = KernelMap(settings, state_dir=tmp_path / "state", clock=lambda: now[0])

    async def go() -> tuple[list[str], list[str]]:
        async with serving(gateway, kmap) as url:
            sid = await kmap.add_server(url, "t0ken")
            with pytest.raises(KernelStartTimeout):
                await kmap.start_kernel(server_id=sid)
            await kmap.poll_servers()
            now[0] += START_GRACE / 2
            await kmap.poll_servers()
            followed = saved_started(tmp_path)
            now[0] += START_GRACE
            await kmap.poll_servers()
            await wait_until(lambda: saved_started(tmp_path) == [], what="the id forgotten")
            return followed, list(kmap.server_part.watch(sid).config.started)

    followed, after = aio.run(go())
    assert followed == gateway.kept_at_post[0]
    assert after == []
    assert loop_errors == []
