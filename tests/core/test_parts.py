"""The parts of the kernel map on their own: the registry, alerts and the culler with a fake
clock and no kernel (time passing is what a real kernel cannot produce in a test), and the
sampler's tick with a real kernel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from kernelmon.core import KernelMap, Settings
from kernelmon.core.alerts import MIB, Alerts
from kernelmon.core.backends.base import KernelBackend
from kernelmon.core.culling import Culler
from kernelmon.core.events import (
    JobFinished,
    KernelChanged,
    KernelCulled,
    KernelEvent,
    MemoryWarning,
)
from kernelmon.core.machine.resources import KernelUsage
from kernelmon.core.records import ExecutionState, KernelRecord
from kernelmon.core.registry import Entry, Registry


class FakeClock:
    """Time that moves only when told (never the real clock)."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Untouched(KernelBackend):
    """A backend of a kernel that is only read (nothing here acts on a kernel)."""

    @property
    def connection_info(self) -> dict[str, Any]:
        return {}

    async def interrupt(self) -> None:
        raise AssertionError("interrupted")

    async def restart(self, timeout: float) -> None:
        raise AssertionError("restarted")

    async def shutdown(self, now: bool = False) -> None:
        raise AssertionError("shut down")

    async def is_alive(self) -> bool:
        return True


def added(registry: Registry, kid: str, state: str = ExecutionState.IDLE) -> KernelRecord:
    record = registry.new_record(kid, "python3")
    assert record.last_activity == record.started == registry.now()  # the map's clock
    record.execution_state = state
    registry.add(Entry(record, Untouched(record)))
    return record


def test_the_registry_runs_change_steps_before_telling_subscribers():
    registry = Registry(Settings(), FakeClock())
    seen: list[object] = []
    registry.on_change(lambda record, fields: seen.append(("step", record.id, fields)))
    registry.subscribe(lambda e: seen.append(("event", type(e).__name__, e.kernel_id)))
    record = added(registry, "k")
    seen.clear()
    registry.changed(record, {"pid"}, None)  # urgent: sent at once
    assert seen == [("step", "k", frozenset({"pid"})), ("event", "KernelChanged", "k")]
    seen.clear()
    stranger = KernelRecord(id="not-in-the-map", name="python3")
    registry.changed(stranger, {"pid"}, None)
    assert seen == []
    forgotten: list[str] = []
    registry.on_forget(forgotten.append)
    registry.remove(registry.get("k"), "gone")
    assert forgotten == ["k"]
    assert "k" not in registry


def test_a_finished_job_is_timed_by_the_maps_clock_alone():
    clock = FakeClock()
    registry = Registry(Settings(notify_job_seconds=10), clock)
    alerts = Alerts(registry)
    registry.on_change(alerts.on_change)
    events: list[KernelEvent] = []
    registry.subscribe(events.append)
    record = added(registry, "k")
    record.execution_state = ExecutionState.BUSY
    registry.changed(record, {"execution_state"}, None)
    clock.advance(9)
    record.execution_state = ExecutionState.IDLE
    registry.changed(record, {"execution_state"}, None)
    assert [e for e in events if isinstance(e, JobFinished)] == []  # 9 s: not a job
    record.execution_state = ExecutionState.BUSY
    registry.changed(record, {"execution_state"}, None)
    clock.advance(12.5)
    record.execution_state = ExecutionState.IDLE
    registry.changed(record, {"execution_state"}, None)
    assert [e for e in events if isinstance(e, JobFinished)] == [JobFinished("k", seconds=12.5)]


def test_memory_warnings_once_per_crossing_and_again_after_falling_below():
    registry = Registry(Settings(memory_warn_kernel_mb=100, memory_warn_total_mb=150), FakeClock())
    alerts = Alerts(registry)
    events: list[KernelEvent] = []
    registry.subscribe(events.append)

    def sample(**rss_mb: float) -> None:
        usage = {
            k: KernelUsage(k, 1, None, int(mb * MIB), None, None, 1, None, ())
            for k, mb in rss_mb.items()
        }
        alerts.sampled(usage, sum(u.rss for u in usage.values()))

    sample(a=120, b=10)
    sample(a=130, b=10)
    assert [(e.kernel_id, e.total) for e in events] == [("a", False)]
    sample(a=95, b=60)  # a below the limit but above 90 % of it: not re-armed; total over
    assert [(e.kernel_id, e.total) for e in events] == [("a", False), ("", True)]
    sample(a=80, b=10)  # re-armed
    sample(a=101, b=10)
    assert [e.kernel_id for e in events if isinstance(e, MemoryWarning)] == ["a", "", "a"]


def test_the_culler_decides_by_the_maps_clock_alone(aio):
    clock = FakeClock()
    registry = Registry(Settings(cull_idle_timeout=60, cull_interval=30), clock)
    stopped: list[str] = []

    async def shutdown(kernel_id: str) -> None:
        stopped.append(kernel_id)
        registry.remove(registry.get(kernel_id), "shut down")

    culler = Culler(registry, shutdown)
    events: list[KernelEvent] = []
    registry.subscribe(events.append)

    async def scenario() -> None:
        added(registry, "idle")
        added(registry, "busy", ExecutionState.BUSY)
        await asyncio.sleep(0)  # the culler's task starts with the first kernel added
        assert culler.running
        assert culler.next_cull is not None  # the loop's time passed meanwhile, not the clock's
        assert timedelta(seconds=29) < culler.next_cull - clock.now <= timedelta(seconds=30)
        clock.advance(59)
        assert await culler.cull_kernels() == {}
        clock.advance(2)
        culled = await culler.cull_kernels()
        assert list(culled) == ["idle"]
        assert culled["idle"].startswith("idle with no activity for 61 s")
        culler.stop()

    aio.run(scenario())
    assert stopped == ["idle"]
    assert [e.kernel_id for e in events if isinstance(e, KernelCulled)] == ["idle"]
    assert not culler.running
    assert culler.next_cull is None


def test_one_tick_reads_the_process_table_once_for_discovery_and_resources(
    aio, root, tmp_path, monkeypatch
):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    km = KernelMap(
        Settings(root_dir=str(root), kernel_info_timeout=30),
        connection_dir=str(runtime),
        runtime_dirs=[str(runtime)],
    )
    reads: list[object] = []
    real = psutil.process_iter

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(args)
        return real(*args, **kwargs)

    async def scenario() -> None:
        kid = await km.start_kernel()
        await km.start_monitoring()
        await km.sampler.stop()  # ticks only when asked here
        changed: list[KernelEvent] = []
        km.subscribe(lambda e: isinstance(e, KernelChanged) and changed.append(e))
        monkeypatch.setattr(psutil, "process_iter", counted)
        watcher = km.discovery.watcher
        assert watcher is not None
        watcher.scanned_at = None  # discovery is due in this tick
        await km.sampler.tick()
        assert watcher.scanned_at is not None  # the tick scanned the runtime folder
        assert len(reads) == 1
        assert km.record(kid).rss is not None  # and sampled the kernel's process tree
        assert km.record(kid).connection_file is not None
        await km.close()

    try:
        aio.run(scenario())
    finally:
        monkeypatch.undo()
        if len(km):
            aio.run(km.close())
