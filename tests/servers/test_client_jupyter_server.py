"""ServerClient against a real jupyter_server on loopback: listing with a real notebook
session, actions through the REST API, a wrong token, a server killed mid-request and one
restarted on the same port, its own idle culler, and no activity from kernelmon's polling."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import urllib.request
from typing import Any

import pytest

from kernelmon.core.servers import ServerClient, ServerError, ServerKind, ServerStatus
from kernelmon.core.servers.model import kernel_fields, session_paths
from tests.servers.realservers import RealServer, restart_same_port, start_jupyter_server
from tests.waiting import wait_until

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def open_notebook(server: RealServer, path: str) -> dict[str, Any]:
    """What JupyterLab does when a notebook is opened: a session with a new kernel."""
    (server.root / path).write_text(json.dumps(NOTEBOOK))
    session = server.request(
        "POST",
        "api/sessions",
        {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}},
    )
    assert isinstance(session, dict)
    return session


def server_status(server: RealServer) -> dict[str, Any]:
    """GET /api/status without no_track_activity (this request is not counted either:
    the status handler never counts)."""
    status = server.request("GET", "api/status")
    assert isinstance(status, dict)
    return status


def test_lists_kernels_with_their_notebook(aio: Any, jupyter_server: RealServer) -> None:
    session = open_notebook(jupyter_server, "analysis.ipynb")
    kid = session["kernel"]["id"]

    async def go() -> Any:
        client = ServerClient(jupyter_server.url, token=jupyter_server.token)
        try:
            info = await client.identify()
            return info, await client.list_kernels(), await client.list_sessions(), client
        finally:
            await client.close()

    info, kernels, sessions, client = aio.run(go())
    assert info.kind == ServerKind.JUPYTER_SERVER
    assert info.version
    assert client.status == ServerStatus.REACHABLE
    assert client.error is None
    mine = [k for k in kernels.items if k.id == kid]
    assert len(mine) == 1
    assert kernels.skipped == ()
    paths = session_paths(sessions.items)
    assert paths[kid] == "analysis.ipynb"
    fields = kernel_fields(
        mine[0], server_id="s1", server_url=jupyter_server.url, notebook_path=paths[kid]
    )
    assert fields["notebook_path"] == "analysis.ipynb"
    assert fields["server_url"] == jupyter_server.url
    assert fields["server_id"] == "s1"
    assert fields["execution_state"] in ("starting", "idle", "busy")
    assert fields["last_activity"] is not None
    assert fields["connections"] == 0


def test_unchanged_listings_are_not_read_again(aio: Any, jupyter_server: RealServer) -> None:
    """The server's ETag comes back as If-None-Match: an unchanged listing is answered 304
    and the kept result is returned (the same object); a changed one is read anew."""

    async def go() -> None:
        client = ServerClient(jupyter_server.url, token=jupyter_server.token, timeout=60)
        try:
            first = await client.kernelspecs()
            assert await client.kernelspecs() is first
            sessions = await client.list_sessions()
            assert await client.list_sessions() is sessions
            open_notebook(jupyter_server, "etag.ipynb")  # (a quick request of its own)
            changed = await client.list_sessions()
            assert changed is not sessions
            assert "etag.ipynb" in {s.path for s in changed.items}
        finally:
            await client.close()

    aio.run(go())


def test_polls_read_over_one_connection_what_aiohttp_reads(
    aio: Any, jupyter_server: RealServer
) -> None:
    """A poll's listings over the poll connection (``fetch_listings``) give the models the
    same requests through aiohttp give; polls keep that one connection (the server's 304s
    read there too)."""
    kid = open_notebook(jupyter_server, "polled.ipynb")["kernel"]["id"]

    last: list[object] = [None]

    def settled() -> bool:  # the kernel's model as it was half a second ago: no news coming
        kernel = jupyter_server.request("GET", f"api/kernels/{kid}?no_track_activity=1")
        last[0], before = kernel, last[0]
        return kernel == before

    async def go() -> list[Any]:
        await wait_until(settled, 30, "the notebook's kernel settled", interval=0.5)
        polled = ServerClient(jupyter_server.url, token=jupyter_server.token, timeout=60)
        plain = ServerClient(jupyter_server.url, token=jupyter_server.token, timeout=60)
        seen: list[Any] = []
        try:
            for client in (polled, plain):
                await client.identify()
            for _ in range(3):
                await polled.fetch_listings()
                kernels, sessions = await polled.list_kernels(), await polled.list_sessions()
                seen.append(
                    (kernels, sessions, await plain.list_kernels(), await plain.list_sessions())
                )
            assert polled.poll_connections == 1
            assert polled.polled_answers == 6
            assert plain.poll_connections == 0
        finally:
            for client in (polled, plain):
                await client.close()
        return seen

    same_rounds = 0
    for kernels, sessions, plain_kernels, plain_sessions in aio.run(go()):
        # (the module's other kernels may change between the two: compared by id)
        assert {k.id for k in kernels.items} == {k.id for k in plain_kernels.items}
        assert {s.id for s in sessions.items} == {s.id for s in plain_sessions.items}
        (mine,) = [k for k in kernels.items if k.id == kid]
        (theirs,) = [k for k in plain_kernels.items if k.id == kid]
        # the kernel's activity may move between the two requests on a loaded machine
        moving = {"last_activity": None, "execution_state": None, "connections": 0}
        assert dataclasses.replace(mine, **moving) == dataclasses.replace(theirs, **moving)
        same_rounds += mine == theirs
        (notebook,) = [s for s in sessions.items if s.kernel_id == kid]
        assert notebook in plain_sessions.items
        assert session_paths(sessions.items)[kid] == "polled.ipynb"
    assert same_rounds >= 1  # and whole, field for field, when nothing moved in between


def test_actions_go_through_the_api(aio: Any, jupyter_server: RealServer) -> None:
    (jupyter_server.root / "work").mkdir(exist_ok=True)

    async def go() -> None:
        client = ServerClient(jupyter_server.url, token=jupyter_server.token, timeout=60)
        try:
            specs = await client.kernelspecs()
            assert specs.default == "python3"
            assert "python3" in {s.name for s in specs.specs.items}
            kernel = await client.start_kernel("python3", path="work")
            assert kernel.id in {k.id for k in (await client.list_kernels()).items}
            await client.interrupt(kernel.id)
            restarted = await client.restart(kernel.id, timeout=120)
            assert restarted.id == kernel.id
            await client.shutdown(kernel.id)
            assert kernel.id not in {k.id for k in (await client.list_kernels()).items}
            with pytest.raises(ServerError) as gone:
                await client.get_kernel(kernel.id)
            assert gone.value.kind == ServerStatus.NOT_FOUND
            # a request error leaves the server reachable
            assert client.status == ServerStatus.REACHABLE
            with pytest.raises(ServerError) as bad_id:
                await client.interrupt("../../api/sessions")
            assert bad_id.value.kind == ServerStatus.NOT_FOUND
        finally:
            await client.close()

    aio.run(go(), timeout=240)


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_wrong_token_is_auth_refused(aio: Any, jupyter_server: RealServer, token: Any) -> None:
    async def go() -> ServerClient:
        client = ServerClient(jupyter_server.url, token=token)
        try:
            assert (await client.identify()).kind == ServerKind.JUPYTER_SERVER  # no token needed
            with pytest.raises(ServerError) as refused:
                await client.check()
            assert refused.value.kind == ServerStatus.AUTH_REFUSED
            assert "token" in str(refused.value)
            return client
        finally:
            await client.close()

    client = aio.run(go())
    assert client.status == ServerStatus.AUTH_REFUSED
    assert client.error


def test_polling_makes_no_activity_and_the_servers_culler_still_culls(
    aio: Any, server_factory: list[RealServer], tmp_path: Any
) -> None:
    """kernelmon sends every GET with no_track_activity=1: the server's last activity (what
    JupyterHub's culler reads in /api/status) does not move; and the server's own culler
    still culls an idle kernel that kernelmon keeps polling."""
    server = start_jupyter_server(tmp_path / "culling", cull_idle_timeout=4, cull_interval=1)
    server_factory.append(server)

    async def poll(client: ServerClient) -> set[str]:
        await client.identify()
        await client.list_sessions()
        await client.kernelspecs()
        return {k.id for k in (await client.list_kernels()).items}

    async def quiet() -> tuple[str, str]:
        client = ServerClient(server.url, token=server.token, timeout=30)
        try:
            before = (await asyncio.to_thread(server_status, server))["last_activity"]
            for _ in range(5):
                await poll(client)
            after = (await asyncio.to_thread(server_status, server))["last_activity"]
            return before, after
        finally:
            await client.close()

    before, after = aio.run(quiet())
    assert after == before
    # the same GET without no_track_activity moves it (so the check above can fail)
    request = urllib.request.Request(
        server.url + "api/kernels", headers={"Authorization": f"token {server.token}"}
    )
    urllib.request.urlopen(request, timeout=30).read()
    assert server_status(server)["last_activity"] > after

    async def culled() -> bool:
        client = ServerClient(server.url, token=server.token, timeout=30)
        try:
            kernel = await client.start_kernel("python3")
            for _ in range(600):  # up to a minute on a loaded machine
                if kernel.id not in await poll(client):
                    return True
                await asyncio.sleep(0.1)
            return False
        finally:
            await client.close()

    assert aio.run(culled(), timeout=120), "an idle kernel kernelmon polled was not culled"


def test_server_killed_mid_request_then_restarted_on_the_same_port(
    aio: Any, server_factory: list[RealServer], tmp_path: Any
) -> None:
    server = start_jupyter_server(tmp_path / "killed")
    server_factory.append(server)

    client = ServerClient(server.url, token=server.token, timeout=30)

    async def killed() -> None:
        await client.list_kernels()  # a kept-alive connection now exists
        # jupyter_server answers an unknown kernel spec with a bare 500 (and then cannot
        # stop cleanly on SIGTERM: this server is killed below anyway)
        with pytest.raises(ServerError) as nospec:
            await client.start_kernel("no-such-kernel-spec")
        assert nospec.value.kind == ServerStatus.NOT_FOUND
        assert "has no kernel spec 'no-such-kernel-spec' (it has: " in str(nospec.value)
        assert "python3" in str(nospec.value)
        os.kill(server.process.pid, signal.SIGSTOP)  # the server cannot answer...
        pending = asyncio.create_task(client.list_kernels())
        await asyncio.sleep(0)  # ...while the request is on its way
        await asyncio.to_thread(server.kill)
        with pytest.raises(ServerError) as broken:
            await pending
        assert broken.value.kind == ServerStatus.UNREACHABLE
        with pytest.raises(ServerError) as down:
            await client.list_kernels()
        assert down.value.kind == ServerStatus.UNREACHABLE
        assert "cannot be reached" in str(down.value)

    async def back() -> None:
        listing = await client.list_kernels()
        assert listing.items == ()

    try:
        aio.run(killed())
        assert client.status == ServerStatus.UNREACHABLE
        since = client.status_since
        server_factory.append(restart_same_port(server))
        aio.run(back())
    finally:
        aio.run(client.close())
    assert client.status == ServerStatus.REACHABLE
    assert client.error is None
    assert client.status_since > since
