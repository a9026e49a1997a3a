"""The polling GETs over one kept-alive connection (``ServerClient.fetch_listings``, then
``list_kernels`` and ``list_sessions``), against a loopback server written in bytes: it
answers the happy path (200 with Content-Length and JSON, 304) itself, and everything else
(chunked, Connection: close, HTTP/1.0, another status, a redirect, gzip, a body cut short, a
body too large, a slow answer) ends as the client's aiohttp requests end: the same result,
status and sentence."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.servers import ServerClient, ServerError, ServerKind, ServerStatus
from kernelmon.core.servers.client import MAX_ANSWER_BYTES
from tests.servers.test_client_faults import GOOD, _self_signed
from tests.servers.test_map_servers import make_map
from tests.waiting import wait_until

SESSION = {"id": "s-1", "path": "a.ipynb", "name": "a.ipynb", "type": "notebook", "kernel": GOOD}
Answer = Callable[["Request"], Awaitable[bytes | None]]


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], names: list[str]) -> None:
        self.method, self.target, self.headers = method, target, headers
        #: the header names as sent, in order (twice if sent twice)
        self.names = names
        self.path = target.split("?", 1)[0]

    @property
    def ours(self) -> bool:
        """Sent over the poll connection (not by aiohttp)."""
        return self.headers.get("user-agent", "").startswith("kernelmon/")


def response(
    status: str, body: bytes, *headers: str, ctype: str = "application/json", length: bool = True
) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def listing(request: Request, payload: object) -> bytes:
    """200 with tornado's ETag, or 304 when the client sent it back."""
    body = json.dumps(payload).encode()
    etag = f'"{hashlib.sha1(body).hexdigest()}"'
    if request.headers.get("if-none-match") == etag:
        return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\r\n".encode()
    return response("200 OK", body, f"ETag: {etag}")


