"""One poll cycle of many Jupyter servers: loop time, loop lag and memory (issue #13's goals).

    python benchmarks/servers_bench.py [--servers 10] [--kernels 100] [--cycles 40]
                                       [--quick] [--json OUT]

Stub servers (aiohttp on loopback, in a process of their own so that their work is not
counted) answer ``/api``, ``/api/kernels``, ``/api/sessions`` and ``/api/kernelspecs`` as
jupyter_server does (its models; a token; ETag and 304 as tornado computes them). Each
contender polls every server at once, one request at a time per server, cycle after
cycle: ``GET /api/kernels`` and ``GET /api/sessions`` (``?no_track_activity=1``):

* ``floor``: the raw aiohttp request and ``json.loads``, with the last ETag (what a plain
  client spends: the reference of this run);
* ``wire``: the requests alone over kernelmon's poll connections (``fetch_listings_of``),
  the answers' heads read and nothing parsed: what the sockets and the loop cost;
* ``client``: kernelmon's ``ServerClient`` (both listings asked over its poll connection,
  ``fetch_listings``, and read into its models);
* ``map``: a ``KernelMap`` with the servers added (``add_server``), each cycle its
  ``poll_servers()``: the requests and the map's update (when the map has servers), every
  server asked at once and the loop woken once (as the command line and "poll now" do);
* ``map·app``: the same map polled by its own clock as in the app (``PollClock``: every
  server that answers in one turn per cycle, the clock's wake-ups and timers counted), its
  interval shortened to 50 ms; its loop time per cycle is the loop thread's CPU over a run
  of cycles divided by the cycles done.

Each measured cycle begins after the loop idled 20 ms (``GAP``), as in the app, where polls
are seconds apart: on this machine a cycle that begins on an idle loop costs about 1 ms more
than one run right after another. Two scenarios: ``unchanged`` (idle servers: tornado
answers 304) and ``changed`` (one kernel of every server active at each poll, so each
kernel listing is sent and read again). Figures: CPU time of the loop's thread per cycle
(``time.thread_time``: what the cycle takes from the loop) and wall time per cycle, under
plain asyncio and under qasync (as in the app); the p99 lag of a 10 ms timer while the
cycles run (the worst case: the app polls every few seconds), beside the same timer with
nothing polled; and the memory each remote kernel costs (``tracemalloc``, servers with
kernels minus as many servers without, per kernel). Goals: under 5 ms of loop time per
cycle, p99 lag under 16 ms, under 10 KB per remote kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TOKEN = "bench-token"
GOALS = {"loop_ms": 5.0, "lag_p99_ms": 16.0, "kb_per_kernel": 10.0}
TICK = 0.010
#: the loop idles this long before each measured cycle (see the module)
GAP = 0.020
LOOPS = ("asyncio", "qasync")

# -- the stub servers (a process of their own) ----------------------------------------------


def kernel_models(n: int, seed: int) -> list[dict[str, Any]]:
    started = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    return [
        {
            "id": str(uuid.UUID(int=seed * 100_000 + i)),
            "name": "python3",
            "last_activity": (started + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "execution_state": "idle",
            "connections": i % 2,
        }
        for i in range(n)
    ]


def session_models(kernels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, k["id"])),
            "path": f"work/analysis-{i}.ipynb",
            "name": f"analysis-{i}.ipynb",
            "type": "notebook",
            "kernel": k,
            "notebook": {"path": f"work/analysis-{i}.ipynb", "name": f"analysis-{i}.ipynb"},
        }
        for i, k in enumerate(kernels)
    ]


SPECS = {
    "default": "python3",
    "kernelspecs": {
        "python3": {
            "name": "python3",
            "spec": {"display_name": "Python 3 (ipykernel)", "language": "python", "argv": []},
            "resources": {},
        }
    },
}


def stub_app(n_kernels: int, seed: int) -> Any:
    """A jupyter_server's REST API as far as polling sees it (one server)."""
    from aiohttp import web

    state = {"kernels": kernel_models(n_kernels, seed), "changing": False, "tick": 0}

    def answer(request: web.Request, payload: object) -> web.Response:
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return web.json_response({"message": "Forbidden"}, status=403)
        body = json.dumps(payload).encode()
        # tornado's RequestHandler.compute_etag / check_etag_header
        etag = f'"{hashlib.sha1(body).hexdigest()}"'
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"version": "2.14.0"})

    async def kernels(request: web.Request) -> web.Response:
        models = state["kernels"]
        if state["changing"] and models:  # one kernel active since the last poll
            state["tick"] += 1
            model = models[state["tick"] % len(models)]
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            model["last_activity"], model["execution_state"] = now, "idle"
        return answer(request, models)

    async def sessions(request: web.Request) -> web.Response:
        return answer(request, session_models(state["kernels"]))

    async def kernelspecs(request: web.Request) -> web.Response:
        return answer(request, SPECS)

    async def changing(request: web.Request) -> web.Response:
        state["changing"] = request.match_info["on"] == "1"
        return web.json_response({"changing": state["changing"]})

    app = web.Application()
    app.router.add_get("/api", api)
    app.router.add_get("/api/kernels", kernels)
    app.router.add_get("/api/sessions", sessions)
    app.router.add_get("/api/kernelspecs", kernelspecs)
    app.router.add_post("/_bench/changing/{on}", changing)
    return app


