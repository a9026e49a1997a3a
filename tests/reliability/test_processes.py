"""Nothing orphaned: a kernel's children go with it; stubborn kernels are killed in time."""

from __future__ import annotations

import asyncio

import psutil

from tests.core.conftest import process_gone
from tests.waiting import wait_until


def test_shutdown_takes_the_kernels_children_along(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]
    out: list[str] = []

    def on_message(channel, msg):
        if msg["header"]["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    async def go():
        conn = await kmap.connect(kid, "spawner", on_message)
        # a child that would outlive a careless shutdown, and a grandchild
        conn.execute(
            "import subprocess\n"
            "p = subprocess.Popen(['sleep', '600'])\n"
            "q = subprocess.Popen(['sh', '-c', 'sleep 600 & wait'])\n"
            "print(p.pid, q.pid)"
        )
        await wait_until(lambda: out, what="child pids")
        await conn.close()

    aio.run(go())
    children = [int(x) for x in out[0].split()]
    descendants = {p.pid for p in psutil.Process(pid).children(recursive=True)}
    assert set(children) <= descendants
    aio.run(kmap.shutdown_kernel(kid))
    aio.run(wait_until(lambda: all(process_gone(p) for p in descendants), timeout=5))
    assert process_gone(pid)


def test_shutdown_all_is_concurrent_and_complete(aio, kmap):
    async def go():
        ids = await asyncio.gather(*(kmap.start_kernel() for _ in range(4)))
        pids = [kmap.kernel_model(k)["pid"] for k in ids]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await kmap.shutdown_all()
        return pids, loop.time() - t0

    pids, took = aio.run(go())
    assert all(process_gone(p) for p in pids)
    assert len(kmap) == 0
    # concurrent: four polite shutdowns take about as long as one, not four
    assert took < 2.0
