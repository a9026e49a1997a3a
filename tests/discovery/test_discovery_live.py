"""Discovery of real kernels started by another process (``launcher.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import psutil

from kernelmon.core.machine.discovery import Scan, scan_runtime
from kernelmon.core.machine.watcher import RuntimeWatcher
from kernelmon.core.records import Origin
from tests.core.conftest import process_gone


def test_a_running_kernel_is_found_and_external(launch):
    launched = launch(1)
    k = launched.kernel()
    scan = scan_runtime([launched.runtime])
    assert scan.problems == []
    found = scan.by_kernel_id()[k["id"]]
    assert found.connection_file == k["connection_file"]
    assert found.pid == k["pid"]
    assert found.pid_started == psutil.Process(k["pid"]).create_time()
    assert found.parent_pid == launched.proc.pid
    assert found.parent_alive
    assert found.parent_app == "python launcher.py"
    assert found.origin is Origin.EXTERNAL
    assert found.kernel_name == "python3"
    with open(k["connection_file"]) as f:
        info = json.load(f)
    assert found.transport == info["transport"]
    assert found.ip == info["ip"]
    assert found.ports["iopub_port"] == info["iopub_port"]
    assert info["key"] not in repr(found) + str(found) + found.summary() + repr(scan)
    # The same kernel, when kernelmon says it is its own (by id or by file).
    assert scan_runtime([launched.runtime], owned={k["id"]}).kernels[
        k["connection_file"]
    ].origin is (Origin.OWNED)
    owned = scan_runtime([launched.runtime], owned={k["connection_file"]})
    assert owned.kernels[k["connection_file"]].origin is Origin.OWNED


def test_watcher_follows_a_kernel_from_external_to_orphan_to_stale(aio, launch, tmp_path):
    launched = launch(1)
    k = launched.kernel()
    fake = tmp_path / "kernel-leftover.json"
    fake.write_text(json.dumps({**json.loads(Path(k["connection_file"]).read_text()), "key": "x"}))
    (tmp_path / "kernel-garbage.json").write_text("{")
    seen: list[Origin | None] = []
    watcher = RuntimeWatcher([launched.runtime, tmp_path], interval=0.1)

    def origin() -> Origin | None:
        found = watcher.scan.by_kernel_id().get(k["id"])
        return found.origin if found else None

    def scanned(scan: Scan) -> None:
        now = origin()
        if not seen or seen[-1] != now:
            seen.append(now)

    watcher.on_scanned = scanned

    async def rescan_until(wanted: Origin | None, what: str) -> None:
        async def scanned_as_wanted() -> bool:
            await watcher.rescan()
            return origin() is wanted

        deadline = time.monotonic() + 30
        while not await scanned_as_wanted():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def scenario() -> float:
        lag = 0.0

        async def measure_lag() -> None:
            nonlocal lag
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.005)
                lag = max(lag, time.monotonic() - t - 0.005)

        ticker = asyncio.get_running_loop().create_task(measure_lag())
        try:
            await rescan_until(Origin.EXTERNAL, "the kernel found")
            assert watcher.scan.by_kernel_id()["leftover"].origin is Origin.STALE
            assert [p.path for p in watcher.problems.values()] == [
                str(tmp_path / "kernel-garbage.json")
            ]
            # The application that started the kernel dies; the kernel lives on.
            launched.proc.send_signal(signal.SIGKILL)
            await rescan_until(Origin.ORPHAN, "the kernel orphaned")
            # a scan may read the kernel's parent just before the application's exit, and
            # its state just after: the next one sees the kernel's new parent
            await watcher.rescan()
            assert not process_gone(k["pid"])
            assert watcher.scan.by_kernel_id()[k["id"]].parent_pid != launched.proc.pid
            # A scan that never saw the application knows it too (reparented to a reaper).
            fresh = await asyncio.to_thread(scan_runtime, [launched.runtime])
            assert fresh.by_kernel_id()[k["id"]].origin is Origin.ORPHAN
            # The kernel dies: only its connection file is left.
            os.kill(k["pid"], signal.SIGKILL)
            await rescan_until(Origin.STALE, "the kernel stale")
            os.unlink(k["connection_file"])
            await rescan_until(None, "the file gone")
        finally:
            ticker.cancel()
        return lag

    lag = aio.run(scenario())
    assert seen[-4:] == [Origin.EXTERNAL, Origin.ORPHAN, Origin.STALE, None], seen
    assert lag < 0.2, f"the loop was blocked for {lag:.3f} s"


def test_a_failing_callback_does_not_stop_the_watcher(aio, tmp_path):
    seen: list[set[str]] = []

    def bad(scan: Scan) -> None:
        seen.append({k for k in scan.by_kernel_id() if k in ("a", "b")})  # not others' kernels
        raise RuntimeError("boom")

    watcher = RuntimeWatcher([tmp_path], interval=0.05, on_scanned=bad)
    (tmp_path / "kernel-a.json").write_text(
        json.dumps(
            {
                "ip": "127.0.0.1",
                "key": "k",
                **{f"{c}_port": 1 for c in ("shell", "iopub", "stdin", "control", "hb")},
            }
        )
    )

    async def scenario() -> None:
        await watcher.rescan()
        assert seen == [{"a"}]
        (tmp_path / "kernel-b.json").write_text((tmp_path / "kernel-a.json").read_text())
        await watcher.rescan()
        assert seen == [{"a"}, {"a", "b"}]

    aio.run(scenario())
