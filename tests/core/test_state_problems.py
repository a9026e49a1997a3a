"""An unwritable state folder: said as data (``problems``, ``StateProblem``), and no kernel
is ever started that could not be recorded (a crash would leave it running unmanaged)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernelmon.core import KernelMap, KernelStartFailed, Settings, keeper
from kernelmon.core.errors import RestartRefused
from kernelmon.core.events import KernelAdded, KernelEvent, StateProblem

from .conftest import EventLog


def kernel_processes() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "ipykernel" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    }


def new_map(root: Path, state: Path) -> KernelMap:
    return KernelMap(
        Settings(root_dir=str(root), kernel_info_timeout=30), shutdown_wait=2.0, state_dir=state
    )


def problems_told(log: EventLog) -> list[str]:
    return [e.text for e in log.of(StateProblem)]


def test_no_kernel_starts_while_the_state_folder_is_unwritable(aio, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the folder should be")
    kmap = new_map(tmp_path, state)
    log = EventLog(kmap)
    before = kernel_processes()
    assert aio.run(kmap.check_state_folder()) == kmap.problems
    [problem] = kmap.problems
    assert str(state) in problem
    assert "starts no kernels" in problem
    assert "KERNELMON_STATE_DIR" in problem
    with pytest.raises(KernelStartFailed) as failed:
        aio.run(kmap.start_kernel())
    assert str(failed.value) == problem
    assert len(kmap) == 0
    assert kernel_processes() <= before, "nothing was launched"
    assert problems_told(log) == [problem], "told once, not again for the same problem"
    # fixed: the next start works and the problem is over
    state.unlink()
    kid = aio.run(kmap.start_kernel())
    try:
        assert kid in kmap
        assert kmap.problems == []
        assert problems_told(log) == [problem, ""]
        assert list(state.glob("kernels-*.json"))
    finally:
        aio.run(kmap.close())


def test_a_kernel_whose_record_fails_during_its_start_is_stopped(aio, tmp_path: Path) -> None:
    """The folder breaks after the check, while the kernel starts: never left running
    unrecorded (its intent is recorded before its process is launched, so it is never
    launched at all)."""
    kmap = new_map(tmp_path, tmp_path / "state")
    launched: list[int] = []

    def break_the_record(event: KernelEvent) -> None:
        if isinstance(event, KernelAdded):
            kmap.state_file.path.mkdir()  # the record can no longer be renamed into place
        if event.kernel_id and event.kernel_id in kmap and kmap.record(event.kernel_id).pid:
            launched.append(kmap.record(event.kernel_id).pid or 0)

    kmap.subscribe(break_the_record)
    try:
        with pytest.raises(KernelStartFailed, match=r"cannot write|Could not write"):
            aio.run(kmap.start_kernel())
        assert len(kmap) == 0
        assert all(
            not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            for pid in launched
        ), "a kernel that could not be recorded runs"
        assert kmap.problems
    finally:
        aio.run(kmap.close())


def test_kernel_logs_fall_back_to_the_connection_folder(aio, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "kernel-logs").write_text("in the way")
    conn = tmp_path / "conn"
    kmap = KernelMap(
        Settings(root_dir=str(tmp_path), kernel_info_timeout=30),
        shutdown_wait=2.0,
        state_dir=state,
        connection_dir=str(conn),
    )
    log = EventLog(kmap)
    kid = aio.run(kmap.start_kernel())
    try:
        backend = kmap.backend(kid)
        assert Path(backend.log_file).parent == conn  # type: ignore[attr-defined]
        [note] = kmap.problems
        assert str(state / "kernel-logs") in note
        assert str(conn) in note
        assert problems_told(log) == [note]
        assert os.path.isfile(backend.log_file)  # type: ignore[attr-defined]
    finally:
        aio.run(kmap.close())


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):  # until the disk is full
        while True:
            os.write(fd, b"x" * 4096)
    os.close(fd)
    return filler


def test_a_tmpfs_stays_a_problem_until_the_records_are_written(
    aio, tmp_path: Path, tmpfs: Path
) -> None:
    """An empty probe file needs no space: the check writes the records themselves, and a
    failed save is a problem until a save succeeds. A restart is refused before the kernel
    is stopped (its new process could not be recorded first): the kernel runs on."""
    state = tmpfs / "state"
    state.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (state / "kernel-logs").symlink_to(logs)  # kernel logs never meet the full disk
    kmap = new_map(tmp_path, state)
    kid = aio.run(kmap.start_kernel())
    try:
        filler = fill(tmpfs)
        old_pid = kmap.record(kid).pid
        with pytest.raises(RestartRefused, match="No space left"):
            aio.run(kmap.restart_kernel(kid))
        assert kmap.record(kid).pid == old_pid
        assert kmap.record(kid).execution_state == "idle", "it runs on as it was"
        assert kmap.problems, "the state folder is full"
        assert aio.run(kmap.check_state_folder()), "still a problem: nothing can be written"
        before = kernel_processes()
        with pytest.raises(KernelStartFailed, match="No space left"):
            aio.run(kmap.start_kernel())
        assert kernel_processes() <= before, "refused before launching"
        filler.unlink()
        assert aio.run(kmap.check_state_folder()) == []
        [record] = json.loads(kmap.state_file.path.read_text())["kernels"]
        assert record["pid"] == old_pid, "the records were written again"
        aio.run(kmap.restart_kernel(kid))  # and now it can be restarted
        [record] = json.loads(kmap.state_file.path.read_text())["kernels"]
        assert record["pid"] == kmap.record(kid).pid != old_pid
    finally:
        aio.run(kmap.close())


def test_a_hung_state_folder_never_stops_the_loop(
    aio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check's write hangs (a network folder that stopped answering: injected, as a
    real one cannot be made here): the loop goes on, says so after the check's timeout,
    and here ends the hang itself; the folder then works again."""
    kmap = new_map(tmp_path, tmp_path / "state")
    release = threading.Event()
    mkstemp = tempfile.mkstemp

    def hanging(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if not release.wait(10):
            raise OSError(errno.ETIMEDOUT, "the folder hung")
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", hanging)
    monkeypatch.setattr(keeper, "STATE_CHECK_TIMEOUT", 0.5)

    async def main() -> list[str]:
        [problem] = await kmap.check_state_folder()
        assert "did not answer within 0.5 s" in problem
        release.set()
        return await kmap.check_state_folder()

    assert aio.run(main()) == []