class RawServer:
    """A loopback HTTP/1.1 server that writes its answers byte by byte as the test says;
    ``None`` from an answer closes the connection."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.requests: list[Request] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

        async def version(request: Request) -> bytes:
            return response("200 OK", b'{"version": "2.14.0"}')

        async def kernels(request: Request) -> bytes:
            return listing(request, [GOOD])

        async def sessions(request: Request) -> bytes:
            return listing(request, [SESSION])

        async def specs(request: Request) -> bytes:
            return listing(request, {"default": "python3", "kernelspecs": {}})

        self.answers: dict[str, Answer] = {
            "/api": version,
            "/api/kernelspecs": specs,
            "/api/kernels": kernels,
            "/api/sessions": sessions,
        }

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *rest = head.split("\r\n")
                method, target, _ = line.split(" ")
                fields = [h.partition(":") for h in rest if h]
                headers = {k.lower(): v.strip() for k, _, v in fields}
                request = Request(method, target, headers, [k.lower() for k, _, _ in fields])
                self.requests.append(request)
                answer = await self.answers[request.path](request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"\r\nConnection: close" in answer or answer.startswith(b"HTTP/1.0"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.close()

    async def close(self) -> None:
        self.drop_connections()
        self.server.close()
        await self.server.wait_closed()

    def asked(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


async def failure(call: Awaitable[object]) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await call
    return caught.value


def outcome(result: object) -> object:
    if isinstance(result, ServerError):
        return (result.kind, result.sentence, result.http_status)
    return result


async def poll(client: ServerClient) -> tuple[object, object]:
    """What a server's poll does (``ServerWatch``): both listings asked at once over the poll
    connection, then read."""
    await client.fetch_listings()
    try:
        return await plain(client)
    finally:
        client.forget_fetched()


async def plain(client: ServerClient) -> tuple[object, object]:
    """Both listings read (without ``fetch_listings``: through aiohttp only)."""
    results: list[object] = []
    for call in (client.list_kernels, client.list_sessions):
        try:
            results.append(outcome(await call()))
        except ServerError as error:
            results.append(outcome(error))
    return results[0], results[1]


def chunked(body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


BODY = json.dumps([GOOD]).encode()
ERROR = json.dumps({"reason": "Internal Server Error", "message": "the disk is full"}).encode()


FAULTS: dict[str, bytes | str] = {
    "chunked": chunked(BODY),
    "connection-close": response("200 OK", BODY, "Connection: close"),
    "http-1.0": b"HTTP/1.0" + response("200 OK", BODY)[len(b"HTTP/1.1") :],
    "no-length": response("200 OK", BODY, "Connection: close", length=False),
    "gzip": response("200 OK", gzip.compress(BODY), "Content-Encoding: gzip"),
    "server-error": response("500 Internal Server Error", ERROR),
    "token-refused": response("401 Unauthorized", b'{"message": "Unauthorized"}'),
    "login-redirect": response("302 Found", b"", "Location: /login?next=%2Fapi%2Fkernels"),
    "redirect": response("301 Moved Permanently", b"", "Location: http://elsewhere/api/kernels"),
    "html": response("200 OK", b"<html><body>Sign in</body></html>", ctype="text/html"),
    "garbage-json": response("200 OK", b"{not json"),
    "not-found": response("404 Not Found", b'{"message": "Not Found"}'),
    "continue-first": b"HTTP/1.1 100 Continue\r\n\r\n" + response("200 OK", BODY),
    "cut-short": "cut-short",
    "too-large": "too-large",
    "slow": "slow",
    "trickled": "trickled",  # not a fault: the happy path, read in pieces
    "lone-lf-in-etag": response("200 OK", BODY, 'ETag: "a\nInjected: 1"'),
}


@pytest.mark.parametrize("where", ["/api/kernels", "/api/sessions"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_other_answer_ends_as_aiohttp_ends_it(aio: Any, fault: str, where: str) -> None:
    """Each fault, on either listing, gives the poll exactly what the same requests through
    aiohttp give (results, or status, sentence and HTTP status), after the poll connection
    asked first."""
    if fault == "too-large" and where == "/api/sessions":
        pytest.skip("one 16 MiB answer is enough")
    release = asyncio.Event()

    async def faulty(request: Request) -> bytes | None:
        canned = FAULTS[fault]
        if isinstance(canned, bytes):
            return canned
        if canned == "slow":
            await release.wait()
            return response("200 OK", BODY)
        if canned == "too-large":
            return response("200 OK", b"[" + b" " * MAX_ANSWER_BYTES + b"]")
        writer = server.writers[-1]
        if canned == "trickled":  # the head cut in two, then the body in pieces
            whole = listing(request, [GOOD, {**GOOD, "id": "k-two"}])
            for at in range(0, len(whole), 40):
                writer.write(whole[at : at + 40])
                await writer.drain()
                await asyncio.sleep(0.005)
            return b""
        writer.write(response("200 OK", BODY)[:-5])  # cut-short: the body's end never comes
        await writer.drain()
        return None

    async def go() -> tuple[tuple[object, object], tuple[object, object], list[Request]]:
        nonlocal server
        server = RawServer()
        url = await server.start()
        server.answers[where] = faulty
        by_poll, by_aiohttp = ServerClient(url, timeout=0.5), ServerClient(url, timeout=0.5)
        try:
            for client in (by_poll, by_aiohttp):
                await client.identify()
            polled = await poll(by_poll)
            tried = list(server.asked(where))
            expected = await plain(by_aiohttp)
            return polled, expected, tried
        finally:
            release.set()
            for client in (by_poll, by_aiohttp):
                await client.close()
            await server.close()

    server: RawServer
    polled, expected, tried = aio.run(go())
    assert polled == expected
    assert tried[0].ours  # the poll connection asked first
    if fault in ("garbage-json", "trickled") or (fault, where) == ("slow", "/api/kernels"):
        assert len(tried) == 1  # answered (a bad answer, no answer in time): not asked again
    else:  # then aiohttp asked (again, when it found its kept connection closed)
        assert len(tried) >= 2
        assert not any(r.ours for r in tried[1:])
    kinds = [r[0] for r in expected if isinstance(r, tuple)]
    if fault == "slow":
        assert kinds == [ServerStatus.TIMEOUT]


def test_polls_share_one_kept_alive_connection(
    aio: Any,
    tmp_path: Path,
    loop_errors: list[Any],
) -> None:
    """A map's polls of one server: both listings over one connection, kept from poll to
    poll (ETags sent back, 304s read); a connection the server dropped is opened again."""
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> tuple[RawServer, list[str]]:
        server = RawServer()
        url = await server.start()
        try:
            sid = await kmap.add_server(url, "t0ken")
            await kmap.poll_servers()
            before = server.connections
            for _ in range(3):
                await kmap.poll_servers()
            assert server.connections == before  # the same connection again
            server.drop_connections()  # the server's keep-alive timeout, say
            await asyncio.sleep(0.05)
            await kmap.poll_servers()
            assert server.connections == before + 1
            state = next(s for s in kmap.list_servers() if s["id"] == sid)["status"]
            return server, [str(state), kmap.kernel_model("k-good")["notebook_path"]]
        finally:
            await kmap.close()
            await server.close()

    server, seen = aio.run(go())
    assert seen == ["reachable", "a.ipynb"]
    polled = [r for r in server.requests if r.path in ("/api/kernels", "/api/sessions")]
    ours = [r for r in polled if r.ours]
    assert len(ours) >= 10  # every poll after the first test of the connection
    for request in ours:
        assert request.method == "GET"
        assert request.target.endswith("?no_track_activity=1")
        assert request.headers["authorization"] == "token t0ken"
        assert request.headers["host"] == request.headers["host"].strip()
    assert sum(1 for r in ours if "if-none-match" in r.headers) >= 6
    assert loop_errors == []


def test_tls(aio: Any, tmp_path: Path) -> None:
    """Over TLS with verification off; a certificate the client does not trust gives the
    TLS problem aiohttp gives."""
    tls = _self_signed(tmp_path)

    async def go() -> tuple[object, object, object, RawServer, ServerClient]:
        server = RawServer(tls)
        url = await server.start()
        lenient = ServerClient(url, verify_tls=False)
        strict, strict_plain = ServerClient(url), ServerClient(url)
        try:
            await lenient.identify()
            first = await poll(lenient)
            again = await poll(lenient)
            for client in (strict, strict_plain):
                client.kind = ServerKind.JUPYTER_SERVER  # (its GET /api fails the same)
            assert (await poll(strict)) == (await plain(strict_plain))
            refused = await poll(strict)
            return first, again, refused, server, lenient
        finally:
            for client in (lenient, strict, strict_plain):
                await client.close()
            await server.close()

    first, again, refused, server, lenient = aio.run(go())
    assert first == again
    kernels, sessions = first
    assert [k.id for k in kernels.items] == ["k-good"]  # type: ignore[attr-defined]
    assert [s.path for s in sessions.items] == ["a.ipynb"]  # type: ignore[attr-defined]
    assert lenient.poll_connections == 1
    assert lenient.polled_answers == 4
    assert all(r.ours for r in server.asked("/api/kernels"))
    assert isinstance(refused[0], tuple)
    assert refused[0][0] == ServerStatus.TLS_PROBLEM


def test_closed_and_unidentified_clients_do_not_poll_ahead(aio: Any) -> None:
    async def go() -> tuple[int, int]:
        server = RawServer()
        url = await server.start()
        unknown, closed = ServerClient(url), ServerClient(url)
        try:
            await unknown.fetch_listings()  # kind not known: nothing asked ahead
            await closed.identify()
            await closed.close()
            await closed.fetch_listings()
            with pytest.raises(ServerError) as caught:
                await closed.list_kernels()
            assert caught.value.kind == ServerStatus.CLOSED
            return unknown.poll_connections, len(server.requests)
        finally:
            await unknown.close()
            await server.close()

    assert aio.run(go()) == (0, 1)


def test_a_poll_of_every_server_at_once(
    aio: Any,
    tmp_path: Path,
    loop_errors: list[Any],
) -> None:
    """``poll_servers()`` asks every server at once: a slow one times out on its own, the
    others are read and applied; a wait for a poll cancelled midway leaves the poll to end
    by itself (one request at a time per server: the next ``poll_servers()`` waits for it),
    and the poll after that asks again."""
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600, server_timeout=1)
    release = asyncio.Event()

    async def go() -> dict[str, object]:
        good, slow = RawServer(), RawServer()
        urls = [await good.start(), await slow.start()]
        try:
            ids = [await kmap.add_server(url, "t0ken") for url in urls]
            await kmap.poll_servers()  # (the first poll asks for the kernel specs too)
            slow_kernels = slow.answers["/api/kernels"]

            async def hold(request: Request) -> bytes | None:
                if not release.is_set():
                    await release.wait()
                return await slow_kernels(request)

            slow.answers["/api/kernels"] = hold
            await kmap.poll_servers()
            status = {s["id"]: s["status"] for s in kmap.list_servers()}
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(kmap.poll_servers(), 0.3)
            asked = len(good.asked("/api/kernels"))
            release.set()
            await kmap.poll_servers()  # the poll under way, waited for
            waited = len(good.asked("/api/kernels")) == asked
            await kmap.poll_servers()
            after = {s["id"]: s["status"] for s in kmap.list_servers()}
            return {
                "during": [status[i] for i in ids],
                "after": [after[i] for i in ids],
                "waited for": waited,
                "asked again": len(good.asked("/api/kernels")) > asked,
            }
        finally:
            release.set()
            await kmap.close()
            await good.close()
            await slow.close()

    seen = aio.run(go())
    assert seen == {
        "during": ["reachable", "timeout"],
        "after": ["reachable", "reachable"],
        "waited for": True,
        "asked again": True,
    }
    assert loop_errors == []


def test_a_connection_that_never_opens_times_out_once(aio: Any) -> None:
    """A server that takes the TCP connection and never answers the TLS handshake: the
    poll's timeout, as aiohttp's, without a second connection to wait for."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # and never a byte back

    async def go() -> tuple[object, object, int]:
        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        polled, plain_client = ServerClient(url, timeout=0.3), ServerClient(url, timeout=0.3)
        try:
            for client in (polled, plain_client):
                client.kind = ServerKind.JUPYTER_SERVER  # (its GET /api would time out too)
            await polled.fetch_listings()
            by_poll = outcome(await failure(polled.list_kernels()))
            connections = len(accepted)  # (a poll asks no more after a timeout)
            expected = outcome(await failure(plain_client.list_kernels()))
            return by_poll, expected, connections
        finally:
            for client in (polled, plain_client):
                await client.close()
            for writer in accepted:
                writer.close()
            server.close()
            await server.wait_closed()

    by_poll, expected, connections = aio.run(go())
    assert by_poll == expected
    assert isinstance(by_poll, tuple)
    assert by_poll[0] == ServerStatus.TIMEOUT
    assert connections == 1