async def serve_stubs(n_servers: int, n_kernels: int) -> None:
    """``n_servers`` servers with ``n_kernels`` kernels each, then as many without any;
    prints their ports as one JSON line and serves until stdin closes."""
    from aiohttp import web

    runners, ports = [], []
    for i in range(2 * n_servers):
        runner = web.AppRunner(stub_app(n_kernels if i < n_servers else 0, i), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    print(json.dumps({"full": ports[:n_servers], "empty": ports[n_servers:]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for runner in runners:
        await runner.cleanup()


# -- the contenders -------------------------------------------------------------------------


class Floor:
    """The raw aiohttp request and ``json.loads`` (with the last ETag): the reference."""

    name = "floor"

    async def open(self, urls: list[str]) -> None:
        import aiohttp

        self.urls = urls
        self.sessions = [
            aiohttp.ClientSession(
                headers={"Authorization": f"token {TOKEN}"},
                connector=aiohttp.TCPConnector(limit=1),
            )
            for _ in urls
        ]
        self.kept: dict[str, tuple[str, object]] = {}

    async def _get(self, session: Any, url: str) -> object:
        kept = self.kept.get(url)
        headers = {"If-None-Match": kept[0]} if kept else None
        async with session.get(url, params={"no_track_activity": "1"}, headers=headers) as r:
            if r.status == 304 and kept:
                return kept[1]
            data = json.loads(await r.read())
            self.kept[url] = (r.headers.get("ETag", ""), data)
            return data

    async def _server(self, session: Any, url: str) -> None:
        await self._get(session, f"{url}api/kernels")
        await self._get(session, f"{url}api/sessions")

    async def cycle(self) -> None:
        await asyncio.gather(
            *(self._server(s, u) for s, u in zip(self.sessions, self.urls, strict=True))
        )

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()


class Client:
    """kernelmon's ``ServerClient``: the same requests, the answers read into its models."""

    name = "client"

    async def open(self, urls: list[str]) -> None:
        from kernelmon.core.servers.client import ServerClient

        self.clients = [ServerClient(url, TOKEN) for url in urls]
        for client in self.clients:
            await client.identify()
        self.kept: list[object] = []

    async def _server(self, client: Any) -> tuple[object, object]:
        if hasattr(client, "fetch_listings"):  # both over the poll connection, as a poll does
            await client.fetch_listings()
        return await client.list_kernels(), await client.list_sessions()

    async def cycle(self) -> None:
        self.kept = await asyncio.gather(*(self._server(c) for c in self.clients))

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


class Wire(Client):
    """The requests alone, over kernelmon's poll connections (``fetch_listings_of``: both
    listings of every server, written by hand on asyncio protocols, the loop woken once), the
    answers' heads read and nothing parsed: what the sockets and the loop cost, the floor of
    any reading of them."""

    name = "wire"

    async def open(self, urls: list[str]) -> None:
        await super().open(urls)
        for client in self.clients:  # (its poll connection opened: the cycles use it)
            await client.fetch_listings()
            client.forget_fetched()

    async def cycle(self) -> None:
        from kernelmon.core.servers.client import fetch_listings_of

        await fetch_listings_of(self.clients)
        for client in self.clients:
            client.forget_fetched()


class Map:
    """A ``KernelMap`` with the servers added; a cycle is its ``poll_servers()`` (every
    server polled and the map updated)."""

    name = "map"

    @staticmethod
    def available() -> bool:
        from kernelmon.core.kernel_map import KernelMap

        return hasattr(KernelMap, "add_server") and hasattr(KernelMap, "poll_servers")

    async def open(self, urls: list[str]) -> None:
        import dataclasses

        from kernelmon.core.kernel_map import KernelMap
        from kernelmon.core.settings import Settings

        settings = Settings(discover_kernels=False)
        fields = {f.name for f in dataclasses.fields(Settings)}
        wanted = {
            "server_poll_interval": 3600.0,  # no poller of its own between the cycles
            "server_token_file": True,  # no keyring needed: a 0600 file in the state folder
        }
        settings = dataclasses.replace(settings, **{k: v for k, v in wanted.items() if k in fields})
        self.state = tempfile.TemporaryDirectory(prefix="kernelmon-servers-bench-")
        self.kmap = KernelMap(settings, state_dir=self.state.name)
        self.ids = [await self.kmap.add_server(url, TOKEN) for url in urls]

    async def cycle(self) -> None:
        await self.kmap.poll_servers()

    async def close(self) -> None:
        for server_id in self.ids:
            with contextlib.suppress(Exception):
                await self.kmap.remove_server(server_id)
        await self.kmap.close()
        self.state.cleanup()


class Clocked(Map):
    """The same map polled by its own clock, as in the app (``PollClock``: a jittered cycle,
    one turn for the servers that answer), its interval shortened to 50 ms so that cycles
    follow each other. A cycle's loop time is the loop thread's CPU over a run of cycles
    divided by the cycles done, the clock's own wake-ups and timers included; the p99 lag is
    taken over another run as long, with the 10 ms timer."""

    name = "map·app"
    INTERVAL = 0.05

    @staticmethod
    def available() -> bool:
        from kernelmon.core.servers import polling

        return Map.available() and hasattr(polling, "PollClock")

    async def open(self, urls: list[str]) -> None:
        await super().open(urls)
        self.clock = self.kmap.server_part.clock
        self.interval = 3600.0
        self.clock._interval = lambda: self.interval

    def cycles_done(self) -> int:
        return min(w.polls for w in self.kmap.server_part.watches.values())

    async def run(self, cycles: int) -> dict[str, Any]:
        """Cycles of the clock: CPU per cycle, then the p99 lag over as many more."""
        self.interval = self.INTERVAL
        self.clock.interval_changed()
        try:
            await asyncio.sleep(3 * self.INTERVAL)  # warm: two cycles or so
            c0, n0, t0 = time.thread_time(), self.cycles_done(), thread_cpu()
            await asyncio.sleep(cycles * self.INTERVAL)
            cpu, done, t1 = time.thread_time() - c0, self.cycles_done() - n0, thread_cpu()
            lags: list[float] = []
            stop = asyncio.Event()
            ticker = asyncio.ensure_future(ticking(lags, stop))
            await asyncio.sleep(cycles * self.INTERVAL)
            stop.set()
            await ticker
        finally:
            self.interval = 3600.0
        per_cycle = cpu * 1000 / max(done, 1)
        off = (t1 - (t0 or 0.0)) * 1000 / max(done, 1) if t1 is not None else None
        return {
            "cpu_ms": per_cycle,
            "cpu_ms_max": per_cycle,
            "wall_ms": None,  # (a cycle waits for the clock: not the poll's own time)
            "thread_ms": off,
            "lag_p99_ms": p99(lags) * 1000,
        }


CONTENDERS: list[type[Floor] | type[Client] | type[Map]] = [Floor, Wire, Client, Map, Clocked]


# -- measuring ------------------------------------------------------------------------------


async def set_changing(urls: list[str], on: bool) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.post(f"{url}_bench/changing/{int(on)}") as r:
                r.raise_for_status()


async def ticking(lags: list[float], stop: asyncio.Event) -> None:
    """A 10 ms timer: how late each tick fires (the loop's lag), in seconds."""
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(max(0.0, time.perf_counter() - began - TICK))


def thread_cpu() -> float | None:
    """Seconds of CPU kernelmon's poll thread has used (None: there is none)."""
    try:
        from kernelmon.core.servers.poll_thread import started
    except ImportError:  # (an older kernelmon: no poll thread)
        return None
    thread = started()
    return thread.cpu_time() if thread is not None else None


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


async def measure(contender: Any, urls: list[str], cycles: int) -> dict[str, Any]:
    """Per scenario: loop-thread CPU and wall per cycle (ms), the p99 lag of a 10 ms timer
    (ms) while the cycles run back to back."""
    await contender.open(urls)
    result: dict[str, Any] = {}
    try:
        for scenario in ("unchanged", "changed"):
            await set_changing(urls, scenario == "changed")
            if isinstance(contender, Clocked):  # cycles of its own clock
                result[scenario] = await contender.run(cycles)
                continue
            for _ in range(2):  # warm: connections open, ETags known
                await contender.cycle()
            cpu, wall, lags = [], [], []
            stop = asyncio.Event()
            ticker = asyncio.ensure_future(ticking(lags, stop))
            off: list[float] = []
            for _ in range(cycles):
                await asyncio.sleep(GAP)  # a cycle begins on a loop that idled, as in the app
                t0 = thread_cpu()
                c0, w0 = time.thread_time(), time.perf_counter()
                await contender.cycle()
                cpu.append((time.thread_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
                t1 = thread_cpu()
                if t1 is not None and not isinstance(contender, Floor):
                    off.append((t1 - (t0 or 0.0)) * 1000)
            stop.set()
            await ticker
            result[scenario] = {
                "cpu_ms": statistics.median(cpu),
                "cpu_ms_max": max(cpu),
                "wall_ms": statistics.median(wall),
                "thread_ms": statistics.median(off) if off else None,
                "lag_p99_ms": p99(lags) * 1000,
            }
    finally:
        await set_changing(urls, False)
        await contender.close()
    return result


async def idle_lag(seconds: float) -> float:
    """The p99 lag of the same timer with nothing else on the loop (ms)."""
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(ticking(lags, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await ticker
    return p99(lags) * 1000


async def memory(kind: type[Any], full: list[str], empty: list[str], n_kernels: int) -> float:
    """KB per remote kernel: what the contender holds after one cycle of the servers with
    kernels, minus the same for as many servers without any (tracemalloc)."""

    async def held(urls: list[str]) -> int:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        contender = kind()
        await contender.open(urls)
        await contender.cycle()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        await contender.close()
        return after - before

    with_kernels = await held(full)
    without = await held(empty)
    return (with_kernels - without) / (len(full) * n_kernels) / 1024


def run_loop(kind: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if kind == "asyncio":
        with asyncio.Runner() as runner:
            return runner.run(main())
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication  # noqa: I001 (before qasync: README)
    import qasync

    app = QApplication.instance() or QApplication([])
    with asyncio.Runner(loop_factory=qasync.QEventLoop) as runner:
        result = runner.run(main())
    del app
    return result


# -- the report -----------------------------------------------------------------------------


def report(results: dict[str, Any], names: list[str]) -> list[str]:
    rows: list[tuple[str, Callable[[str], float | None]]] = []
    for loop in ("asyncio", "qasync"):
        for scenario in ("unchanged", "changed"):
            for figure, key in (
                ("loop CPU", "cpu_ms"),
                ("poll thread CPU", "thread_ms"),
                ("wall", "wall_ms"),
            ):
                label = f"{figure} per cycle, {scenario}, {loop} [ms]"
                rows.append((label, lambda n, lp=loop, s=scenario, k=key: results[lp][n][s][k]))
        for scenario in ("unchanged", "changed"):
            label = f"p99 lag of a 10 ms timer, {scenario}, {loop} [ms]"
            rows.append((label, lambda n, lp=loop, s=scenario: results[lp][n][s]["lag_p99_ms"]))
    rows.append(("memory per remote kernel [KB]", lambda n: results["memory"].get(n)))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'figure':<{width}}  " + "  ".join(f"{n:>8}" for n in names) + "  ratio to floor"]
    lines.append(f"{'-' * width}  " + "  ".join("-" * 8 for _ in names) + "  " + "-" * 15)
    for label, value in rows:
        values = [value(n) for n in names]
        cells = "  ".join(f"{v:8.2f}" if v is not None else f"{'-':>8}" for v in values)
        floor = values[0]
        ratios = " ".join(
            f"{n} {v / floor:.1f}x"
            for n, v in zip(names[1:], values[1:], strict=True)
            if v and floor
        )
        lines.append(f"{label:<{width}}  {cells}  {ratios}")
    return lines


def goals(results: dict[str, Any], name: str) -> list[str]:
    loop = max(
        results[lp][name][s]["cpu_ms"] for lp in ("asyncio", "qasync") for s in results["scenarios"]
    )
    lag = max(
        results[lp][name][s]["lag_p99_ms"]
        for lp in ("asyncio", "qasync")
        for s in results["scenarios"]
    )
    kb = results["memory"][name]
    said = []
    for text, value, goal in (
        ("loop time per cycle", loop, GOALS["loop_ms"]),
        ("p99 loop lag while polling", lag, GOALS["lag_p99_ms"]),
        ("memory per remote kernel", kb, GOALS["kb_per_kernel"]),
    ):
        unit = "KB" if "memory" in text else "ms"
        verdict = "met" if value < goal else "MISSED"
        said.append(f"  {text} under {goal:g} {unit}: {verdict} ({value:.2f} {unit}, worst case)")
    return said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=10, help="stub servers (10)")
    parser.add_argument("--kernels", type=int, default=100, help="kernels per server (100)")
    parser.add_argument("--cycles", type=int, default=40, help="measured cycles (40)")
    parser.add_argument("--quick", action="store_true", help="2 servers x 20 kernels, 5 cycles")
    parser.add_argument("--json", metavar="OUT", help="write every figure to this file")
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_stubs(*args.serve))
        return 0
    n, k, cycles = (2, 20, 5) if args.quick else (args.servers, args.kernels, args.cycles)
    stubs = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(n), str(k)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stubs.stdout is not None
        ports = json.loads(stubs.stdout.readline())
        full = [f"http://127.0.0.1:{p}/" for p in ports["full"]]
        empty = [f"http://127.0.0.1:{p}/" for p in ports["empty"]]
        kinds = [
            c
            for c in CONTENDERS
            if (not issubclass(c, Map) or c.available())
            and (c is not Wire or Map.available())  # (fetch_listings_of came with the map's)
        ]
        names = [c.name for c in kinds]
        print(
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
            f"{os.cpu_count()} cores; Python {platform.python_version()}; load average "
            f"(1 min) {os.getloadavg()[0]:.1f}; {n} stub servers x {k} kernels, "
            f"{cycles} cycles each; contenders: {', '.join(names)}\n"
        )
        results: dict[str, Any] = {
            "config": {"servers": n, "kernels": k, "cycles": cycles, "contenders": names},
            "scenarios": ["unchanged", "changed"],
            "goals": GOALS,
        }
        for loop in ("asyncio", "qasync"):

            async def everything() -> dict[str, Any]:
                found = {c.name: await measure(c(), full, cycles) for c in kinds}
                found["idle_lag_p99_ms"] = await idle_lag(max(1.0, cycles * 0.02))
                return found

            results[loop] = run_loop(loop, everything)

        async def memories() -> dict[str, float]:
            return {c.name: await memory(c, full, empty, k) for c in kinds}

        results["memory"] = run_loop("asyncio", memories)
        for line in report(results, names):
            print(line)
        idle = ", ".join(
            f"{lp} {results[lp]['idle_lag_p99_ms']:.2f}" for lp in ("asyncio", "qasync")
        )
        print(f"\np99 lag of the same timer with nothing polled [ms]: {idle}")
        for name in [c.name for c in kinds if issubclass(c, Map)] or names[-1:]:
            print(f"\nGoals (issue #13), for {name}:")
            for line in goals(results, name):
                print(line)
        results["load_average"] = os.getloadavg()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if stubs.stdin is not None:
            stubs.stdin.close()
        try:
            stubs.wait(10)
        except subprocess.TimeoutExpired:
            stubs.kill()
            stubs.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
