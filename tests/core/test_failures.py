"""Kernels that fail: exit at once, never answer, die on restart, die for good."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from kernelmon.core import (
    KernelMap,
    KernelStartFailed,
    KernelStartTimeout,
    RestartFailed,
    RestartTimeout,
    Settings,
)
from kernelmon.core.events import (
    ActionFailed,
    KernelAdded,
    KernelCulled,
    KernelDied,
    KernelRemoved,
    KernelRestarted,
)
from tests import kernels
from tests.waiting import wait_until

from .conftest import EventLog, goes_busy_then_idle, process_gone


def children_of_this_process() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def fmap(aio, root):
    km = KernelMap(
        Settings(root_dir=str(root), kernel_info_timeout=20),
        restart_poll=0.2,
        restart_limit=1,
        shutdown_wait=1.0,
    )
    yield km
    aio.run(km.close())


def test_spec_that_exits_at_once(aio, fmap):
    name = kernels.exits_at_once()
    log = EventLog(fmap)
    before = children_of_this_process()
    with pytest.raises(KernelStartFailed) as info:
        aio.run(fmap.start_kernel(kernel_name=name))
    log.unsubscribe()
    assert "exited with code 3" in str(info.value)
    assert "kernel says: cannot start" in str(info.value)  # its own words, from its log
    assert name in str(info.value)
    assert len(fmap) == 0
    assert children_of_this_process() <= before
    # it was listed while starting, then removed with the reason
    [added] = log.of(KernelAdded)
    [removed] = log.of(KernelRemoved)
    assert added.kernel_id == removed.kernel_id
    assert "failed to start" in removed.reason
    runtime = os.environ["JUPYTER_RUNTIME_DIR"]
    assert not os.path.exists(os.path.join(runtime, f"kernel-{added.kernel_id}.json"))


def test_spec_that_never_answers(aio, fmap):
    name = kernels.never_answers()
    fmap.apply_settings(Settings(root_dir=fmap.settings.root_dir, kernel_info_timeout=1.0))
    before = children_of_this_process()
    loop_time = aio.loop.time()
    try:
        with pytest.raises(KernelStartTimeout) as info:
            aio.run(fmap.start_kernel(kernel_name=name))
    finally:
        fmap.apply_settings(Settings(root_dir=fmap.settings.root_dir, kernel_info_timeout=20))
    took = aio.loop.time() - loop_time
    assert "did not answer within 1 s" in str(info.value)
    assert isinstance(info.value, TimeoutError)
    assert 1.0 <= took < 6.0
    assert len(fmap) == 0
    assert children_of_this_process() <= before


def test_restart_that_fails(aio, fmap, tmp_path):
    name = kernels.flaky(tmp_path / "launches", "exit")
    kid = aio.run(fmap.start_kernel(kernel_name=name))
    log = EventLog(fmap)
    with pytest.raises(RestartFailed) as info:
        aio.run(fmap.restart_kernel(kid))
    log.unsubscribe()
    assert "exited with code 7" in str(info.value)
    model = fmap.kernel_model(kid)
    assert model["execution_state"] == "dead"
    assert "exited with code 7" in model["reason"]
    assert log.of(KernelDied, kid)[-1].will_restart is False
    assert log.of(ActionFailed, kid)[0].action == "restart"
    # the restarter does not bring it back behind the user's back
    aio.sleep(0.6)
    assert fmap.kernel_model(kid)["execution_state"] == "dead"
    aio.run(fmap.shutdown_kernel(kid))
    assert kid not in fmap


def test_restart_that_times_out(aio, fmap, tmp_path):
    name = kernels.flaky(tmp_path / "launches", "hang")
    kid = aio.run(fmap.start_kernel(kernel_name=name))
    fmap.apply_settings(Settings(root_dir=fmap.settings.root_dir, kernel_info_timeout=1.0))
    try:
        with pytest.raises(RestartTimeout) as info:
            aio.run(fmap.restart_kernel(kid))
    finally:
        fmap.apply_settings(Settings(root_dir=fmap.settings.root_dir, kernel_info_timeout=20))
    assert "did not answer within 1 s" in str(info.value)
    model = fmap.kernel_model(kid)
    assert model["execution_state"] == "unknown"
    assert "did not answer" in model["reason"]
    pid = model["pid"]
    aio.run(fmap.shutdown_kernel(kid))
    assert process_gone(pid)


def test_auto_restart_after_kill(aio, kmap):
    """kill -9 a kernel: jupyter_client's restarter brings it back under the same id."""
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]
    log = EventLog(kmap)

    async def go():
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: log.of(KernelRestarted, kid), timeout=15, what="auto-restart")
        model = kmap.kernel_model(kid)
        assert model["execution_state"] == "idle"
        assert model["restarts"] == 1
        assert model["pid"] not in (None, pid)
        assert model["reason"] is None
        # watching goes on with the new process
        await goes_busy_then_idle(kmap, kid, "after-kill")

    aio.run(go())
    log.unsubscribe()
    died = log.of(KernelDied, kid)
    assert died[0].will_restart is True
    assert "SIGKILL" in died[0].reason
    assert log.of(KernelRestarted, kid)[0].auto is True
    aio.run(kmap.shutdown_kernel(kid))


