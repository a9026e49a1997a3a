"""KernelMap.add_server / list_servers / remove_server against a real jupyter_server: the
kind detected, the connection tested before anything is kept, the server's kernels in the map
with their notebook, the server kept across launches (its token in the keyring, never in the
servers file), and removed again."""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import KernelEvent, KernelRemoved, ServerChanged, ServerRemoved
from kernelmon.core.servers import ServerError, ServerStatus, TokenStoreError, UnknownServer
from kernelmon.core.servers.secrets import SERVICE
from tests.servers.realservers import RealServer, free_port
from tests.servers.test_client_jupyter_server import open_notebook
from tests.servers.test_secrets import MemoryKeyring
from tests.waiting import wait_until

LIST_KEYS = {
    "id", "url", "name", "kind", "version", "status", "error", "status_text", "status_since",
    "local", "pid", "root_dir", "headers", "verify_tls", "kernels", "lists_kernels",
    "server_culls", "cull_settings", "kernelmon_culling", "last_poll", "next_poll",
}  # fmt: skip


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)


def make_map(tmp_path: Path, **settings: Any) -> KernelMap:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    values: dict[str, Any] = {"root_dir": str(root), "server_poll_interval": 0.5}
    values.update(settings)
    return KernelMap(Settings(**values), state_dir=tmp_path / "state", runtime_dirs=[str(runtime)])


def test_add_list_remove_and_keep_across_launches(
    aio: Any, jupyter_server: RealServer, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    session = open_notebook(jupyter_server, "analysis.ipynb")
    kid = session["kernel"]["id"]
    events: list[KernelEvent] = []

    async def first_launch() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        kmap = make_map(tmp_path)
        kmap.subscribe(events.append)
        try:
            await kmap.start_monitoring()
            server_id = await kmap.add_server(
                jupyter_server.url, jupyter_server.token, name="workstation"
            )
            # the same address again is the same server
            assert await kmap.add_server(jupyter_server.url, jupyter_server.token) == server_id
            await wait_until(lambda: kid in kmap, what="the server's kernel in the map")
            await wait_until(
                lambda: kmap.kernel_model(kid)["notebook_path"] == "analysis.ipynb",
                what="its notebook",
            )
            return server_id, kmap.kernel_model(kid), kmap.list_servers()
        finally:
            await kmap.close()

    server_id, model, servers = aio.run(first_launch())
    assert model["server_id"] == server_id
    assert model["server_url"] == jupyter_server.url
    assert model["server_name"] == "workstation"
    assert model["origin"] == "server"
    assert model["name"] == "python3"
    (entry,) = servers
    assert set(entry) == LIST_KEYS
    assert entry["id"] == server_id
    assert entry["kind"] == "jupyter_server"
    assert entry["status"] == "reachable"
    assert entry["error"] is None
    assert entry["local"] is False
    assert entry["kernels"] >= 1
    assert entry["server_culls"] == "unknown"
    assert entry["kernelmon_culling"] is False
    assert any(isinstance(e, ServerChanged) and e.server_id == server_id for e in events)
    # the token is in the keyring, not in the servers file
    assert memory_keyring.passwords == {(SERVICE, server_id): jupyter_server.token}
    saved = (tmp_path / "state" / "servers.json").read_text()
    assert jupyter_server.token not in saved
    assert json.loads(saved)["servers"][0]["url"] == jupyter_server.url
    # closing the map left the kernel running on the server
    assert any(k["id"] == kid for k in jupyter_server.request("GET", "api/kernels"))  # type: ignore[union-attr]

    async def second_launch() -> tuple[list[dict[str, Any]], bool, list[dict[str, Any]]]:
        kmap = make_map(tmp_path)
        kmap.subscribe(events.append)
        try:
            await kmap.start_monitoring()
            await wait_until(lambda: kid in kmap, what="the kept server's kernel")
            servers = kmap.list_servers()
            client = kmap.server_client(server_id)
            assert client.headers["Authorization"] == f"token {jupyter_server.token}"
            await kmap.remove_server(server_id)
            gone = kid not in kmap
            with pytest.raises(UnknownServer):
                await kmap.remove_server(server_id)
            return servers, gone, kmap.list_servers()
        finally:
            await kmap.close()

    servers, gone, after = aio.run(second_launch())
    assert [s["id"] for s in servers] == [server_id]
    assert servers[0]["status"] == "reachable"  # the token came back from the keyring
    assert gone
    assert after == []
    assert any(isinstance(e, ServerRemoved) and e.server_id == server_id for e in events)
    removed = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]
    assert "removed from kernelmon" in removed[-1].reason
    assert memory_keyring.passwords == {}
    assert json.loads((tmp_path / "state" / "servers.json").read_text())["servers"] == []
    jupyter_server.request("DELETE", f"api/kernels/{kid}")


def test_a_wrong_token_is_refused_and_nothing_is_kept(
    aio: Any, jupyter_server: RealServer, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    async def go() -> tuple[ServerError, list[dict[str, Any]]]:
        kmap = make_map(tmp_path)
        try:
            with pytest.raises(ServerError) as caught:
                await kmap.add_server(jupyter_server.url, "not-the-token")
            with pytest.raises(ValueError, match="not an http"):
                await kmap.add_server("ftp://127.0.0.1/")
            return caught.value, kmap.list_servers()
        finally:
            await kmap.close()

    error, servers = aio.run(go())
    assert error.kind == ServerStatus.AUTH_REFUSED
    assert "refused the token" in str(error)
    assert servers == []
    assert memory_keyring.passwords == {}
    assert not (tmp_path / "state" / "servers.json").exists()


def test_without_a_keyring_a_token_is_kept_only_with_consent(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    kmap = make_map(tmp_path)
    tokens = tmp_path / "state" / "server-tokens.json"

    async def go() -> tuple[str, list[dict[str, Any]]]:
        with pytest.raises(TokenStoreError, match="No system keyring"):
            await kmap.add_server(jupyter_server.url, jupyter_server.token)
        refused = kmap.list_servers()
        kmap.apply_settings(dataclasses.replace(kmap.settings, server_token_file=True))
        return await kmap.add_server(jupyter_server.url, jupyter_server.token), refused

    try:
        server_id, refused = aio.run(go())
    finally:
        aio.run(kmap.close())
        keyring.set_keyring(before)
    assert refused == []
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert json.loads(tokens.read_text()) == {server_id: jupyter_server.token}
    assert jupyter_server.token not in (tmp_path / "state" / "servers.json").read_text()


def test_a_hostile_servers_file_loses_nothing_else(aio: Any, tmp_path: Path) -> None:
    """A servers file that is not kernelmon's is moved aside; an unusable entry is skipped
    and the others are kept; the map starts either way."""
    state = tmp_path / "state"
    state.mkdir()
    good = {"id": "abc123", "url": f"http://127.0.0.1:{free_port()}/", "name": "gone"}
    bad = [{"id": "x"}, "not a server", {"id": "y", "url": "u", "name": "n", "headers": [1]}]
    (state / "servers.json").write_text(json.dumps({"version": 1, "servers": [*bad, good]}))

    async def launch() -> list[dict[str, Any]]:
        kmap = make_map(tmp_path)
        try:
            await kmap.start_monitoring()
            await kmap.poll_servers()
            return kmap.list_servers()
        finally:
            await kmap.close()

    (kept,) = aio.run(launch())
    assert (kept["id"], kept["name"], kept["status"]) == ("abc123", "gone", "unreachable")
    (state / "servers.json").write_text("{not json")
    assert aio.run(launch()) == []
    assert (state / "servers.json.unreadable").read_text() == "{not json"
