"""The map's servers part where things happen at once: a kernel started on a server beside
the kernels it lists, the URL of a local server added by hand, a server removed while a start
on it waits, the servers file that cannot be written. A real jupyter_server where it can show
the case; small aiohttp servers where the server must hold an answer."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernelmon.cli.snapshot import servers_known
from kernelmon.core import KernelMap, Settings
from kernelmon.core.errors import KernelStartFailed
from kernelmon.core.state import StateFile
from tests.servers.realservers import RealServer
from tests.servers.test_client_faults import GOOD, address, stub
from tests.servers.test_client_jupyter_server import open_notebook
from tests.servers.test_map_servers import make_map
from tests.waiting import wait_until


def server_entry(kmap: KernelMap, server_id: str) -> dict[str, Any]:
    return next(s for s in kmap.list_servers() if s["id"] == server_id)


def test_starting_a_kernel_leaves_the_servers_other_kernels_as_they_were(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    kid = open_notebook(jupyter_server, "other.ipynb")["kernel"]["id"]
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> tuple[dict[str, Any], dict[str, Any], str]:
        sid = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        await wait_until(lambda: kid in kmap, what="the notebook's kernel listed")
        await kmap.poll_servers()  # a poll after the one it joined in
        before = kmap.kernel_model(kid)
        new = await kmap.start_kernel(server_id=sid)
        after = kmap.kernel_model(kid)  # before any poll: what the start did to it
        await kmap.shutdown_kernel(new)
        return before, after, new

    try:
        before, after, new = aio.run(go())
    finally:
        aio.run(kmap.close())
        jupyter_server.request("DELETE", f"api/kernels/{kid}")
    assert before["execution_state"] != "unknown"
    assert after["execution_state"] == before["execution_state"]
    assert after["reason"] is None
    assert new != kid


def test_the_url_of_a_live_local_server_is_that_server(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    kmap = KernelMap(
        Settings(root_dir=str(root), server_poll_interval=3600, server_token_file=True),
        state_dir=tmp_path / "state",
        runtime_dirs=[str(jupyter_server.runtime_dir)],
    )

    async def go() -> tuple[str, list[dict[str, Any]]]:
        await kmap.start_monitoring()
        (local,) = kmap.list_servers()
        assert local["local"] is True
        added = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        assert added == local["id"]
        return added, kmap.list_servers()

    try:
        added, servers = aio.run(go())
    finally:
        aio.run(kmap.close())
    assert [s["id"] for s in servers] == [added]  # one watch of the server, not two
    assert not (tmp_path / "state" / "servers.json").exists()


def test_a_server_removed_while_a_start_waits_leaves_no_row(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    """Removed while the POST waits for the server, then while the servers file is written
    after the server answered (the disk held up by the test: a real one cannot be made
    slow on demand): the start fails saying so, and no row of the forgotten server stays."""
    arrived = asyncio.Event()
    release = asyncio.Event()
    posts: list[str] = []

    async def kernels(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response([GOOD])
        kid = f"k-new{len(posts)}"
        posts.append(kid)
        arrived.set()
        await release.wait()
        return web.json_response({**GOOD, "id": kid}, status=201)

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)
    book = kmap.server_part.book
    save = book.save
    writing = threading.Event()
    go_on = threading.Event()
    go_on.set()

    def held_save(configs: list[Any]) -> None:
        writing.set()
        go_on.wait(30)
        save(configs)

    book.save = held_save  # type: ignore[method-assign]

    async def outcome(start: asyncio.Task[str]) -> str:
        try:
            return f"started {await start}"
        except KernelStartFailed as error:
            return str(error)

    async def go() -> tuple[str, str, list[dict[str, Any]]]:
        runner = await stub({"/api/kernels": kernels, "/api/sessions": sessions})
        try:
            # removed while the server has the POST
            sid = await kmap.add_server(address(runner), "t0ken")
            start = asyncio.create_task(kmap.start_kernel("python3", server_id=sid))
            await arrived.wait()
            await kmap.remove_server(sid)
            release.set()
            during_post = await outcome(start)
            # removed while the servers file is written after the server answered
            sid = await kmap.add_server(address(runner), "t0ken")
            go_on.clear()
            writing.clear()
            start = asyncio.create_task(kmap.start_kernel("python3", server_id=sid))
            await asyncio.to_thread(writing.wait, 30)
            remove = asyncio.create_task(kmap.remove_server(sid))
            await asyncio.sleep(0)  # the removal forgets the server at once
            go_on.set()
            await remove
            during_save = await outcome(start)
            return during_post, during_save, kmap.list_servers()
        finally:
            release.set()
            go_on.set()
            await kmap.close()
            await runner.cleanup()

    during_post, during_save, servers = aio.run(go())
    assert servers == []
    assert "was removed from kernelmon while the kernel started" in during_post
    assert during_save.startswith("The server ")
    assert "was removed from kernelmon after it started kernel k-new1" in during_save
    for kid in ("k-good", *posts):
        assert kid not in kmap
    assert loop_errors == []


def test_a_servers_file_that_cannot_be_written_is_said_and_not_pretended(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    async def kernels(request: web.Request) -> web.Response:
        return web.json_response([GOOD])

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)
    path = tmp_path / "state" / "servers.json"

    async def go() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        runner = await stub({"/api/kernels": kernels, "/api/sessions": sessions})
        try:
            sid = await kmap.add_server(address(runner), "t0ken")
            await wait_until(lambda: "k-good" in kmap, what="its kernel")
            path.unlink()
            path.mkdir()  # the file cannot be replaced now
            kmap.set_server_culling(sid, True)
            await wait_until(lambda: server_entry(kmap, sid)["error"], what="the error shown")
            failed = server_entry(kmap, sid)
            problems = list(kmap.server_part.book.problems)
            path.rmdir()
            kmap.set_server_culling(sid, True)
            await wait_until(lambda: path.is_file(), what="the file written")
            await wait_until(lambda: server_entry(kmap, sid)["error"] is None, what="no error")
            return failed, server_entry(kmap, sid), problems
        finally:
            await kmap.close()
            await runner.cleanup()

    failed, saved, problems = aio.run(go())
    assert failed["kernelmon_culling"] is False  # what the file says
    assert "could not be written" in failed["error"]
    assert "culling" in failed["error"]
    assert any("could not be written" in p for p in problems)
    assert saved["kernelmon_culling"] is True
    assert json.loads(path.read_text())["servers"][0]["kernelmon_culling"] is True
    assert loop_errors == []


def test_a_poll_asks_for_the_kernel_specs_once(
    aio: Any, tmp_path: Path, loop_errors: list[Any]
) -> None:
    """For the kernels' display names, the first poll asks; a server that cannot answer is
    not asked again by every poll (the user's start asks, and says why it failed)."""
    asked: list[str] = []

    async def kernels(request: web.Request) -> web.Response:
        return web.json_response([GOOD])

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    async def specs(request: web.Request) -> web.Response:
        asked.append(request.method)
        return web.json_response({"message": "broken"}, status=500)

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> str:
        runner = await stub(
            {"/api/kernels": kernels, "/api/sessions": sessions, "/api/kernelspecs": specs}
        )
        try:
            sid = await kmap.add_server(address(runner), "t0ken")
            for _ in range(3):
                await kmap.poll_servers()
            assert server_entry(kmap, sid)["status"] == "reachable"
            with pytest.raises(KernelStartFailed) as caught:
                await kmap.start_kernel(server_id=sid)  # no spec named: the server's default
            return str(caught.value)
        finally:
            await kmap.close()
            await runner.cleanup()

    said = aio.run(go())
    assert asked == ["GET", "GET"]  # the first poll's, the start's
    assert "HTTP 500" in said
    assert loop_errors == []


def test_kernelmon_list_only_reads_the_servers_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "servers.json").write_text("{not json")
    assert servers_known(StateFile(state)) is False
    assert sorted(p.name for p in state.iterdir()) == ["servers.json"]
    assert (state / "servers.json").read_text() == "{not json"
    good = {"id": "abc123", "url": "http://127.0.0.1:1/", "name": "kept"}
    (state / "servers.json").write_text(json.dumps({"version": 1, "servers": [good]}))
    assert servers_known(StateFile(state)) is True