def test_the_users_headers_are_sent_once_and_win(aio: Any) -> None:
    async def go() -> tuple[str, list[Request]]:
        server = RawServer()
        url = await server.start()
        client = ServerClient(url, "t0k", headers={"user-agent": "proxy/1", "X-Proxy-Key": "p"})
        try:
            await client.identify()
            await poll(client)
            return url, server.asked("/api/kernels") + server.asked("/api/sessions")
        finally:
            await client.close()
            await server.close()

    url, requests = aio.run(go())
    assert len(requests) == 2  # both over the poll connection
    for request in requests:
        assert sorted(request.names) == sorted(set(request.names))  # no header twice
        assert request.headers["user-agent"] == "proxy/1"
        assert request.headers["x-proxy-key"] == "p"
        assert request.headers["authorization"] == "token t0k"
        assert f"http://{request.headers['host']}/" == url


def thread_name() -> str:
    import threading

    return threading.current_thread().name


def before_reading(monkeypatch: pytest.MonkeyPatch, step: Callable[[], None]) -> None:
    """``step()`` before each reading of a polled listing's answer into models."""
    from kernelmon.core.servers import client as client_module

    for path, reader in list(client_module._READERS.items()):

        def reading(raw: bytes | None, memo: Any, reader: Any = reader) -> Any:
            step()
            return reader(raw, memo)

        monkeypatch.setitem(client_module._READERS, path, reading)


