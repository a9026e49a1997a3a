"""The kernel map shows every kernel on the machine: other tools' kernels join the same map.

Kernels are started the way other tools do (``launcher.py``: a plain jupyter_client
``KernelManager`` in a separate process, connection files in a temporary runtime folder),
found while kernelmon runs, classified, watched, sampled, interrupted and shut down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.errors import KernelDead, KernelmonError, NotRestartable
from kernelmon.core.events import (
    ActionFailed,
    JobFinished,
    KernelAdded,
    KernelRemoved,
    MemoryWarning,
    UsageSampled,
)
from kernelmon.core.records import ExecutionState, Origin
from tests.core.conftest import EventLog, process_gone
from tests.discovery.conftest import interrupted_cell
from tests.waiting import wait_until

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def others(launch, runtime):
    """Two kernels another tool started, with their connection files in our runtime folder."""
    return moved(launch(2), runtime)


def moved(launched, runtime):
    """The launcher's kernels, their connection files moved where the map looks (the
    launcher wrote them into a folder of its own)."""
    for k in launched.kernels:
        path = runtime / os.path.basename(k["connection_file"])
        os.replace(k["connection_file"], path)
        k["connection_file"] = str(path)
    return launched


def kill_application(launched) -> None:
    """SIGKILL the launcher: its kernels keep running, orphaned."""
    os.kill(launched.proc.pid, signal.SIGKILL)
    launched.proc.wait(5)


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_other_tools_kernels_join_the_map_beside_its_own(aio, kmap, launch, runtime):
    log = EventLog(kmap)
    try:
        owned = aio.run(kmap.start_kernel())
        launched = moved(launch(1), runtime)
        path = launched.kernel()["connection_file"]
        kid = launched.kernel()["id"]

        # found by the periodic scan while running, without being asked
        aio.run(wait_until(lambda: kid in kmap, timeout=10, what="the other kernel found"))
        record = kmap.record(kid)
        assert record.origin == Origin.EXTERNAL
        assert record.pid == launched.kernel()["pid"]
        assert record.parent_pid == launched.proc.pid
        assert record.parent_alive
        assert "launcher.py" in (record.parent_app or "")
        assert record.connection_file == path
        assert record.can_restart is False
        assert record.display_name == kmap.kernel_specs()["python3"]["display_name"]
        assert [e.model["origin"] for e in log.of(KernelAdded, kid)] == ["external"]

        # kernelmon's own kernel stays owned, once, with its connection facts filled in
        aio.run(kmap.rescan())
        own = kmap.record(owned)
        assert own.origin == Origin.OWNED
        assert own.connection_file == str(runtime / f"kernel-{owned}.json")
        assert own.transport in ("ipc", "tcp")
        assert own.ports
        assert [e.kernel_id for e in log.of(KernelAdded)].count(owned) == 1
    finally:
        log.unsubscribe()
        aio.run(kmap.shutdown_kernel(owned))


def test_closing_a_map_leaves_other_tools_kernels_running(aio, others, runtime, tmp_path):
    km = KernelMap(
        Settings(root_dir=str(tmp_path)), connection_dir=str(tmp_path), runtime_dirs=[str(runtime)]
    )
    aio.run(km.start_monitoring())
    ids = {k["id"] for k in others.kernels}
    assert ids <= set(km)
    own = aio.run(km.start_kernel())
    own_pid = km.record(own).pid
    aio.run(km.close())  # shuts its own kernels down
    assert len(km) == 0
    assert process_gone(own_pid)
    assert not any(process_gone(k["pid"]) for k in others.kernels)
    assert all(os.path.exists(k["connection_file"]) for k in others.kernels)


def test_activity_of_an_external_kernel_is_watched(aio, kmap, others, frontends):
    k = others.kernel(0)
    aio.run(kmap.rescan())
    record = kmap.record(k["id"])

    async def run() -> None:
        front = frontends(k["connection_file"])
        # the first messages may go before both subscriptions are live
        while record.messages == 0:
            front.channels.send("shell", "kernel_info_request")
            await asyncio.sleep(0.1)
        before = record.last_activity
        msg_id = front.execute("import time; time.sleep(0.5); print('done')")
        await wait_until(lambda: record.execution_state == ExecutionState.BUSY, what="busy")
        await wait_until(lambda: front.reply(msg_id) is not None, what="the reply")
        await wait_until(lambda: record.execution_state == ExecutionState.IDLE, what="idle")
        assert record.last_activity > before

    aio.run(run())


def test_cpu_and_memory_match_psutil_for_the_process_tree(aio, kmap, others, frontends):
    k = others.kernel(1)
    aio.run(kmap.rescan())
    log = EventLog(kmap)
    front = None
    try:

        async def busy_sampled() -> None:
            nonlocal front
            front = frontends(k["connection_file"])
            # a child process too: the kernel's figures are its whole tree's
            front.execute(
                "import subprocess, sys, time\n"
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                "t = time.time()\n"
                "while time.time() - t < 4: pass\n"
            )
            await wait_until(
                lambda: (kmap.record(k["id"]).cpu_percent or 0) > 25,
                timeout=20,
                what="a sample showing the busy loop",
            )

        aio.run(busy_sampled())
        record = kmap.record(k["id"])
        assert record.processes == 2
        members = kmap.usage(k["id"]).members
        kernel_proc = psutil.Process(k["pid"])
        assert members[0].pid == k["pid"]
        assert {m.pid for m in members} == {k["pid"]} | {
            c.pid for c in kernel_proc.children(recursive=True)
        }
        assert members[0].name == kernel_proc.name()
        assert all(m.ppid == k["pid"] for m in members[1:])
        expected = tree_rss(k["pid"])
        assert abs(record.rss - expected) < 0.2 * expected, (record.rss, expected)
        if record.pss is not None:
            assert 0 < record.uss <= record.pss <= record.rss * 1.05
        history = kmap.history(k["id"])
        assert history is not None
        assert max(history.cpu.values()) > 25
        assert len(history.rss) >= 2
        assert log.of(UsageSampled)
        cpu, total = kmap.total_usage()
        assert total >= record.rss
        assert cpu is not None
    finally:
        log.unsubscribe()
        if front is not None:
            front.execute("child.kill()")


def test_external_kernel_is_interrupted_and_never_restarted(aio, kmap, others, frontends):
    k = others.kernel(0)
    aio.run(kmap.rescan())

    reply = aio.run(interrupted_cell(kmap, k["id"], lambda: frontends(k["connection_file"])))
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"

    state = kmap.record(k["id"]).execution_state
    with pytest.raises(NotRestartable, match=r"did not start this kernel: python launcher") as e:
        aio.run(kmap.restart_kernel(k["id"]))
    # decided once, by the backend: the map raises the sentence the model shows the UI
    assert kmap.kernel_model(k["id"])["refusals"]["restart"] in str(e.value)
    assert kmap.record(k["id"]).execution_state == state
    assert kmap.record(k["id"]).restarts == 0


def test_orphan_is_found_probed_and_culled_only_when_asked(aio, kmap, launch, runtime):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    path = Path(k["connection_file"])
    aio.run(kmap.rescan())
    assert kmap.record(k["id"]).origin == Origin.EXTERNAL
    found_at = kmap.record(k["id"]).last_activity

    kill_application(launched)  # its application dies; the kernel stays
    aio.run(kmap.rescan())
    record = kmap.record(k["id"])
    assert record.origin == Origin.ORPHAN
    assert record.parent_pid != launched.proc.pid
    # nobody is left to disturb, so kernelmon asks it for its state
    aio.run(wait_until(lambda: record.execution_state == ExecutionState.IDLE, what="probed"))
    assert record.last_activity == found_at, "kernelmon's own probe is not activity"

    settings = kmap.settings
    try:
        kmap.apply_settings(dataclasses.replace(settings, cull_idle_timeout=0.3))
        time.sleep(0.5)
        assert aio.run(kmap.cull_kernels()) == {}, "orphans are spared unless asked"

        log = EventLog(kmap)
        kmap.apply_settings(dataclasses.replace(settings, cull_idle_timeout=0.3, cull_orphans=True))
        culled = aio.run(kmap.cull_kernels())
        log.unsubscribe()
        assert list(culled) == [k["id"]]
        assert k["id"] not in kmap
        assert process_gone(k["pid"])
        assert not path.exists(), "nobody else will remove an orphan's connection file"
        aio.run(kmap.rescan())
        assert k["id"] not in kmap
        assert log.of(KernelRemoved, k["id"])
    finally:
        kmap.apply_settings(settings)


def test_shut_down_external_kernel_leaves_a_stale_file_that_can_be_cleaned(
    aio, kmap, launch, runtime
):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    path = Path(k["connection_file"])
    aio.run(kmap.rescan())
    aio.run(kmap.shutdown_kernel(k["id"]))
    assert process_gone(k["pid"])

    # the file is its application's: kernelmon leaves it, and it shows as stale
    aio.run(kmap.rescan())
    record = kmap.record(k["id"])
    assert record.origin == Origin.STALE
    assert record.execution_state == ExecutionState.DEAD
    assert record.pid is None
    assert kmap.history(k["id"]) is None
    with pytest.raises(KernelDead, match="only a connection file") as dead:
        aio.run(kmap.interrupt_kernel(k["id"]))
    assert kmap.kernel_model(k["id"])["refusals"]["interrupt"] in str(dead.value)
    with pytest.raises(NotRestartable):
        aio.run(kmap.restart_kernel(k["id"]))

    # cleaning it up removes the file, and it does not come back
    aio.run(kmap.shutdown_kernel(k["id"]))
    assert not path.exists()
    aio.run(kmap.rescan())
    assert k["id"] not in kmap


def test_a_vanished_connection_file_removes_the_kernel(aio, kmap, runtime):
    path = runtime / "kernel-vanishing.json"
    path.write_text(
        '{"transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2,'
        ' "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "k",'
        ' "signature_scheme": "hmac-sha256"}'
    )
    aio.run(kmap.rescan())
    assert kmap.record("vanishing").origin == Origin.STALE
    log = EventLog(kmap)
    path.unlink()
    aio.run(kmap.rescan())
    log.unsubscribe()
    assert "vanishing" not in kmap
    assert [e.reason for e in log.of(KernelRemoved, "vanishing")] == [
        "its connection file was removed"
    ]


def test_turning_discovery_off_and_on(aio, kmap, others):
    aio.run(kmap.rescan())
    ids = {k["id"] for k in others.kernels}
    assert ids <= set(kmap)
    settings = kmap.settings

    async def toggle() -> None:
        kmap.apply_settings(dataclasses.replace(settings, discover_kernels=False))
        await wait_until(lambda: not ids & set(kmap), what="external kernels forgotten")
        kmap.apply_settings(settings)
        await wait_until(lambda: ids <= set(kmap), what="external kernels found again")

    aio.run(toggle())
    assert all(psutil.pid_exists(k["pid"]) for k in others.kernels)


def test_memory_warnings_once_per_crossing(aio, kmap, others):
    aio.run(kmap.rescan())
    settings = kmap.settings
    log = EventLog(kmap)
    try:
        kmap.apply_settings(
            dataclasses.replace(settings, memory_warn_kernel_mb=1, memory_warn_total_mb=1)
        )
        aio.run(kmap.sampler.tick())
        aio.run(kmap.sampler.tick())
        per_kernel = [e for e in log.of(MemoryWarning) if not e.total]
        totals = [e for e in log.of(MemoryWarning) if e.total]
        warned = [e.kernel_id for e in per_kernel]
        for k in others.kernels:
            assert warned.count(k["id"]) == 1
        assert len(totals) == 1
        assert totals[0].kernel_id == ""
        assert totals[0].limit == MIB
        assert all(e.rss > e.limit == MIB for e in per_kernel)

        # under the limit again (here: a higher limit) re-arms the warning
        kmap.apply_settings(dataclasses.replace(settings, memory_warn_kernel_mb=100_000))
        aio.run(kmap.sampler.tick())
        log.clear()
        kmap.apply_settings(dataclasses.replace(settings, memory_warn_kernel_mb=1))
        aio.run(kmap.sampler.tick())
        assert {e.kernel_id for e in log.of(MemoryWarning)} >= {k["id"] for k in others.kernels}
    finally:
        log.unsubscribe()
        kmap.apply_settings(settings)


def test_job_finished_after_a_long_run_only(aio, kmap, others, frontends):
    k = others.kernel(0)
    aio.run(kmap.rescan())
    settings = kmap.settings
    log = EventLog(kmap)
    record = kmap.record(k["id"])
    front = None
    try:
        kmap.apply_settings(dataclasses.replace(settings, notify_job_seconds=1.0))

        async def run(code: str) -> None:
            nonlocal front
            front = front or frontends(k["connection_file"])
            msg_id = front.execute(code)
            await wait_until(lambda: front.reply(msg_id) is not None, what="the reply")
            await wait_until(lambda: record.execution_state == ExecutionState.IDLE, what="idle")

        aio.run(run("x = 1"))
        assert not log.of(JobFinished)
        aio.run(run("import time; time.sleep(1.3)"))
        jobs = log.of(JobFinished, k["id"])
        assert len(jobs) == 1
        assert jobs[0].seconds >= 1.0
    finally:
        log.unsubscribe()
        kmap.apply_settings(settings)


def test_failed_shutdown_of_another_applications_kernel_keeps_it(
    aio, kmap, others, frontends, monkeypatch
):
    """kernelmon never claims another application's kernel gone when it is not."""
    import kernelmon.core.machine.identity as identity

    k = others.kernel(1)
    aio.run(kmap.rescan())
    monkeypatch.setattr(identity, "_same_user", lambda proc: False)  # "another user's process"
    log = EventLog(kmap)
    try:
        with pytest.raises(KernelmonError, match=r"will not kill process .* another user"):
            aio.run(kmap.shutdown_kernel(k["id"], now=True))
    finally:
        log.unsubscribe()
    assert not process_gone(k["pid"])
    assert k["id"] in kmap
    assert not log.of(KernelRemoved, k["id"])
    assert [e.action for e in log.of(ActionFailed, k["id"])] == ["shutdown"]
    record = kmap.record(k["id"])

    async def still_watched() -> None:
        front = frontends(k["connection_file"])
        before = record.messages
        while record.messages == before:
            front.channels.send("shell", "kernel_info_request")
            await asyncio.sleep(0.1)

    aio.run(still_watched())


