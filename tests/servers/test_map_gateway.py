"""Enterprise Gateways through the map (real gateways, local process proxy): with listing on,
its kernels are listed like a Jupyter Server's; with listing off (its default), kernelmon
follows the kernels it started there by id and says why it cannot see the others."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.events import KernelEvent, KernelRemoved
from tests.servers.realservers import RealServer
from tests.servers.test_local_servers import kernel_ids
from tests.servers.test_map_servers import make_map

pytestmark = [pytest.mark.eg, pytest.mark.timeout(900)]


def test_a_listing_gateway(aio: Any, gateway: RealServer, tmp_path: Path) -> None:
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=60)
    env = {"KERNEL_WORKING_DIR": str(gateway.root)}

    async def go() -> tuple[dict[str, Any], dict[str, Any], bool]:
        sid = await kmap.add_server(gateway.url, gateway.token, name="cluster")
        # the gateway takes the id kernelmon gives it (it keeps that id before sending)
        chosen = str(uuid.uuid4())
        kid = await kmap.start_kernel(server_id=sid, env={**env, "KERNEL_ID": chosen})
        assert kid == chosen
        other = await asyncio.to_thread(gateway.request, "POST", "api/kernels", {"env": env})
        assert isinstance(other, dict)
        await kmap.poll_servers()
        seen_other = other["id"] in kmap
        model = kmap.kernel_model(kid)
        await kmap.shutdown_kernel(kid)
        await kmap.shutdown_kernel(other["id"])
        assert {kid, other["id"]}.isdisjoint(await asyncio.to_thread(kernel_ids, gateway))
        return kmap.list_servers()[0], model, seen_other

    try:
        server, model, seen_other = aio.run(go(), timeout=300)
    finally:
        aio.run(kmap.close())
    assert server["kind"] == "enterprise_gateway"
    assert server["status"] == "reachable"
    assert server["lists_kernels"] is True
    assert model["server_name"] == "cluster"
    assert model["notebook_path"] is None  # a gateway's clients keep their sessions
    assert seen_other


def test_a_gateway_that_forbids_listing(
    aio: Any, closed_gateway: RealServer, tmp_path: Path
) -> None:
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=60)
    env = {"KERNEL_WORKING_DIR": str(closed_gateway.root)}
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    async def go() -> tuple[dict[str, Any], bool, bool, str]:
        sid = await kmap.add_server(closed_gateway.url, closed_gateway.token)
        kid = await kmap.start_kernel(server_id=sid, env=env)
        saved = (tmp_path / "state" / "servers.json").read_text()
        assert kid in saved  # chosen by kernelmon, kept before the POST
        other = await asyncio.to_thread(closed_gateway.request, "POST", "api/kernels", {"env": env})
        assert isinstance(other, dict)
        await kmap.poll_servers()
        server = kmap.list_servers()[0]
        still = kid in kmap
        seen_other = other["id"] in kmap
        # shut down behind kernelmon's back: the gateway says it does not know it any more
        await asyncio.to_thread(closed_gateway.request, "DELETE", f"api/kernels/{kid}")
        await asyncio.to_thread(closed_gateway.request, "DELETE", f"api/kernels/{other['id']}")
        await kmap.poll_servers()
        return server, still, seen_other, kid

    try:
        server, still, seen_other, kid = aio.run(go(), timeout=300)
        gone = kid not in kmap
    finally:
        aio.run(kmap.close())
    assert server["kind"] == "enterprise_gateway"
    assert server["status"] == "listing_forbidden"
    assert server["lists_kernels"] is False
    assert "EG_LIST_KERNELS" in server["error"]
    assert "only the kernels it started there" in server["error"]
    assert still
    assert not seen_other
    assert gone
    (removed,) = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]
    assert removed.reason.startswith("gone from the server")
