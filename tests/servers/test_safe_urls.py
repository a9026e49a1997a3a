"""An address with a user name or password in it (``http://ann:s3cret@host/``) is refused with
one sentence pointing to the token or headers, never repeating the password; nothing of it is
kept, and an old servers file holding one loses only that entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.servers import ServerClient
from kernelmon.core.servers.book import ServerBook
from tests.servers.realservers import RealServer
from tests.servers.test_map_servers import make_map

SECRET = "s3cret"


def with_credentials(url: str, user: str = "ann") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{SECRET}@{rest}"


@pytest.mark.parametrize("use_token", [False, True])
def test_add_server_refuses_credentials_in_the_url(
    aio: Any, jupyter_server: RealServer, tmp_path: Path, use_token: bool
) -> None:
    kmap = make_map(tmp_path, server_token_file=True)
    url = with_credentials(jupyter_server.url)

    async def go() -> tuple[BaseException, list[dict[str, Any]]]:
        try:
            await kmap.add_server(url, jupyter_server.token if use_token else None)
        except Exception as error:  # which exception is what the test checks
            return error, kmap.list_servers()
        raise AssertionError("an address with a password was accepted")

    try:
        error, servers = aio.run(go())
    finally:
        aio.run(kmap.close())
    assert type(error) is ValueError  # kernelmon's sentence, not aiohttp's
    sentence = str(error)
    assert SECRET not in sentence
    assert "token" in sentence
    assert "user name or password" in sentence
    assert servers == []
    kept = tmp_path / "state"
    assert not any(SECRET in p.read_text() for p in kept.rglob("*") if p.is_file())


def test_client_refuses_credentials_even_a_bare_user() -> None:
    for url in (with_credentials("http://127.0.0.1:9/"), "https://ann@hub.example/user/ann/"):
        with pytest.raises(ValueError, match="user name or password") as caught:
            ServerClient(url, "t")
        assert SECRET not in str(caught.value)
    ServerClient("http://127.0.0.1:9/")  # a plain address is fine


def test_an_old_servers_file_with_credentials_loses_only_that_entry(tmp_path: Path) -> None:
    servers = [
        {"id": "a1", "url": with_credentials("http://10.0.0.1:8888/"), "name": "old"},
        {"id": "b2", "url": "http://10.0.0.2:8888/", "name": "good"},
    ]
    (tmp_path / "servers.json").write_text(json.dumps({"version": 1, "servers": servers}))
    book = ServerBook(lambda: tmp_path, lambda: False)
    configs = book.read()
    assert [c.id for c in configs] == ["b2"]
    assert len(book.problems) == 1
    assert "user name or password" in book.problems[0]
    assert SECRET not in book.problems[0]
    book.save([c.saved() for c in configs])  # what is kept from now on has no password
    assert SECRET not in (tmp_path / "servers.json").read_text()
