"""ServerClient against servers that misbehave in ways a real one cannot be made to: too
slow, garbage JSON, an HTML page, a broken kernel entry, a bad TLS certificate, nobody
listening. Each gives one status and one sentence, and nothing is left stuck."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernelmon.core.servers import ServerClient, ServerError, ServerStatus
from kernelmon.core.servers.client import MAX_ANSWER_BYTES
from kernelmon.core.servers.polling import backoff, jittered

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GOOD = {"id": "k-good", "name": "python3", "execution_state": "idle", "connections": 1}


async def stub(routes: dict[str, Handler], tls: ssl.SSLContext | None = None) -> web.AppRunner:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "2.0.0"})  # a Jupyter Server's GET /api

    app = web.Application()
    for path, handler in {"/api": version, **routes}.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return runner


def address(runner: web.AppRunner, scheme: str = "http") -> str:
    host, port = runner.addresses[0][:2]
    return f"{scheme}://{host}:{port}/"


async def failure(client: ServerClient, call: Awaitable[Any]) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await call
    return caught.value


def test_slow_server_times_out_and_nothing_stays_stuck(aio: Any) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()  # answers only when the test lets it
        return web.json_response([GOOD])

    async def go() -> None:
        runner = await stub({"/api/kernels": slow})
        client = ServerClient(address(runner), timeout=0.5)
        try:
            first = asyncio.create_task(client.list_kernels())
            second = asyncio.create_task(client.list_kernels())  # waits its turn
            for task in (first, second):
                error = await failure(client, task)
                assert error.kind == ServerStatus.TIMEOUT
                assert "did not answer within 0.5 s" in str(error)
            assert client.status == ServerStatus.TIMEOUT
            # an answer, even a refusal of one request, shows the server reachable again
            unknown = await failure(client, client.interrupt("k-unknown"))
            assert unknown.kind == ServerStatus.NOT_FOUND
            assert client.status == ServerStatus.REACHABLE
            release.set()
            listing = await client.list_kernels()
            assert [k.id for k in listing.items] == ["k-good"]
            assert client.status == ServerStatus.REACHABLE
        finally:
            release.set()
            await client.close()
            await runner.cleanup()

    aio.run(go())


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"[{'id': 1,", "application/json", "does not parse"),
        (b"<html><body>Sign in</body></html>", "text/html", "an HTML page"),
        (b'{"kernels": []}', "application/json", "not a list"),
        (b"[" * 100000 + b"]" * 100000, "application/json", "does not parse"),
        (b"[" + b" " * MAX_ANSWER_BYTES + b"]", "application/json", "an answer over"),
    ],
    ids=["garbage-json", "html", "wrong-shape", "deep-nesting", "too-large"],
)
def test_bad_answers(aio: Any, body: bytes, content_type: str, words: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    async def go() -> ServerClient:
        runner = await stub({"/api/kernels": answer})
        client = ServerClient(address(runner))
        try:
            error = await failure(client, client.list_kernels())
            assert error.kind == ServerStatus.BAD_ANSWER
            assert words in str(error)
            assert str(error).startswith("The server at http://")
            return client
        finally:
            await client.close()
            await runner.cleanup()

    assert aio.run(go()).status == ServerStatus.BAD_ANSWER


def test_one_bad_kernel_entry_never_drops_the_others(aio: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        assert request.query.get("no_track_activity") == "1"
        entries = [
            GOOD,
            {"name": "no id"},
            "not a dict",
            {**GOOD, "id": "k-two", "connections": "x"},
        ]
        return web.json_response(entries)

    async def go() -> Any:
        runner = await stub({"/api/kernels": answer})
        client = ServerClient(address(runner))
        try:
            return await client.list_kernels()
        finally:
            await client.close()
            await runner.cleanup()

    listing = aio.run(go())
    assert [k.id for k in listing.items] == ["k-good", "k-two"]
    assert listing.items[1].connections is None
    assert len(listing.skipped) == 2
    assert "entry 1" in listing.skipped[0]


def test_server_error_message_and_gateway_traceback(aio: Any) -> None:
    async def broken(request: web.Request) -> web.Response:
        trace = "Traceback (most recent call last):\n  ...\nValueError: the disk is full\n"
        body = {"reason": "Internal Server Error", "message": "Unknown server error"}
        return web.json_response({**body, "traceback": trace}, status=500)

    async def specs(request: web.Request) -> web.Response:
        return web.json_response({"default": "python3", "kernelspecs": {}})

    async def go() -> ServerClient:
        runner = await stub({"/api/kernels/{kid}/interrupt": broken, "/api/kernels": broken,
                             "/api/kernelspecs": specs})  # fmt: skip
        client = ServerClient(address(runner))
        try:
            error = await failure(client, client.interrupt("k-1"))
            assert error.kind == ServerStatus.REFUSED
            assert error.http_status == 500
            assert "ValueError: the disk is full" in str(error)
            assert "Traceback" not in str(error)
            missing = await failure(client, client.start_kernel("julia"))
            assert missing.kind == ServerStatus.NOT_FOUND
            assert "no kernel spec 'julia'" in str(missing)
            return client
        finally:
            await client.close()
            await runner.cleanup()

    assert aio.run(go()).status == ServerStatus.REACHABLE


def test_nobody_listening_is_unreachable(aio: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def go() -> ServerClient:
        client = ServerClient(f"http://127.0.0.1:{port}")
        try:
            error = await failure(client, client.identify())
            assert error.kind == ServerStatus.UNREACHABLE
            assert "cannot be reached" in str(error)
            return client
        finally:
            await client.close()

    client = aio.run(go())
    assert client.status == ServerStatus.UNREACHABLE
    assert client.url.endswith(f"{port}/")


def _self_signed(folder: Path) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_tls_problem_and_verification_off(aio: Any, tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)

    async def go() -> None:
        runner = await stub({}, tls)
        strict = ServerClient(address(runner, "https"))
        lenient = ServerClient(address(runner, "https"), verify_tls=False)
        plain = ServerClient(address(runner, "http"))
        try:
            error = await failure(strict, strict.identify())
            assert error.kind == ServerStatus.TLS_PROBLEM
            assert "TLS" in str(error)
            assert (await lenient.identify()).version == "2.0.0"
            assert (await failure(plain, plain.identify())).kind != ServerStatus.REACHABLE
        finally:
            for client in (strict, lenient, plain):
                await client.close()
            await runner.cleanup()

    aio.run(go())


def test_bad_addresses_and_headers_are_refused_at_once() -> None:
    for url in ("ftp://host/", "localhost:8888", "http://", "http://h/?token=x", "http://h:99999/"):
        with pytest.raises(ValueError, match=r"address|query"):
            ServerClient(url)
    with pytest.raises(ValueError, match="header"):
        ServerClient("http://h/", headers={"X-A": "1\r\nInjected: yes"})
    with pytest.raises(ValueError, match="timeout"):
        ServerClient("http://h/", timeout=0)
    assert ServerClient("http://h:1/user/ann").url == "http://h:1/user/ann/"


def test_polling_delays() -> None:
    import random

    rng = random.Random(7)
    delays = [jittered(10, rng=rng) for _ in range(100)]
    assert all(8 <= d <= 12 for d in delays)
    assert len(set(delays)) > 50
    assert [backoff(2, n, cap=60) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


def test_what_is_sent(aio: Any) -> None:
    """The token as ``Authorization: token ...``, the user's headers on every request,
    no_track_activity on GETs only (actions are the user's own activity)."""
    seen: list[tuple[str, str, dict[str, str], dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, dict(request.headers), dict(request.query)))
        if request.method == "GET":
            return web.json_response([GOOD])
        return web.Response(status=204)

    async def go() -> None:
        runner = await stub({"/api/kernels": record, "/api/kernels/{kid}/interrupt": record})
        client = ServerClient(address(runner), token="t0k", headers={"X-Proxy-Key": "p"})
        try:
            await client.list_kernels()
            await client.interrupt("k-good")
        finally:
            await client.close()
            await runner.cleanup()

    aio.run(go())
    (get, kernels, get_headers, get_query), (post, _, post_headers, post_query) = seen
    assert (get, kernels, post) == ("GET", "/api/kernels", "POST")
    for headers in (get_headers, post_headers):
        assert headers["Authorization"] == "token t0k"
        assert headers["X-Proxy-Key"] == "p"
    assert get_query == {"no_track_activity": "1"}
    assert post_query == {}