def test_dead_after_failed_auto_restart(aio, fmap, tmp_path):
    """The restarter gives up: the kernel stays listed as dead, with a reason, until removed."""
    name = kernels.flaky(tmp_path / "launches", "exit")
    kid = aio.run(fmap.start_kernel(kernel_name=name))
    pid = fmap.kernel_model(kid)["pid"]
    log = EventLog(fmap)

    async def go():
        os.kill(pid, signal.SIGKILL)
        await wait_until(
            lambda: fmap.kernel_model(kid)["execution_state"] == "dead", timeout=15, what="dead"
        )

    aio.run(go())
    model = fmap.kernel_model(kid)
    assert "exited with code 7" in model["reason"]
    assert "restarted once without" in model["reason"]
    final = log.of(KernelDied, kid)[-1]
    assert final.will_restart is False
    assert final.reason == model["reason"]
    assert log.of(KernelDied, kid)[0].will_restart is True
    # the next cull pass removes it (even with culling off)
    culled = aio.run(fmap.cull_kernels())
    assert culled == {kid: "the kernel is dead"}
    assert kid not in fmap
    assert [e.reason for e in log.of(KernelCulled, kid)] == ["the kernel is dead"]
    log.unsubscribe()
    assert aio.run(fmap.cull_kernels()) == {}


def test_dead_kernel_refuses_frontends_and_interrupts(aio, fmap, tmp_path):
    from kernelmon.core import KernelDead

    name = kernels.flaky(tmp_path / "launches", "exit")
    kid = aio.run(fmap.start_kernel(kernel_name=name))
    with pytest.raises(RestartFailed):
        aio.run(fmap.restart_kernel(kid))
    with pytest.raises(KernelDead):
        aio.run(fmap.interrupt_kernel(kid))
    with pytest.raises(KernelDead):
        aio.run(fmap.connect(kid, "s", lambda c, m: None))
    aio.run(fmap.shutdown_kernel(kid))
    assert kid not in fmap


def test_cancelled_start_leaves_nothing(aio, fmap):
    before = children_of_this_process()

    async def go():
        task = asyncio.ensure_future(fmap.start_kernel())
        await wait_until(lambda: len(fmap) == 1)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    aio.run(go())
    assert len(fmap) == 0
    assert children_of_this_process() <= before


def test_auto_restart_after_kill_while_busy(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]
    log = EventLog(kmap)

    async def go():
        conn = await kmap.connect(kid, "busy-kill", lambda c, m: None)
        conn.execute("import time; time.sleep(60)")
        await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "busy")
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: log.of(KernelRestarted, kid), timeout=15, what="auto-restart")
        await conn.close()

    aio.run(go())
    log.unsubscribe()
    model = kmap.kernel_model(kid)
    assert model["execution_state"] == "idle"  # not stuck "busy" from before the kill
    assert model["restarts"] == 1
    assert model["pid"] != pid
    aio.run(kmap.shutdown_kernel(kid))
