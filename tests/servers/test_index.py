"""Each server's index of its rows in the map (``ServerWatch.rows``, read by ``entries_of``)
agrees with the map after kernels join, leave the server, are shut down through kernelmon, are
released when their local server dies, and after a server is removed; and a listing's entries
sent again as they were are not read again (``model.Memo``) yet read as a fresh reading would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from kernelmon.core import KernelMap, Settings
from kernelmon.core.servers.join import entries_of
from kernelmon.core.servers.model import Memo, parse_kernels, parse_sessions
from tests.servers.realservers import RealServer, start_jupyter_server
from tests.servers.test_client_faults import address, stub
from tests.servers.test_client_jupyter_server import open_notebook
from tests.servers.test_map_servers import make_map
from tests.servers.test_model import captured
from tests.waiting import wait_until


def server_rows(kmap: KernelMap) -> dict[str, set[str]]:
    """Server id -> its kernels' ids in the map, read by the index; asserts that the index
    agrees with the whole map read entry by entry, and with what ``list_servers`` says."""
    registry = kmap.registry
    counts = {s["id"]: s["kernels"] for s in kmap.list_servers()}
    found: dict[str, set[str]] = {}
    for server_id, watch in kmap.server_part.watches.items():
        truth = {e.record.id for e in registry if e.backend.server_id() == server_id}
        indexed = [e.record.id for e in entries_of(registry, watch)]
        assert sorted(indexed) == sorted(truth), watch.config.name
        assert set(watch.rows) == truth, watch.config.name  # nothing stale left in it
        assert counts[server_id] == len(truth)
        found[server_id] = truth
    claimed = [e.record.id for e in registry if e.backend.server_id() is not None]
    assert sorted(claimed) == sorted(k for ids in found.values() for k in ids)
    return found


def model(kid: str, state: str = "idle") -> dict[str, Any]:
    return {"id": kid, "name": "python3", "execution_state": state, "connections": 0}


async def listing_stub(
    kernels: dict[str, dict[str, Any]], routes: dict[str, Any] | None = None
) -> web.AppRunner:
    """A server listing ``kernels`` (changed by the test as it goes) that shuts one down on
    ``DELETE /api/kernels/<id>`` (and answers ``routes`` too)."""

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(list(kernels.values()))

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response([])

    async def specs(request: web.Request) -> web.Response:
        return web.json_response({"default": "python3", "kernelspecs": {}})

    async def one(request: web.Request) -> web.Response:
        kid = request.match_info["kid"]
        if request.method != "DELETE" or kernels.pop(kid, None) is None:
            return web.json_response({"message": "no such kernel"}, status=404)
        return web.Response(status=204)

    return await stub(
        {
            "/api/kernels": listed,
            "/api/sessions": sessions,
            "/api/kernelspecs": specs,
            "/api/kernels/{kid}": one,
            **(routes or {}),
        }
    )


def test_the_index_agrees_with_the_map(aio: Any, tmp_path: Path) -> None:
    first = {k: model(k) for k in ("a1", "a2", "both")}
    second = {k: model(k) for k in ("b1", "both")}
    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    async def go() -> list[dict[str, set[str]]]:
        runners = [await listing_stub(first), await listing_stub(second)]
        seen = []
        try:
            one = await kmap.add_server(address(runners[0]), name="first")
            await kmap.poll_servers()
            two = await kmap.add_server(address(runners[1]), name="second")
            await kmap.poll_servers()
            seen.append(server_rows(kmap))  # joined; "both" is the first server's
            first["a3"] = model("a3")
            first["a1"] = model("a1", "busy")
            await kmap.poll_servers()
            seen.append(server_rows(kmap))  # one more joined, one changed
            del first["a2"]
            await kmap.poll_servers()
            seen.append(server_rows(kmap))  # gone from the server
            await kmap.shutdown_kernel("a3")  # out of the map at once, by kernelmon
            second["a3"] = model("a3")  # its id, now listed by the other server
            await kmap.server_part.watches[two].poll_once()
            seen.append(server_rows(kmap))  # the second server's, not the first's
            await kmap.poll_servers()
            seen.append(server_rows(kmap))
            await kmap.remove_server(one)
            seen.append(server_rows(kmap))  # its kernels left; "both" is nobody's
            await kmap.poll_servers()
            seen.append(server_rows(kmap))  # now the second server's
            assert set(seen[-1]) == {two}
        finally:
            await kmap.close()
            for runner in runners:
                await runner.cleanup()
        return seen

    seen = aio.run(go())
    ids = [[sorted(kernels) for kernels in rows.values()] for rows in seen]
    assert ids == [
        [["a1", "a2", "both"], ["b1"]],
        [["a1", "a2", "a3", "both"], ["b1"]],
        [["a1", "a3", "both"], ["b1"]],
        [["a1", "both"], ["a3", "b1"]],
        [["a1", "both"], ["a3", "b1"]],
        [["a3", "b1"]],
        [["a3", "b1", "both"]],
    ]
    assert "a1" not in kmap
    assert "a2" not in kmap


def test_a_poll_that_changed_a_few_kernels_applies_as_a_whole_one(aio: Any, tmp_path: Path) -> None:
    """A poll where a few kernels changed looks at those only (``join.apply_snapshot``), and
    yet leaves the map as applying the whole listing would: also when a row left the map
    meanwhile by another way than the server's poll, and after a restart set a row's state
    by itself."""
    listed = {f"k{i}": model(f"k{i}") for i in range(40)}
    restarted: list[str] = []

    async def restart(request: web.Request) -> web.Response:
        kid = request.match_info["kid"]
        restarted.append(kid)
        return web.json_response(listed[kid])

    kmap = make_map(tmp_path, server_token_file=True, server_poll_interval=3600)

    def states() -> dict[str, str]:
        truth = {kid: m["execution_state"] for kid, m in listed.items()}
        models = {m["id"]: m for m in kmap.list_kernels()}
        seen = {kid: str(models[kid]["execution_state"]) for kid in truth if kid in models}
        assert seen == truth  # every kernel listed is in the map, as the server says
        return seen

    async def go() -> list[dict[str, str]]:
        runner = await listing_stub(listed, {"/api/kernels/{kid}/restart": restart})
        seen = []
        try:
            await kmap.add_server(address(runner))
            await kmap.poll_servers()
            watch = next(iter(kmap.server_part.watches.values()))
            seen.append(states())
            listed["k7"] = model("k7", "busy")
            await kmap.poll_servers()
            assert watch.applied is not None  # (the look at the changed ones only)
            seen.append(states())
            # a row that left the map without the server's word (what ``forget`` of a
            # part does), the server listing it as before: it comes back
            entry = kmap.registry.find("k3")
            assert entry is not None
            kmap.registry.remove(entry, "let go by a test")
            listed["k9"] = model("k9", "busy")
            await kmap.poll_servers()
            seen.append(states())
            # a restart answered by the server sets the row's state by itself ("idle"); the
            # server listing it "busy" as before, the next poll says so again
            await kmap.restart_kernel("k7")
            assert kmap.registry.get("k7").record.execution_state == "idle"
            listed["k11"] = model("k11", "busy")
            await kmap.poll_servers()
            seen.append(states())
        finally:
            await kmap.close()
            await runner.cleanup()
        return seen

    seen = aio.run(go())
    assert restarted == ["k7"]
    assert [sorted(k for k, v in s.items() if v == "busy") for s in seen] == [
        [],
        ["k7"],
        ["k7", "k9"],
        ["k11", "k7", "k9"],
    ]


def test_the_index_agrees_after_a_local_server_dies(
    aio: Any, server_factory: list[RealServer], tmp_path: Path
) -> None:
    """A local server killed: its kernel, released, is the machine's again (found by its
    file); no server claims it and the other server's index is untouched."""
    server = start_jupyter_server(tmp_path / "js")
    server_factory.append(server)
    kid = open_notebook(server, "local.ipynb")["kernel"]["id"]
    remote = {k: model(k) for k in ("r1", "r2")}
    root = tmp_path / "root"
    root.mkdir()
    kmap = KernelMap(
        Settings(
            root_dir=str(root),
            server_poll_interval=0.5,
            sample_interval=0.5,
            server_token_file=True,
        ),
        state_dir=tmp_path / "state",
        runtime_dirs=[str(server.runtime_dir)],
    )

    def local_row() -> bool:
        return kid in kmap and kmap.kernel_model(kid)["pid"] is not None

    async def go() -> tuple[dict[str, set[str]], ...]:
        runner = await listing_stub(remote)
        try:
            await kmap.start_monitoring()
            await kmap.add_server(address(runner), name="remote")
            await wait_until(
                lambda: local_row() and kmap.kernel_model(kid)["server_id"] is not None,
                what="the local server's kernel with its process",
            )
            await kmap.poll_servers()
            before = server_rows(kmap)
            await asyncio.to_thread(server.kill)
            await wait_until(
                lambda: kid in kmap and kmap.kernel_model(kid)["origin"] in ("orphan", "stale"),
                timeout=30,
                what="the kernel found by its file again",
            )
            after = server_rows(kmap)
            assert kmap.kernel_model(kid)["origin"] in ("orphan", "stale")
            await kmap.poll_servers()
            return before, after, server_rows(kmap)
        finally:
            await kmap.close()
            await runner.cleanup()

    before, after, polled = aio.run(go(), timeout=90)
    assert sorted(sorted(ids) for ids in before.values()) == [[kid], ["r1", "r2"]]
    assert [sorted(ids) for ids in after.values()] == [["r1", "r2"]]
    assert polled == after


