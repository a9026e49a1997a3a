"""The cull pass with real kernels: each rule, concurrency, failures, the periodic task."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import ActionFailed, KernelCulled, KernelRemoved
from kernelmon.core.records import utcnow
from tests.waiting import wait_until

from .conftest import EventLog, process_gone


class FakeClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self):
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def cmap(aio, root, clock):
    km = KernelMap(Settings(root_dir=str(root), cull_idle_timeout=60), clock=clock)
    yield km
    aio.run(km.close())


def start(aio, km, n=1):
    async def go():
        return await asyncio.gather(*(km.start_kernel() for _ in range(n)))

    return list(aio.run(go()))


def culled_with(aio, km, **settings) -> dict[str, str]:
    """What a culling pass with ``settings`` changed culls (the settings are put back)."""
    saved = km.settings
    km.apply_settings(dataclasses.replace(saved, **settings))
    try:
        return aio.run(km.cull_kernels())
    finally:
        km.apply_settings(saved)


def test_idle_kernels_culled_after_timeout(aio, cmap, clock):
    ids = start(aio, cmap, 2)
    pids = [cmap.kernel_model(k)["pid"] for k in ids]
    assert aio.run(cmap.cull_kernels()) == {}
    assert cmap.cull_eta(ids[0]) == pytest.approx(60, abs=5)
    clock.advance(61)
    assert cmap.cull_eta(ids[0]) == 0
    log = EventLog(cmap)
    culled = aio.run(cmap.cull_kernels())
    log.unsubscribe()
    assert set(culled) == set(ids)
    assert all("no activity" in r for r in culled.values())
    assert {e.kernel_id for e in log.of(KernelCulled)} == set(ids)
    assert {e.kernel_id for e in log.of(KernelRemoved)} == set(ids)
    assert all(process_gone(p) for p in pids)
    assert len(cmap) == 0


def test_busy_kernel_spared_unless_cull_busy(aio, cmap, clock):
    [kid] = start(aio, cmap)

    async def make_busy():
        conn = await cmap.connect(kid, "busy", lambda c, m: None)
        conn.execute("import time; time.sleep(60)")
        await wait_until(lambda: cmap.kernel_model(kid)["execution_state"] == "busy")
        await conn.close()

    aio.run(make_busy())
    clock.advance(120)
    assert aio.run(cmap.cull_kernels()) == {}
    assert kid in cmap
    culled = culled_with(aio, cmap, cull_busy=True)
    assert list(culled) == [kid]
    assert "busy" in culled[kid]


def test_connected_kernel_spared_unless_cull_connected(aio, cmap, clock):
    [kid] = start(aio, cmap)
    conn = aio.run(cmap.connect(kid, "watcher", lambda c, m: None))
    clock.advance(120)
    assert aio.run(cmap.cull_kernels()) == {}
    culled = culled_with(aio, cmap, cull_connected=True)
    assert list(culled) == [kid]
    assert "1 connection" in culled[kid]
    assert conn.closed


def test_activity_resets_the_clock(aio, cmap, clock):
    [kid] = start(aio, cmap)
    clock.advance(50)

    async def touch():
        conn = await cmap.connect(kid, "toucher", lambda c, m: None)
        conn.execute("1")
        await asyncio.sleep(0.3)
        await conn.close()

    # activity is stamped with the real time; move the fake clock back in line first
    clock.offset = timedelta()
    aio.run(touch())
    clock.advance(50)
    assert aio.run(cmap.cull_kernels()) == {}
    clock.advance(20)
    assert list(aio.run(cmap.cull_kernels())) == [kid]


def test_one_failure_does_not_stop_the_pass(aio, cmap, clock, monkeypatch):
    ids = start(aio, cmap, 2)
    clock.advance(120)
    real = cmap.shutdown_kernel

    async def failing(kernel_id, now=False):
        if kernel_id == ids[0]:
            raise RuntimeError("simulated failure")
        await real(kernel_id, now)

    monkeypatch.setattr(cmap, "shutdown_kernel", failing)
    log = EventLog(cmap)
    culled = aio.run(cmap.cull_kernels())
    log.unsubscribe()
    monkeypatch.undo()
    assert list(culled) == [ids[1]]
    [failed] = log.of(ActionFailed)
    assert failed.kernel_id == ids[0]
    assert failed.action == "cull"
    assert "simulated failure" in failed.message
    aio.run(cmap.shutdown_kernel(ids[0]))


def test_periodic_pass_and_new_interval_at_once(aio, root):
    km = KernelMap(Settings(root_dir=str(root), cull_idle_timeout=0.5, cull_interval=300))

    async def go():
        kid = await km.start_kernel()
        assert km.culling
        assert km.next_cull is not None
        log = EventLog(km)
        await asyncio.sleep(1.0)
        assert kid in km  # the 300 s interval has not come round
        km.apply_settings(dataclasses.replace(km.settings, cull_interval=0.2))
        await wait_until(lambda: kid not in km, timeout=5, what="culled")
        assert log.of(KernelCulled, kid)
        km.apply_settings(dataclasses.replace(km.settings, cull_idle_timeout=0))
        assert not km.culling
        assert km.next_cull is None
        await km.close()

    aio.run(go())