def test_scans_after_close_or_quick_toggles_change_nothing(aio, others, runtime, tmp_path):
    ids = {k["id"] for k in others.kernels}
    km = KernelMap(
        Settings(root_dir=str(tmp_path)), connection_dir=str(tmp_path), runtime_dirs=[str(runtime)]
    )
    settings = km.settings
    off = dataclasses.replace(settings, discover_kernels=False)

    async def run() -> None:
        await km.start_monitoring()
        assert ids <= set(km)
        # off and on again within one loop turn: discovery ends on, as last asked
        km.apply_settings(off)
        km.apply_settings(settings)
        await asyncio.gather(*km.discovery.background)
        assert km.discovery.watcher is not None
        assert km.discovery.watcher.scanned_at is not None
        assert ids <= set(km)
        # on, off, on, off: ends off, nothing found left behind
        for s in (settings, off, settings, off):
            km.apply_settings(s)
        await asyncio.gather(*km.discovery.background)
        assert km.discovery.watcher is None
        assert not ids & set(km)
        km.apply_settings(settings)
        await asyncio.gather(*km.discovery.background)
        assert ids <= set(km)
        # a scan still running when the map closes adds nothing afterwards
        scan = asyncio.get_running_loop().create_task(km.rescan())
        await km.close()
        await scan
        assert len(km) == 0

    aio.run(run())


