"""kill -9 kernelmon, start it again: its kernels come back, working, none started twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import KernelAdopted
from tests.core.conftest import EventLog, process_gone
from tests.reliability.children import crashed_kernelmon
from tests.waiting import wait_until


def python_kernel_processes() -> set[int]:
    found = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ipykernel_launcher" in cmd and os.environ["JUPYTER_RUNTIME_DIR"] in cmd:
            found.add(p.info["pid"])
    return found


@pytest.fixture
def state_dir():
    return Path(os.environ["KERNELMON_STATE_DIR"])


def test_kernels_survive_a_crash_and_are_adopted(aio, tmp_path, state_dir):
    root = tmp_path / "root"
    for i in range(2):
        (root / f"k{i}").mkdir(parents=True)
    kernels = crashed_kernelmon(root, 2)
    # they outlived their kernelmon
    assert all(not process_gone(pid) for pid in kernels.values())
    before = python_kernel_processes()

    km = KernelMap(Settings(root_dir=str(root)))
    log = EventLog(km)

    async def go():
        adopted = await km.restore()
        assert sorted(adopted) == sorted(kernels)
        for i, (kid, pid) in enumerate(kernels.items()):  # started as k0, k1 in this order
            model = km.kernel_model(kid)
            assert model["pid"] == pid  # the same process, not a new one
            assert model["execution_state"] == "idle"
            assert model["cwd"] == str(root / f"k{i}")
        # working: run code, watch it, interrupt, restart, shut down
        kid = adopted[0]
        out: list[str] = []

        def on_message(channel, msg):
            if msg["header"]["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        conn = await km.connect(kid, "after-crash", on_message)
        conn.execute("import os; print(os.getcwd())")
        await wait_until(lambda: out, what="output from an adopted kernel")
        # that job is over (its output may arrive before its idle status) before the next
        await wait_until(lambda: km.kernel_model(kid)["execution_state"] == "idle")
        conn.execute("import time; time.sleep(30)")
        await wait_until(lambda: km.kernel_model(kid)["execution_state"] == "busy")
        await km.interrupt_kernel(kid)
        await wait_until(lambda: km.kernel_model(kid)["execution_state"] == "idle")
        await conn.close()
        await km.restart_kernel(kid)
        assert km.kernel_model(kid)["pid"] != kernels[kid]
        assert process_gone(kernels[kid])
        new_pid = km.kernel_model(kid)["pid"]
        await km.shutdown_all()
        return out, new_pid

    out, new_pid = aio.run(go(), timeout=90)
    log.unsubscribe()
    assert out[0].strip() == str(root / "k0")
    assert {e.kernel_id for e in log.of(KernelAdopted)} == set(kernels)
    assert all(e.answered for e in log.of(KernelAdopted))
    # nothing was started twice: the only new kernel process was the restart's
    assert python_kernel_processes() - before <= {new_pid}
    assert all(process_gone(pid) for pid in [*kernels.values(), new_pid])
    # the crashed run's state file is gone, and so is ours now that nothing runs
    assert list(state_dir.glob("kernels-*.json")) == []


def test_records_of_gone_kernels_are_cleaned_up(aio, tmp_path, state_dir):
    root = tmp_path / "root"
    for i in range(1):
        (root / f"k{i}").mkdir(parents=True)
    kernels = crashed_kernelmon(root, 1)
    [(kid, pid)] = kernels.items()
    conn_file = Path(os.environ["JUPYTER_RUNTIME_DIR"]) / f"kernel-{kid}.json"
    assert conn_file.exists()
    os.kill(pid, signal.SIGKILL)
    aio.run(wait_until(lambda: process_gone(pid)))
    km = KernelMap(Settings(root_dir=str(root)))
    assert aio.run(km.restore()) == []
    assert len(km) == 0
    assert not conn_file.exists()
    assert list(state_dir.glob("kernels-*.json")) == []


def test_alive_but_silent_kernel_is_unresponsive_and_can_be_killed(aio, tmp_path, state_dir):
    root = tmp_path / "root"
    (root / "k0").mkdir(parents=True)
    [(kid, pid)] = crashed_kernelmon(root, 1).items()
    os.kill(pid, signal.SIGSTOP)  # alive, but it will not answer
    km = KernelMap(Settings(root_dir=str(root), kernel_info_timeout=1), shutdown_wait=1.0)
    try:
        assert aio.run(km.restore()) == [kid]
        model = km.kernel_model(kid)
        assert model["execution_state"] == "unresponsive"
        assert "did not answer" in model["reason"]
        aio.run(km.shutdown_kernel(kid))
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert process_gone(pid)


def test_kernel_running_code_is_adopted_busy_then_idle(aio, tmp_path, state_dir):
    """A kernel busy with code cannot answer kernel_info, but its heartbeat echoes: it is
    shown busy (not unresponsive) and idle once its code is done."""
    root = tmp_path / "root"
    (root / "k0").mkdir(parents=True)
    [(kid, pid)] = crashed_kernelmon(root, 1, busy=4).items()
    km = KernelMap(Settings(root_dir=str(root), kernel_info_timeout=1), shutdown_wait=1.0)
    log = EventLog(km)
    try:
        assert aio.run(km.restore()) == [kid]
        assert km.kernel_model(kid)["execution_state"] == "busy"
        assert km.kernel_model(kid)["reason"] is None
        assert [e.answered for e in log.of(KernelAdopted)] == [True]
        aio.run(
            wait_until(
                lambda: km.kernel_model(kid)["execution_state"] == "idle",
                timeout=15,
                what="idle after its code finished",
            ),
            timeout=20,
        )
    finally:
        log.unsubscribe()
        aio.run(km.close())
    assert process_gone(pid)


def test_a_running_kernelmon_keeps_its_kernels(aio, kmap, tmp_path):
    """restore() leaves the kernels of a kernelmon that still runs alone."""
    kid = aio.run(kmap.start_kernel())
    other = KernelMap(Settings(root_dir=str(tmp_path)))
    assert aio.run(other.restore()) == []
    assert len(other) == 0
    assert kmap.kernel_model(kid)["execution_state"] == "idle"
    aio.run(kmap.shutdown_kernel(kid))


def test_state_file_is_private_and_atomic(aio, kmap, state_dir):
    kid = aio.run(kmap.start_kernel())
    path = kmap.state_file.path
    assert path.parent == state_dir
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(state_dir).st_mode & 0o777 == 0o700
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["owner"]["pid"] == os.getpid()
    [record] = [k for k in data["kernels"] if k["id"] == kid]
    assert record["pid"] == kmap.kernel_model(kid)["pid"]
    assert record["connection_file"].endswith(f"kernel-{kid}.json")
    assert {"kernel_name", "pgid", "cwd", "started"} <= set(record)
    assert [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")] == []  # no temp files
    aio.run(kmap.shutdown_kernel(kid))
    assert not path.exists() or kid not in path.read_text()


def test_kernels_left_running_on_close_are_adopted_next_time(aio, tmp_path):
    import gc

    km = KernelMap(Settings(root_dir=str(tmp_path)))
    kid = aio.run(km.start_kernel())
    pid = km.kernel_model(kid)["pid"]
    conn_file = km.backend(kid).connection_file
    aio.run(km.close(shutdown_kernels=False))
    assert len(km) == 0
    del km
    gc.collect()  # jupyter_client's KernelManager.__del__ must not delete the file
    assert os.path.exists(conn_file)
    assert not process_gone(pid)
    nxt = KernelMap(Settings(root_dir=str(tmp_path)))
    try:
        assert aio.run(nxt.restore()) == [kid]
        assert nxt.kernel_model(kid)["pid"] == pid
        assert nxt.kernel_model(kid)["execution_state"] == "idle"
    finally:
        aio.run(nxt.close())
    assert process_gone(pid)
    assert not os.path.exists(conn_file)
