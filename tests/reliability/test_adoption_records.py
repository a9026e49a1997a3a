"""Adoption never trusts a record: forged, corrupt and damaged state records and connection
files, kernels of another live kernelmon, two adoptions at once, a parent that never reaps.

Each module fixture crashes one kernelmon process (kill -9) and doctors what it left; the
tests then look at what one ``restore()`` made of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kernelmon.core import KernelMap, Settings
from tests.core.conftest import process_gone
from tests.reliability.children import (
    connection_file,
    crashed_kernelmon,
    edit_records,
    first_line,
    kill_kernelmon,
    spawn_kernelmon,
    state_file_of,
)
from tests.waiting import wait_until


@pytest.fixture
def state_dir():
    return Path(os.environ["KERNELMON_STATE_DIR"])


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def model_state(km: KernelMap, kid: str) -> str:
    return km.kernel_model(kid)["execution_state"]


@pytest.fixture(scope="module")
def doctored(aio, tmp_path_factory):
    """Seven kernels of a crashed kernelmon, each record or file doctored in one way, plus
    two forged records naming files that are no kernel's; then one restore()."""
    state_dir = Path(os.environ["KERNELMON_STATE_DIR"])
    root = tmp_path_factory.mktemp("doctored")
    for i in range(7):
        (root / f"k{i}").mkdir()
    kernels = crashed_kernelmon(root, 7)
    ids = list(kernels)  # started as k0 .. k6, in this order
    path = state_file_of(state_dir, ids[0])
    # 3: a forged process group (an unrelated process's), and one of the wrong type
    decoy = subprocess.Popen(["sleep", "600"], start_new_session=True)
    # 4: the kernel died and a viewer of its file got the recorded PID; no start time
    os.kill(kernels[ids[6]], signal.SIGKILL)
    aio.run(wait_until(lambda: process_gone(kernels[ids[6]])))
    viewer = subprocess.Popen(["tail", "-f", str(connection_file(ids[6]))])
    # 6: forged records naming files that belong to no kernel
    docs = root / "docs"
    docs.mkdir()
    thesis = docs / "thesis.tex"
    thesis.write_text("\\documentclass{book}")
    notes = docs / "notes-1"
    notes.write_text("my notes")
    forged_file = connection_file("forged-ipc")
    ports = {f"{n}_port": 1 for n in ("shell", "iopub", "stdin", "control", "hb")}
    forged_file.write_text(
        json.dumps({"transport": "ipc", "ip": str(docs / "notes"), "key": "k", **ports})
    )
    edit_records(
        path,
        {
            ids[0]: {"pgid": decoy.pid},
            # 5: a wall-clock step of 1.5 s moved the recorded create time
            ids[1]: {"pgid": "x"},
            # 11.7: optional fields missing or of the wrong type
            ids[2]: {
                "kernel_name": ...,
                "display_name": 7,
                "started": 5,
                "cwd": [],
                "restarts": "x",
                "pid_started": "x",
            },
            ids[6]: {"pid": viewer.pid, "pid_started": ..., "pid_started_ticks": ...},
        },
    )
    data = json.loads(path.read_text())
    for record in data["kernels"]:
        if record["id"] == ids[1]:
            record["pid_started"] = _create_time(kernels[ids[1]]) + 1.5
    gone = dead_pid()
    data["kernels"] += [
        {"id": "forged-tex", "kernel_name": "python3", "connection_file": str(thesis), "pid": gone},
        {
            "id": "forged-ipc",
            "kernel_name": "python3",
            "connection_file": str(forged_file),
            "pid": gone,
        },
    ]
    path.write_text(json.dumps(data))
    # 11.6: a truncated connection file, an empty key, fields of the wrong type
    for kid, change in (
        (ids[3], None),
        (ids[4], {"key": ""}),
        (ids[5], {"shell_port": "x", "signature_scheme": 5}),
    ):
        file = connection_file(kid)
        text = file.read_text()
        if change is None:
            file.write_text(text[: len(text) // 2])
        else:
            file.write_text(json.dumps({**json.loads(text), **change}))
    km = KernelMap(Settings(root_dir=str(root), kernel_info_timeout=5), shutdown_wait=2.0)
    adopted = aio.run(km.restore(), timeout=120)
    yield km, ids, kernels, adopted, decoy, viewer, (thesis, notes)
    aio.run(km.close())
    for proc in (decoy, viewer):
        proc.kill()
        proc.wait()
    for pid in kernels.values():
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def _create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def test_a_forged_process_group_is_never_signalled(aio, doctored):
    km, ids, kernels, adopted, decoy, _viewer, _files = doctored
    kid = ids[0]
    assert kid in adopted
    aio.run(km.interrupt_kernel(kid))
    time.sleep(0.3)
    assert decoy.poll() is None, "interrupting the kernel signalled another process group"
    assert not process_gone(kernels[kid])


def test_a_pgid_of_the_wrong_type_and_a_clock_step_change_nothing(aio, doctored):
    km, ids, kernels, adopted, *_ = doctored
    kid = ids[1]
    assert kid in adopted, "a 1.5 s clock step made a live kernel look gone"
    assert km.kernel_model(kid)["pid"] == kernels[kid]
    aio.run(km.interrupt_kernel(kid))
    aio.run(km.shutdown_kernel(kid))
    assert process_gone(kernels[kid])
    assert kid not in json.dumps(_our_records(km))


def test_a_record_with_bad_optional_fields_is_adopted_with_what_is_known(aio, doctored):
    km, ids, kernels, adopted, *_ = doctored
    kid = ids[2]
    assert kid in adopted
    model = km.kernel_model(kid)
    assert model["pid"] == kernels[kid]
    assert model["name"] == "python3"  # from its connection file
    assert model["restarts"] == 0
    out: list[str] = []

    async def run():
        conn = await km.connect(
            kid, "check", lambda ch, m: out.append(m["content"].get("text", ""))
        )
        conn.execute("print(6 * 7)")
        await wait_until(lambda: "42" in "".join(out), what="output")
        await conn.close()

    aio.run(run())


@pytest.mark.parametrize(("index", "said"), [(3, "JSON"), (4, "empty key"), (5, "shell_port")])
def test_an_unusable_connection_file_is_a_problem_that_can_be_killed(aio, doctored, index, said):
    km, ids, kernels, adopted, *_ = doctored
    kid = ids[index]
    assert kid not in adopted
    model = km.kernel_model(kid)
    assert model["execution_state"] == "problem"
    assert said in model["reason"]
    assert model["pid"] == kernels[kid]
    assert not process_gone(kernels[kid])
    assert kid in json.dumps(_our_records(km)), "its record was dropped before it was resolved"
    # the app offers to shut it down (kill it), and nothing it cannot do
    from kernelmon.ui.refusals import allows

    assert allows(model, "shutdown")
    assert not allows(model, "interrupt")
    assert not allows(model, "restart")
    # the kill action: proves the process is the kernel, then kills it
    aio.run(km.shutdown_kernel(kid), timeout=30)
    assert process_gone(kernels[kid])
    assert kid not in km
    assert kid not in json.dumps(_our_records(km))


def test_files_a_forged_record_names_are_never_deleted(doctored):
    *_, (thesis, notes) = doctored
    assert thesis.read_text() == "\\documentclass{book}"
    assert notes.read_text() == "my notes"


def test_a_viewer_with_the_recorded_pid_is_not_adopted_nor_killed_on_quit(aio, doctored):
    km, ids, _kernels, adopted, decoy, viewer, _files = doctored
    assert ids[6] not in adopted
    assert ids[6] not in km
    aio.run(km.shutdown_all(), timeout=60)
    assert viewer.poll() is None, "quitting kernelmon killed a viewer of a kernel's file"
    assert decoy.poll() is None


def _our_records(km: KernelMap) -> list[dict]:
    path = km.state_file.path
    return json.loads(path.read_text())["kernels"] if path.exists() else []


def test_corrupt_state_files_never_stop_the_others(aio, tmp_path, state_dir):
    """Hostile state files sorted before a good one: the good one is still adopted (here a
    record of a gone kernel: its file is consumed, its connection file cleaned up)."""
    bad = {
        "kernels-0-a.json": json.dumps({"version": 1, "owner": None, "kernels": [7, None]}),
        "kernels-0-b.json": json.dumps([1, 2, 3]),
        "kernels-0-c.json": json.dumps({"owner": {"pid": -1}, "kernels": [{"pid": -1}]}),
        "kernels-0-d.json": "[" * 100_000 + "]" * 100_000,
        "kernels-0-e.json": json.dumps({"owner": {"pid": True}, "kernels": {"a": 1}}),
    }
    for name, text in bad.items():
        (state_dir / name).write_text(text)
    conn = connection_file("gone-kernel")
    ports = {f"{n}_port": i + 1 for i, n in enumerate(("shell", "iopub", "stdin", "control", "hb"))}
    conn.write_text(json.dumps({"transport": "tcp", "ip": "127.0.0.1", "key": "k", **ports}))
    good = state_dir / "kernels-1-good.json"
    good.write_text(
        json.dumps(
            {
                "version": 1,
                "owner": {"pid": None},
                "kernels": [{"id": "gone-kernel", "connection_file": str(conn), "pid": dead_pid()}],
            }
        )
    )
    km = KernelMap(Settings(root_dir=str(tmp_path)))
    try:
        assert aio.run(km.restore()) == []
        assert not good.exists(), "the good state file was not reached"
        assert not conn.exists()
        unreadable = {os.path.basename(p) for p in km.state_file.problems}
        assert {"kernels-0-b.json", "kernels-0-d.json"} <= unreadable
    finally:
        for name in bad:
            (state_dir / name).unlink(missing_ok=True)


def test_two_restores_at_once_adopt_each_kernel_once(aio, tmp_path):
    (tmp_path / "k0").mkdir()
    [(kid, pid)] = crashed_kernelmon(tmp_path, 1).items()
    first = KernelMap(Settings(root_dir=str(tmp_path)), shutdown_wait=2.0)
    second = KernelMap(Settings(root_dir=str(tmp_path)), shutdown_wait=2.0, restart_poll=0.2)

    async def both():
        return await asyncio.gather(first.restore(), second.restore())

    try:
        a, b = aio.run(both(), timeout=60)
        assert sorted(a + b) == [kid], f"adopted by both: {a} and {b}"
        owner, other = (first, second) if a else (second, first)
        aio.run(owner.shutdown_kernel(kid))
        aio.sleep(1.0)  # the other's auto-restarter would have brought it back by now
        assert process_gone(pid)
        assert kid not in other
    finally:
        aio.run(first.close())
        aio.run(second.close())


def test_kernels_of_another_live_kernelmon_are_its_own_not_orphans(aio, tmp_path):
    """A kernelmon that adopted a crashed run's kernels is their owner (they are orphans
    in the process table: their parent is gone): another kernelmon lists them as that
    kernelmon's, and neither adopts nor culls them, even after a step of the wall clock."""
    (tmp_path / "k0").mkdir()
    [(kid, pid)] = crashed_kernelmon(tmp_path, 1).items()
    other = spawn_kernelmon(tmp_path, "--restore")
    km = KernelMap(
        Settings(root_dir=str(tmp_path), cull_orphans=True, cull_idle_timeout=1, cull_interval=0.5),
        runtime_dirs=[os.environ["JUPYTER_RUNTIME_DIR"]],
    )
    try:
        assert first_line(other) == [kid]
        # a wall-clock step of 1.5 s moved the other kernelmon's create time: still alive
        path = state_file_of(Path(os.environ["KERNELMON_STATE_DIR"]), kid)
        data = json.loads(path.read_text())
        assert data["owner"]["pid"] == other.pid
        data["owner"]["started"] += 1.5
        path.write_text(json.dumps(data))
        assert aio.run(km.restore()) == []

        async def watch():
            await km.start_monitoring()
            await wait_until(lambda: kid in km, what="the other kernelmon's kernel found")
            await asyncio.sleep(2.0)  # several cull passes

        aio.run(watch(), timeout=30)
        model = km.kernel_model(kid)
        assert model["origin"] == "external"
        assert model["parent_pid"] == other.pid
        assert model["parent_app"] == "kernelmon"
        assert not process_gone(pid)
    finally:
        aio.run(km.close())
        kill_kernelmon(other)
        os.kill(pid, signal.SIGKILL)


def test_shutting_down_a_kernel_whose_parent_never_reaps_it_never_blocks(aio, tmp_path):
    """The kernel's parent (a kernelmon that left it running) lives on and never reaps it:
    once it exits it stays a zombie. Its shutdown must not wait for the zombie to go."""
    parent = spawn_kernelmon(tmp_path, "1", "--release")
    [(kid, pid)] = first_line(parent).items()
    km = KernelMap(Settings(root_dir=str(tmp_path)), shutdown_wait=2.0)
    # if the loop blocks for good, end it by letting init reap the zombie: kill the parent
    watchdog = threading.Timer(15.0, parent.kill)
    watchdog.start()
    lags: list[float] = []

    async def go():
        assert await km.restore() == [kid]

        async def ticker():
            loop = asyncio.get_running_loop()
            while True:
                t = loop.time()
                await asyncio.sleep(0.02)
                lags.append(loop.time() - t - 0.02)

        tick = asyncio.ensure_future(ticker())
        await km.shutdown_kernel(kid)
        await asyncio.sleep(0.1)
        tick.cancel()

    try:
        aio.run(go(), timeout=60)
    finally:
        watchdog.cancel()
        kill_kernelmon(parent)
        aio.run(km.close())
    assert max(lags) < 2.0, f"the loop stalled for {max(lags):.1f} s"
    assert process_gone(pid)