def test_waiting_for_a_local_server_that_never_answers_leaves_nothing_waiting(
    aio: Any, tmp_path: Path
) -> None:
    """``start_monitoring`` waits a moment for the first poll of each local server
    (``Servers.settle``); one that is never polled leaves no task behind waiting for it."""
    from kernelmon.core.servers.config import ServerConfig

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> int:
        part = kmap.server_part
        config = ServerConfig(id="local-x", url="http://127.0.0.1:9/", name="x", local=True)
        part.watches[config.id] = part._new_watch(config, None)  # (not on the clock)
        before = asyncio.all_tasks()
        await part.settle(0.05)
        await asyncio.sleep(0)
        left = asyncio.all_tasks() - before
        await kmap.close()
        return len(left)

    assert aio.run(go()) == 0


def test_a_server_removed_while_it_is_added_is_said(aio: Any, tmp_path: Path) -> None:
    """kernelmon stops watching servers (the map closing) while a server being added is
    saved: ``add_server`` says so in a sentence (a ``ServerError``), not a ``KeyError``. The
    instant is held by a gate before the save (a real save is too quick to stop in)."""
    from kernelmon.core.servers import ServerError

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def specs(request: web.Request) -> web.Response:
        return web.json_response({"default": "python3", "kernelspecs": {}})

    async def kernels(request: web.Request) -> web.Response:
        return web.json_response([GOOD])

    async def go() -> str:
        runner = await stub({"/api/kernels": kernels, "/api/kernelspecs": specs})
        part = kmap.server_part
        gate = asyncio.Event()
        real_save = part._saves.save

        async def held_save(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()
            return await real_save(*args, **kwargs)

        part._saves.save = held_save  # type: ignore[method-assign]
        try:
            adding = asyncio.ensure_future(kmap.add_server(address(runner)))
            await wait_until(lambda: bool(part.watches), what="the server being added")
            await part.stop()
            gate.set()
            with pytest.raises(ServerError) as caught:
                await adding
            return str(caught.value)
        finally:
            await kmap.close()
            await runner.cleanup()

    said = aio.run(go())
    assert "while it was being added" in said


def test_a_server_busy_with_an_action_holds_no_other_servers_rows_back(
    aio: Any, tmp_path: Path
) -> None:
    """While a restart on one server waits for its answer (its client's one request under
    way), the clock's cycles keep polling the other server and applying what it says."""
    from tests.servers.test_index import listing_stub, model

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=0.5)
    quick = {"q1": model("q1")}
    held = {"h1": model("h1")}
    release = asyncio.Event()

    async def restart(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(held["h1"])

    def state(kid: str) -> str:
        return str(kmap.kernel_model(kid)["execution_state"])

    async def go() -> str:
        one = await listing_stub(quick)
        two = await listing_stub(held, {"/api/kernels/{kid}/restart": restart})
        try:
            await kmap.add_server(address(one))
            await kmap.add_server(address(two))
            await wait_until(lambda: "q1" in kmap and "h1" in kmap, what="both listed")
            restarting = asyncio.ensure_future(kmap.restart_kernel("h1"))
            await asyncio.sleep(1.2)  # cycles go by: the restart's server is left out
            quick["q1"] = model("q1", "busy")
            await wait_until(lambda: state("q1") == "busy", timeout=10, what="q1 busy")
            seen = state("h1")
            release.set()
            await restarting
            return seen
        finally:
            release.set()
            await kmap.close()
            await one.cleanup()
            await two.cleanup()

    assert aio.run(go(), timeout=60) == "restarting"  # (its restart still under way)
