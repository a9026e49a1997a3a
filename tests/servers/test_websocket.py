"""The console's websocket to a real jupyter_server's kernel: code runs and its output comes
back (v1 subprotocol, and the legacy JSON protocol when the server does not select it), output
missed while the console was closed is replayed by the server, a wrong token and a server
that goes away are clear errors, and malformed frames cost only themselves."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.servers import ServerError, ServerStatus
from kernelmon.core.servers.websocket import (
    KernelWebSocket,
    ServerKernelConnection,
    WebSocketTarget,
)
from kernelmon.core.servers.ws_frames import pack_v1, unpack_legacy_binary, unpack_v1
from tests.servers.realservers import RealServer, free_port, start_jupyter_server
from tests.waiting import wait_until

Messages = list[tuple[str, dict[str, Any]]]


def target(server: RealServer, token: str | None = None) -> WebSocketTarget:
    return WebSocketTarget(
        server.url, {"Authorization": f"token {token or server.token}"}, timeout=20.0
    )


def start_kernel(server: RealServer) -> str:
    kernel = server.request("POST", "api/kernels", {"name": "python3"})
    assert isinstance(kernel, dict)
    return str(kernel["id"])


async def connect(
    server: RealServer, kid: str, session: str, messages: Messages, token: str | None = None
) -> ServerKernelConnection:
    socket = KernelWebSocket(
        target(server, token), kid, session, lambda c, m: messages.append((c, m))
    )

    async def forget(_conn: ServerKernelConnection) -> None:
        return None

    conn = ServerKernelConnection(kid, socket, forget)
    await conn.open()
    return conn


def stream_text(messages: Messages) -> str:
    return "".join(
        m["content"].get("text", "")
        for c, m in messages
        if c == "iopub" and m["header"]["msg_type"] == "stream"
    )


async def wait_for_text(messages: Messages, text: str, timeout: float = 30.0) -> None:
    await wait_until(lambda: text in stream_text(messages), timeout, f"the output {text!r}")


@pytest.fixture(scope="module")
def kernel(jupyter_server: RealServer) -> str:
    kid = start_kernel(jupyter_server)
    return kid


def test_runs_code_over_v1_and_replays_what_a_closed_console_missed(
    aio: Any, jupyter_server: RealServer, kernel: str
) -> None:
    session = f"kernelmon-console-{uuid.uuid4()}"

    async def go() -> tuple[str, str, int, Messages, Messages]:
        first: Messages = []
        conn = await connect(jupyter_server, kernel, session, first)
        protocol = conn.protocol
        conn.execute("import time; print('hello', 6 * 7)")
        await wait_for_text(first, "hello 42")
        # output printed after the console closed: the server buffers it for this session
        conn.execute("time.sleep(1.5); print('while away')")
        await asyncio.sleep(0.3)
        await conn.close()
        assert conn.closed
        with pytest.raises(RuntimeError, match="closed"):
            conn.execute("1")
        await asyncio.sleep(2.5)
        second: Messages = []
        again = await connect(jupyter_server, kernel, session, second)
        await wait_for_text(second, "while away")
        replayed = again.replayed
        await again.close()
        return protocol, again.protocol, replayed, first, second

    protocol, protocol2, replayed, first, _second = aio.run(go())
    assert (protocol, protocol2) == ("v1", "v1")
    # the execute_input and the stream of the request made before closing
    assert replayed >= 1
    assert "while away" not in stream_text(first)
    # messages come as Session.deserialize makes them, with their parent (our request)
    hello = next(m for c, m in first if m["header"]["msg_type"] == "stream")
    assert hello["parent_header"]["session"] == session
    assert hello["header"]["msg_type"] == hello["msg_type"] == "stream"


def test_another_session_gets_no_replay(aio: Any, jupyter_server: RealServer, kernel: str) -> None:
    async def go() -> tuple[int, Messages]:
        mine: Messages = []
        conn = await connect(jupyter_server, kernel, f"kernelmon-console-{uuid.uuid4()}", mine)
        conn.execute("time.sleep(1); print('for the first session')")
        await asyncio.sleep(0.3)
        await conn.close()
        await asyncio.sleep(1.5)
        other: Messages = []
        conn2 = await connect(jupyter_server, kernel, f"kernelmon-console-{uuid.uuid4()}", other)
        await asyncio.sleep(0.5)
        await conn2.close()
        return conn2.replayed, other

    replayed, other = aio.run(go())
    assert replayed == 0
    assert "for the first session" not in stream_text(other)


def test_request_waits_for_its_reply(aio: Any, jupyter_server: RealServer, kernel: str) -> None:
    async def go() -> dict[str, Any]:
        conn = await connect(jupyter_server, kernel, f"s-{uuid.uuid4()}", [])
        try:
            return await conn.request("control", "kernel_info_request", timeout=20)
        finally:
            await conn.close()

    reply = aio.run(go())
    assert reply["msg_type"] == "kernel_info_reply"
    assert reply["content"]["status"] == "ok"


def test_wrong_token_and_unknown_kernel_are_clear_errors(
    aio: Any, jupyter_server: RealServer, kernel: str
) -> None:
    async def go() -> tuple[ServerError, ServerError, ServerError]:
        errors = []
        for server_kid, token in ((kernel, "wrong"), (str(uuid.uuid4()), None)):
            with pytest.raises(ServerError) as caught:
                await connect(jupyter_server, server_kid, "s", [], token=token)
            errors.append(caught.value)
        nobody = WebSocketTarget(f"http://127.0.0.1:{free_port()}/", timeout=5)
        with pytest.raises(ServerError) as caught:
            await KernelWebSocket(nobody, kernel, "s").open()
        errors.append(caught.value)
        return errors[0], errors[1], errors[2]

    wrong, unknown, nobody = aio.run(go())
    assert wrong.kind == ServerStatus.AUTH_REFUSED
    assert "check the token" in str(wrong)
    assert unknown.kind == ServerStatus.NOT_FOUND
    assert "has no kernel" in str(unknown)
    assert nobody.kind == ServerStatus.UNREACHABLE
    assert "cannot be reached" in str(nobody)


def test_server_gone_closes_the_console_with_a_sentence(aio: Any, tmp_path: Path) -> None:
    server = start_jupyter_server(tmp_path / "doomed")
    try:
        kid = start_kernel(server)

        async def go() -> tuple[list[str], ServerKernelConnection]:
            told: list[str] = []
            loop_errors: list[dict[str, Any]] = []
            asyncio.get_running_loop().set_exception_handler(lambda _l, c: loop_errors.append(c))
            conn = await connect(server, kid, "s", [])
            conn.on_lost = lambda n, text: told.append(text)
            server.kill()
            await wait_until(lambda: told, 30, "the console told the websocket closed")
            with pytest.raises(RuntimeError, match="closed"):
                conn.execute("1")
            await conn.close()
            await asyncio.sleep(0.2)
            assert loop_errors == []
            return told, conn

        told, conn = aio.run(go())
        assert conn.closed
        assert len(told) == 1
        assert server.url in told[0]
        assert "open it again to reconnect" in told[0]
    finally:
        server.stop()


def test_legacy_protocol_when_the_server_refuses_the_subprotocol(aio: Any, tmp_path: Path) -> None:
    base = tmp_path / "legacy"
    (base / "config").mkdir(parents=True)
    # an empty kernel_ws_protocol makes jupyter_server 2 select the legacy protocol
    (base / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ZMQChannelsWebsocketConnection": {"kernel_ws_protocol": ""}})
    )
    server = start_jupyter_server(base)
    try:
        kid = start_kernel(server)

        async def go() -> tuple[str, Messages, dict[str, Any]]:
            messages: Messages = []
            conn = await connect(server, kid, "legacy-session", messages)
            try:
                conn.execute("print('over json')")
                await wait_for_text(messages, "over json")
                reply = await conn.request("shell", "kernel_info_request", timeout=20)
                return conn.protocol, messages, reply
            finally:
                await conn.close()

        protocol, messages, reply = aio.run(go())
        assert protocol == "legacy"
        assert "over json" in stream_text(messages)
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["content"]["status"] == "ok"
    finally:
        server.stop()


@pytest.mark.eg
def test_console_on_a_gateway_kernel(aio: Any, gateway: RealServer) -> None:
    kid = start_kernel(gateway)

    async def go() -> tuple[str, Messages]:
        messages: Messages = []
        conn = await connect(gateway, kid, "gw-session", messages)
        try:
            conn.execute("print('from the gateway')")
            await wait_for_text(messages, "from the gateway", timeout=60)
            return conn.protocol, messages
        finally:
            await conn.close()

    protocol, messages = aio.run(go(), timeout=120)
    # Enterprise Gateway 3.3 (on jupyter_server 1.24) selects the v1 subprotocol
    assert protocol == "v1"
    assert "from the gateway" in stream_text(messages)


def test_frames_round_trip_and_malformed_ones_are_refused() -> None:
    parts = [b'{"msg_type": "x"}', b"{}", b"{}", b'{"a": 1}', b"\x00buffer"]
    assert unpack_v1(pack_v1("shell", parts)) == ("shell", parts)
    for bad in (b"", b"\x01" + bytes(7), (3).to_bytes(8, "little") + bytes(8), b"\xff" * 64):
        with pytest.raises(ValueError, match="v1 frame"):
            unpack_v1(bad)
    for bad in (b"", b"\x00\x00\x00\x02" + bytes(4), b"\x00\x00\x00\x01\x00\x00\x00\x08[1]"):
        with pytest.raises(ValueError, match=r"frame|JSON"):
            unpack_legacy_binary(bad)
    # legacy binary: jupyter_server's serialize_binary_message
    from jupyter_server.services.kernels.connection.base import (
        serialize_binary_message,
        serialize_msg_to_ws_v1,
    )

    msg = {"header": {"msg_type": "display_data"}, "content": {}, "buffers": [b"raw"]}
    assert unpack_legacy_binary(serialize_binary_message(msg)) == msg
    assert unpack_v1(serialize_msg_to_ws_v1(parts, "iopub")) == ("iopub", parts)


def test_the_map_connects_a_server_kernel_over_its_websocket(
    aio: Any, jupyter_server: RealServer, kernel: str, tmp_path: Path
) -> None:
    """``KernelMap.connect`` (what the console calls) routes a server's kernel to its
    server's websocket; the console's interface is the same."""
    from kernelmon.core import KernelMap, KernelNotFound, Settings

    settings = Settings(root_dir=str(tmp_path), server_token_file=True)  # no keyring here
    kmap = KernelMap(settings, state_dir=tmp_path / "state")

    async def go() -> tuple[Any, list[Any]]:
        await kmap.add_server(jupyter_server.url, jupyter_server.token)
        await wait_until(lambda: kernel in {m["id"] for m in kmap.list_kernels()}, 20)
        messages: Messages = []
        conn = await kmap.connect(
            kernel, "kernelmon-console-map", lambda c, m: messages.append((c, m))
        )
        conn.execute("print('through the map')")
        await wait_for_text(messages, "through the map")
        open_now = list(kmap.frontends._server_connections.get(kernel, []))
        await conn.close()
        with pytest.raises(KernelNotFound):  # not a server's kernel, and not in the map
            await kmap.connect("no-such-kernel", "s", lambda c, m: None)
        await kmap.close()
        return conn, open_now

    conn, open_now = aio.run(go())
    assert isinstance(conn, ServerKernelConnection)
    assert open_now == [conn]
    assert conn.session_key == "kernelmon-console-map"
    assert kernel not in kmap.frontends._server_connections


def test_a_console_websocket_closes_when_its_server_is_removed(
    aio: Any, jupyter_server: RealServer, kernel: str, tmp_path: Path
) -> None:
    """A server's kernel that leaves the map (its server removed) leaves no websocket open."""
    from kernelmon.core import KernelMap, Settings

    settings = Settings(root_dir=str(tmp_path), server_token_file=True)  # no keyring here
    kmap = KernelMap(settings, state_dir=tmp_path / "state")

    async def go() -> ServerKernelConnection:
        sid = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        await wait_until(lambda: kernel in {m["id"] for m in kmap.list_kernels()}, 20)
        conn = await kmap.connect(kernel, "kernelmon-console-removed", lambda c, m: None)
        assert isinstance(conn, ServerKernelConnection)
        await kmap.remove_server(sid)
        await wait_until(lambda: conn.socket.closed, 10, "the websocket closed")
        await kmap.close()
        return conn

    conn = aio.run(go())
    assert conn.closed
    assert kernel not in kmap.frontends._server_connections
