"""ServerClient against a real Jupyter Enterprise Gateway (local process proxy) on loopback,
with kernel listing on and off."""

from __future__ import annotations

from typing import Any

import pytest

from kernelmon.core.servers import ServerClient, ServerError, ServerKind, ServerStatus
from tests.servers.realservers import RealServer

# The first run builds the gateway's own environment (minutes); later runs reuse it.
pytestmark = [pytest.mark.eg, pytest.mark.timeout(900)]


def test_gateway_is_identified_and_its_kernels_handled(aio: Any, gateway: RealServer) -> None:
    async def go() -> ServerClient:
        client = ServerClient(gateway.url, token=gateway.token, timeout=60)
        try:
            info = await client.identify()
            assert info.kind == ServerKind.ENTERPRISE_GATEWAY
            assert info.gateway_version
            assert client.kind == ServerKind.ENTERPRISE_GATEWAY
            specs = await client.kernelspecs()
            assert "python3" in {s.name for s in specs.specs.items}
            kernel = await client.start_kernel(
                "python3", env={"KERNEL_WORKING_DIR": str(gateway.root)}
            )
            assert kernel.id in {k.id for k in (await client.list_kernels()).items}
            assert (await client.list_sessions()).items == ()  # EG's clients keep their own
            await client.interrupt(kernel.id)
            assert (await client.restart(kernel.id, timeout=120)).id == kernel.id
            await client.shutdown(kernel.id)
            assert kernel.id not in {k.id for k in (await client.list_kernels()).items}
            # EG answers an unknown kernel spec with a 500 and a traceback
            with pytest.raises(ServerError) as nospec:
                await client.start_kernel("no-such-kernel-spec")
            assert nospec.value.kind == ServerStatus.NOT_FOUND
            assert "no kernel spec 'no-such-kernel-spec'" in str(nospec.value)
            return client
        finally:
            await client.close()

    client = aio.run(go(), timeout=300)
    assert client.status == ServerStatus.REACHABLE


def test_gateway_refuses_a_wrong_token(aio: Any, gateway: RealServer) -> None:
    async def go() -> ServerError:
        client = ServerClient(gateway.url, token="wrong")
        try:
            with pytest.raises(ServerError) as refused:
                await client.check()  # the gateway wants the token even for GET /api
            return refused.value
        finally:
            await client.close()

    error = aio.run(go())
    assert error.kind == ServerStatus.AUTH_REFUSED
    assert error.http_status == 401


def test_listing_forbidden_but_own_kernels_followed(aio: Any, closed_gateway: RealServer) -> None:
    """Without EG_LIST_KERNELS the gateway answers 403 to GET /api/kernels: the status says
    so in one sentence, and the kernels kernelmon starts there can still be followed by id."""

    async def go() -> tuple[ServerClient, ServerError]:
        client = ServerClient(closed_gateway.url, token=closed_gateway.token, timeout=60)
        try:
            info = await client.check()  # "test the connection" passes, saying why
            assert info.kind == ServerKind.ENTERPRISE_GATEWAY
            assert client.status == ServerStatus.LISTING_FORBIDDEN
            with pytest.raises(ServerError) as forbidden:
                await client.list_kernels()
            kernel = await client.start_kernel("python3")
            assert (await client.get_kernel(kernel.id)).id == kernel.id
            await client.shutdown(kernel.id)
            with pytest.raises(ServerError) as gone:
                await client.get_kernel(kernel.id)
            assert gone.value.kind == ServerStatus.NOT_FOUND
            with pytest.raises(ServerError):
                await client.list_kernels()
            return client, forbidden.value
        finally:
            await client.close()

    client, error = aio.run(go(), timeout=300)
    assert error.kind == ServerStatus.LISTING_FORBIDDEN
    assert "EG_LIST_KERNELS" in str(error)
    assert client.status == ServerStatus.LISTING_FORBIDDEN