def test_entries_sent_again_are_not_read_again() -> None:
    kernels = [*captured("js-kernels"), model("third")]
    sessions = captured("js-sessions")
    kernel_memo, session_memo = Memo(), Memo()
    first = parse_kernels(kernels, kernel_memo)
    again = parse_kernels([dict(k) for k in kernels], kernel_memo)
    assert first == parse_kernels(kernels)
    assert all(a is b for a, b in zip(first.items, again.items, strict=True))
    read = parse_sessions(sessions, session_memo)
    assert (
        parse_sessions(sessions, session_memo).items == read.items == parse_sessions(sessions).items
    )
    # one changed, one gone, one whose connections are equal but not the same type
    changed = [dict(k) for k in kernels]
    changed[0]["execution_state"] = "busy"
    assert changed[1]["connections"] == 0
    changed[1]["connections"] = False
    del changed[-1]
    later = parse_kernels(changed, kernel_memo)
    assert later == parse_kernels(changed)
    assert later.items[0].execution_state == "busy"
    assert later.items[1].connections is None  # not a number of connections
    assert set(kernel_memo.entries) == {k["id"] for k in changed}
    # a bad entry is skipped every time, and never costs the others their memo
    bad = [*changed, {"id": ""}]
    assert parse_kernels(bad, kernel_memo).skipped == parse_kernels(bad, kernel_memo).skipped
    assert len(parse_kernels(bad, kernel_memo).skipped) == 1
