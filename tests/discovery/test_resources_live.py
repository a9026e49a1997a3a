"""``ResourceSampler`` on a real kernel (and its child process), checked against psutil."""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest

from kernelmon.core.backends.external import ExternalKernel
from kernelmon.core.machine.discovery import process_table, scan_runtime
from kernelmon.core.machine.resources import ResourceSampler, measure_trees
from tests.waiting import wait_until

MB = 1024 * 1024


def psutil_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.fixture(scope="module")
def kernel(launch):
    launched = launch(1)
    return scan_runtime([launched.runtime]).by_kernel_id()[launched.kernels[0]["id"]]


def run(front, code: str) -> dict:
    async def go() -> dict:
        msg_id = front.execute(code)
        await wait_until(lambda: front.reply(msg_id) is not None, timeout=30, what=code)
        reply = front.reply(msg_id)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply

    return go()


def test_memory_of_the_tree_matches_psutil(aio, kernel, frontends):
    sampler = ResourceSampler()
    sampler.track(kernel.kernel_id, kernel.pid)

    async def scenario() -> None:
        front = frontends(kernel.connection_file)
        before = (await sampler.sample())[kernel.kernel_id]
        assert before.processes == 1
        await run(front, "big = bytes(range(256)) * (200 * 4096)")  # 200 MB, written
        grown = (await sampler.sample())[kernel.kernel_id]
        assert grown.rss - before.rss > 190 * MB
        # a child process of the kernel, with 50 MB of its own
        await run(
            front,
            "import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'import sys, time; x = bytes(range(256)) * (50 * 4096); print(1, flush=True); "
            "time.sleep(60)'], stdout=subprocess.PIPE)\n"
            "child.stdout.readline()",
        )
        usage = (await sampler.sample())[kernel.kernel_id]
        tree = psutil_tree(kernel.pid)
        assert usage.processes == len(tree) == 2
        rss = sum(p.memory_info().rss for p in tree)
        assert abs(usage.rss - rss) < 5 * MB
        assert usage.rss - grown.rss > 50 * MB
        pss = sum(p.memory_full_info().pss for p in tree)
        assert usage.pss is not None
        assert abs(usage.pss - pss) < 5 * MB
        assert usage.uss is not None
        assert usage.uss <= usage.rss
        await run(front, "child.kill(); child.wait(); del big")
        after = (await sampler.sample())[kernel.kernel_id]
        assert after.processes == 1
        assert after.rss < usage.rss - 200 * MB

    aio.run(scenario())
    assert len(sampler.history(kernel.kernel_id).rss) == 4


def test_a_busy_kernel_shows_its_cpu_like_psutil(aio, kernel, frontends):
    sampler = ResourceSampler(full_memory=False)
    sampler.track(kernel.kernel_id, kernel.pid)
    proc = psutil.Process(kernel.pid)

    async def scenario() -> tuple[float | None, float]:
        front = frontends(kernel.connection_file)
        msg_id = front.execute("import time\nt = time.time()\nwhile time.time() - t < 2.5: pass")
        await asyncio.sleep(0.4)
        first = await sampler.sample()
        assert first[kernel.kernel_id].cpu_percent is None  # one sample says nothing yet
        proc.cpu_percent(None)
        await asyncio.sleep(1.0)
        ours = (await sampler.sample())[kernel.kernel_id].cpu_percent
        theirs = proc.cpu_percent(None)
        await wait_until(lambda: front.reply(msg_id) is not None, what="the loop's end")
        return ours, theirs

    ours, theirs = aio.run(scenario())
    assert ours is not None
    # The loop keeps one core busy; on a loaded machine it gets less than a whole core, so
    # the check is that kernelmon agrees with psutil and sees real use, not a fixed figure.
    assert ours > 10
    assert abs(ours - theirs) < 20
    assert sampler.history(kernel.kernel_id).cpu.values() == [ours]


def test_repeated_sampling_with_a_message_rate(aio, kernel, externals_for_rate):
    ext = externals_for_rate(kernel)
    samples: list[dict] = []
    sampler = ResourceSampler()
    sampler.track(kernel.kernel_id, kernel.pid, messages=lambda: ext.record.messages)
    sampler.track("gone", 2**22 + 12345)  # no such process: left out, never raised

    async def scenario() -> None:
        from tests.discovery.conftest import Frontend

        async def sample() -> None:
            samples.append(await sampler.sample(process_table()))
            await asyncio.sleep(0.1)

        ext.attach()
        front = Frontend(kernel.connection_file)
        try:
            await sample()
            await sample()
            msg_id = front.execute("for i in range(300): print(i, flush=True)")
            while front.reply(msg_id) is None:
                await sample()
            await sample()
            await sample()
        finally:
            front.close()

    aio.run(scenario())
    assert all(set(s) == {kernel.kernel_id} for s in samples)
    history = sampler.history(kernel.kernel_id)
    assert max(history.messages.values()) > 10  # messages per second while it printed
    assert len(history.cpu) == len(samples) - 1
    assert sampler.latest("gone") is None
    assert measure_trees([2**22 + 12345]) == {2**22 + 12345: None}


@pytest.fixture
def externals_for_rate(aio):
    made: list[ExternalKernel] = []

    def make(found) -> ExternalKernel:
        ext = ExternalKernel.from_found(found, on_change=lambda *_a: None)
        made.append(ext)
        return ext

    yield make
    for ext in made:
        ext.close()


def test_samples_taken_at_once_keep_the_history_in_order(aio, kernel, monkeypatch):
    import kernelmon.core.machine.resources as resources

    measure = resources.measure_trees
    calls = []

    def slow_first(pids, full_memory=True, table=None):
        trees = measure(pids, full_memory, table)
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)  # measured first, done last
        return trees

    monkeypatch.setattr(resources, "measure_trees", slow_first)
    sampler = ResourceSampler()
    sampler.track(kernel.kernel_id, kernel.pid)

    async def at_once() -> None:
        await asyncio.gather(*(sampler.sample() for _ in range(4)))

    aio.run(at_once())
    times = [t for t, _ in sampler.history(kernel.kernel_id).rss.points()]
    assert len(times) == 4
    assert times == sorted(times)