def test_discovery_follows_the_sample_interval(aio, kmap):
    settings = kmap.settings

    async def run() -> None:
        kmap.apply_settings(dataclasses.replace(settings, sample_interval=3.5))
        await asyncio.gather(*kmap.discovery.background)
        assert kmap.discovery.watcher.interval == 3.5

    try:
        aio.run(run())
    finally:
        kmap.apply_settings(settings)


def test_an_orphan_busy_when_found_turns_idle_when_its_code_is_done(
    aio, kmap, launch, runtime, frontends
):
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    path = Path(k["connection_file"])

    async def start_job() -> None:
        front = frontends(str(path))
        while not front.iopub():
            front.channels.send("shell", "kernel_info_request")
            await asyncio.sleep(0.1)
        front.execute("import time; time.sleep(3)")
        await asyncio.sleep(0.3)

    aio.run(start_job())
    kill_application(launched)
    aio.run(kmap.rescan())
    record = kmap.record(k["id"])
    assert record.origin == Origin.ORPHAN
    aio.run(wait_until(lambda: record.execution_state == ExecutionState.BUSY, what="busy"))
    aio.run(
        wait_until(lambda: record.execution_state == ExecutionState.IDLE, timeout=15, what="idle")
    )
    aio.run(kmap.shutdown_kernel(k["id"]))
    assert process_gone(k["pid"])


