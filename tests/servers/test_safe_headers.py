"""Header values are secrets like the token: kept beside it in the keyring (``TokenStore``),
never in servers.json (only their names); a servers file an older kernelmon wrote with the
values still works, and its values move to the keyring (the file is rewritten without them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keyring
from keyring.backends import fail

from kernelmon.core.servers.book import ServerBook
from kernelmon.core.servers.secrets import SERVICE
from tests.servers import test_map_servers
from tests.servers.realservers import RealServer
from tests.servers.test_map_servers import make_map
from tests.servers.test_secrets import MemoryKeyring

VALUE = "p-s3cret-value"
memory_keyring = test_map_servers.memory_keyring  # the fixture: a keyring in memory


def test_header_values_go_to_the_keyring_and_come_back(
    aio: Any, jupyter_server: RealServer, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    async def first() -> str:
        kmap = make_map(tmp_path)
        try:
            return await kmap.add_server(
                jupyter_server.url, jupyter_server.token, headers={"X-Proxy-Key": VALUE}
            )
        finally:
            await kmap.close()

    async def second(server_id: str) -> dict[str, str]:
        kmap = make_map(tmp_path)
        try:
            await kmap.start_monitoring()
            headers = kmap.server_client(server_id).headers
            await kmap.remove_server(server_id)
            return headers
        finally:
            await kmap.close()

    server_id = aio.run(first())
    saved = (tmp_path / "state" / "servers.json").read_text()
    assert VALUE not in saved
    assert json.loads(saved)["servers"][0]["headers"] == ["X-Proxy-Key"]
    kept = [v for (service, _), v in memory_keyring.passwords.items() if service == SERVICE]
    assert any(VALUE in v for v in kept)  # beside the token
    headers = aio.run(second(server_id))
    assert headers["X-Proxy-Key"] == VALUE  # the next launch sends it again
    assert memory_keyring.passwords == {}  # removing the server forgot the values too


def test_an_old_servers_file_with_header_values_moves_them(
    aio: Any, jupyter_server: RealServer, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    old = {"id": "old123", "url": jupyter_server.url, "name": "old", "headers": {"X-Key": VALUE}}
    (state / "servers.json").write_text(json.dumps({"version": 1, "servers": [old]}))

    async def launch() -> tuple[dict[str, str], list[dict[str, Any]]]:
        kmap = make_map(tmp_path)
        try:
            await kmap.start_monitoring()
            return kmap.server_client("old123").headers, kmap.list_servers()
        finally:
            await kmap.close()

    headers, servers = aio.run(launch())
    assert headers["X-Key"] == VALUE  # still works
    assert [s["headers"] for s in servers] == [["X-Key"]]
    saved = (state / "servers.json").read_text()
    assert VALUE not in saved
    assert json.loads(saved)["servers"][0]["headers"] == ["X-Key"]
    assert any(VALUE in v for v in memory_keyring.passwords.values())


def test_without_a_keyring_old_header_values_stay_until_they_can_move(
    aio: Any, tmp_path: Path
) -> None:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        old = {"id": "o1", "url": "http://10.0.0.9/", "name": "old", "headers": {"X-Key": VALUE}}
        (tmp_path / "servers.json").write_text(json.dumps({"version": 1, "servers": [old]}))
        book = ServerBook(lambda: tmp_path, lambda: False)
        (config,) = aio.run(book.load())
    finally:
        keyring.set_keyring(before)
    assert config.headers == {"X-Key": VALUE}  # the server still works
    assert len(book.problems) == 1
    assert "allow the token file" in book.problems[0]
    book.save([config.saved()])  # nothing is lost by a later save either
    assert VALUE in (tmp_path / "servers.json").read_text()
