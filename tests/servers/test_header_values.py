"""Headers and tokens that cannot be sent as they are: refused in a sentence when the client
is made, never written into a request (the poll connection writes its requests itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.servers.client import ServerClient
from kernelmon.core.servers.secrets import SERVICE, headers_key
from tests.servers import test_map_servers
from tests.servers.realservers import free_port
from tests.servers.test_map_servers import make_map
from tests.servers.test_secrets import MemoryKeyring

memory_keyring = test_map_servers.memory_keyring  # the fixture: a keyring in memory

URL = "http://127.0.0.1:9/"


@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: 1", "abc\nGET / HTTP/1.1", "abc\0"],
)
def test_a_token_with_a_line_break_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="token has a line break"):
        ServerClient(URL, token)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Proxy": "a\r\nX-Injected: 1"},
        {"X-Proxy": "a\nb"},
        {"X Proxy": "a"},
        {"X-Proxy:": "a"},
        {"": "a"},
    ],
)
def test_a_header_that_cannot_be_sent_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a usable HTTP header"):
        ServerClient(URL, "token", headers=headers)


def test_usual_headers_and_tokens_are_kept() -> None:
    client = ServerClient(URL, "t0k-en_/+=", headers={"X-Auth-Request-User": "ana é"})
    assert client.headers["Authorization"] == "token t0k-en_/+="
    assert client.headers["X-Auth-Request-User"] == "ana é"


def test_a_saved_token_or_header_that_cannot_be_sent_costs_only_itself(
    aio: Any, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """A servers file entry with a header name that is no HTTP name is skipped like any
    unusable entry; a token the keyring gives back with a line break in it (a hand-edited
    store) leaves its server watched without it, said; the map starts either way."""
    state = tmp_path / "state"
    state.mkdir()
    url = f"http://127.0.0.1:{free_port()}/"
    good = {"id": "abc123", "url": url, "name": "kept", "headers": ["X-Proxy-Key"]}
    bad = {"id": "def456", "url": url, "name": "bad", "headers": ["X Bad\r\nX-Injected"]}
    (state / "servers.json").write_text(json.dumps({"version": 1, "servers": [bad, good]}))
    memory_keyring.set_password(SERVICE, "abc123", "t0ken\r\nX-Injected: 1")
    memory_keyring.set_password(SERVICE, headers_key("abc123"), '{"X-Proxy-Key": "v\\nw"}')

    async def launch() -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
        kmap = make_map(tmp_path)
        try:
            await kmap.start_monitoring()
            await kmap.poll_servers()
            book = kmap.server_part.book  # what the launch said
            return kmap.list_servers(), kmap.server_client("abc123").headers, book.problems
        finally:
            await kmap.close()

    servers, headers, problems = aio.run(launch())
    assert [(s["id"], s["status"]) for s in servers] == [("abc123", "unreachable")]
    assert headers == {}  # neither the token nor the header that cannot be sent
    assert any("bad" not in p and "watched without its token" in p for p in problems)
    assert any("is not an HTTP header name" in p for p in problems)