def an_orphan(aio, kmap, launch, runtime) -> tuple[dict, Path]:
    """A kernel in the map whose application is gone: (its launcher's facts, its file)."""
    launched = moved(launch(1), runtime)
    k = launched.kernel()
    kill_application(launched)
    aio.run(kmap.rescan())
    assert kmap.record(k["id"]).origin == Origin.ORPHAN
    return k, Path(k["connection_file"])


def test_a_scan_during_an_orphans_shutdown_does_not_bring_it_back(
    aio, kmap, launch, runtime, monkeypatch
):
    import kernelmon.core.lifecycle as lifecycle

    k, path = an_orphan(aio, kmap, launch, runtime)
    remove = lifecycle.remove_connection_files

    def slow_remove(file: str) -> None:
        time.sleep(1.0)  # in a worker thread: scans run meanwhile
        remove(file)

    monkeypatch.setattr(lifecycle, "remove_connection_files", slow_remove)
    log = EventLog(kmap)

    async def run() -> None:
        shutdown = asyncio.get_running_loop().create_task(kmap.shutdown_kernel(k["id"]))
        await wait_until(lambda: process_gone(k["pid"]), what="the process gone")
        await kmap.rescan()  # sees the file with no process: stale
        await shutdown
        await kmap.rescan()

    try:
        aio.run(run())
    finally:
        log.unsubscribe()
    assert k["id"] not in kmap
    assert [e.reason for e in log.of(KernelRemoved, k["id"])] == ["shut down"]
    assert not path.exists()


