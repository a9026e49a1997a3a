"""Headers and tokens that cannot be sent as they are: refused in a sentence when the client
is made, never written into a request (the poll connection writes its requests itself)."""

from __future__ import annotations

import pytest

from kernelmon.core.servers.client import ServerClient

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