def test_the_exchanges_and_their_reading_run_on_the_poll_thread(
    aio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll's socket reads and the reading of its listings into models happen on the poll
    thread, not on the loop's (whose share of a poll is then the hand-over and applying what
    changed: benchmarks/servers_bench.py); closing the client closes its connection there."""
    from kernelmon.core.servers.poll_connection import PollConnection

    threads: dict[str, set[str]] = {"socket reads": set(), "listings read": set()}
    read = PollConnection.data_received

    def data_received(self: PollConnection, data: bytes) -> None:
        threads["socket reads"].add(thread_name())
        read(self, data)

    monkeypatch.setattr(PollConnection, "data_received", data_received)
    before_reading(monkeypatch, lambda: threads["listings read"].add(thread_name()))

    async def go() -> tuple[object, int]:
        server = RawServer()
        url = await server.start()
        client = ServerClient(url)
        try:
            await client.identify()
            seen = await poll(client)  # (the second poll is answered 304: nothing to read)
            await poll(client)
            await client.close()
            await wait_until(lambda: server.writers[-1].is_closing(), what="closed there")
            return seen, server.connections
        finally:
            await server.close()

    seen, connections = aio.run(go())
    kernels, sessions = seen
    assert [k.id for k in kernels.items] == [GOOD["id"]]  # type: ignore[attr-defined]
    assert [s.path for s in sessions.items] == ["a.ipynb"]  # type: ignore[attr-defined]
    assert threads == {
        "socket reads": {"kernelmon server polls"},
        "listings read": {"kernelmon server polls"},
    }
    assert connections == 2  # aiohttp's (identify) and the poll connection


def test_a_failure_reading_on_the_poll_thread_leaves_the_reading_to_the_loop(
    aio: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in reading the answers on the poll thread is logged, and the loop reads them as
    it would without the thread: the poll's result is the same."""

    def bug_on_the_poll_thread() -> None:
        if thread_name() == "kernelmon server polls":
            raise RuntimeError("a bug")

    before_reading(monkeypatch, bug_on_the_poll_thread)

    async def go() -> tuple[object, object]:
        server = RawServer()
        url = await server.start()
        client = ServerClient(url)
        try:
            await client.identify()
            return await poll(client), await plain(client)
        finally:
            await client.close()
            await server.close()

    polled, asked = aio.run(go())
    assert polled == asked  # (``plain``: both listings asked again through aiohttp)
    assert "Reading a poll's answers on the poll thread failed" in caplog.text