def test_a_scan_that_ends_after_an_orphans_shutdown_does_not_bring_it_back(
    aio, kmap, launch, runtime
):
    """A scan that read the folder while an orphan was being shut down, and ends after the
    shutdown, adds no row for the file the shutdown deletes (it would show as a stale
    kernel until the next scan)."""
    k, path = an_orphan(aio, kmap, launch, runtime)
    os.kill(k["pid"], signal.SIGKILL)  # the kernel dies: its file is left, stale

    async def stale() -> None:
        await wait_until(lambda: process_gone(k["pid"]), what="the process gone")
        for _ in range(100):  # its exit is noticed, then a scan shows the file stale
            await kmap.rescan()
            if kmap.record(k["id"]).origin == Origin.STALE:
                break
            await asyncio.sleep(0.1)

    aio.run(stale())
    assert kmap.record(k["id"]).origin == Origin.STALE
    watcher = kmap.discovery.watcher
    assert watcher is not None
    prepare = watcher.prepare
    read = threading.Event()

    def slow_prepare(scan) -> None:  # in the scan's worker thread, after reading the folder
        read.set()
        time.sleep(1.0)
        if prepare is not None:
            prepare(scan)

    watcher.prepare = slow_prepare
    log = EventLog(kmap)

    async def run() -> None:
        scan = asyncio.get_running_loop().create_task(kmap.rescan())
        await wait_until(read.is_set, what="the folder read")
        await kmap.shutdown_kernel(k["id"])  # ends while the scan still runs
        await scan

    try:
        aio.run(run())
    finally:
        watcher.prepare = prepare
        log.unsubscribe()
    assert not path.exists()
    assert k["id"] not in kmap
    assert log.of(KernelAdded, k["id"]) == []


def test_a_scan_asked_for_outside_the_loop_is_not_dropped_unawaited(tmp_path):
    """qasync processes Qt events once more after its loop stopped: a kernel of another
    application that exits then (its watcher's callback) asks discovery to scan again with
    no loop running. That must do nothing, quietly: the scan's coroutine was made first and
    dropped unawaited when no task could be made for it (a RuntimeError in the callback, and
    a warning at garbage collection, which failed whichever test came next)."""
    import gc
    import warnings

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    km = KernelMap(Settings(root_dir=str(tmp_path)), runtime_dirs=[str(runtime)])
    with asyncio.Runner() as runner:
        runner.run(km.start_monitoring())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            km.discovery.rescan_soon()  # between two runs of the loop: none is running
            gc.collect()
        runner.run(km.close())
    assert not [w for w in caught if "never awaited" in str(w.message)]
