"""``ExternalKernel``: watching, interrupting and shutting down kernels another process started."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime

import pytest

from kernelmon.core.backends.external import ExternalKernel, read_connection_file
from kernelmon.core.backends.factory import BackendFactory
from kernelmon.core.errors import KernelmonError, NotRestartable
from kernelmon.core.machine.discovery import PORT_NAMES, scan_runtime
from kernelmon.core.protocol.channels import heartbeat
from kernelmon.core.records import ExecutionState, KernelRecord, Origin
from tests.core.conftest import process_gone
from tests.waiting import wait_until


class Changes:
    def __init__(self) -> None:
        self.states: list[str] = []
        self.fields: set[str] = set()

    def __call__(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None:
        self.fields |= fields
        if "execution_state" in fields:
            self.states.append(str(record.execution_state))


@pytest.fixture(scope="module")
def kernels(launch):
    """Three kernels of one launcher: [0] for watching/interrupting, [1] and [2] to stop."""
    launched = launch(3)
    scan = scan_runtime([launched.runtime])
    return launched, [scan.kernels[k["connection_file"]] for k in launched.kernels]


@pytest.fixture
def externals(aio):
    made: list[ExternalKernel] = []

    def make(found, **kwargs) -> tuple[ExternalKernel, Changes]:
        changes = Changes()
        ext = ExternalKernel.from_found(found, on_change=changes, **kwargs)
        made.append(ext)
        return ext, changes

    yield make
    for ext in made:
        ext.close()


async def warm_up(ext: ExternalKernel, front) -> None:
    """Until both the watcher's and the frontend's IOPub subscriptions are live."""
    while ext.record.messages == 0 or not front.iopub():
        front.channels.send("shell", "kernel_info_request")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)  # the rest of that request's messages
    front.messages.clear()


def test_activity_is_watched_and_kernelmon_itself_causes_none(aio, kernels, externals, frontends):
    launched, found = kernels
    ext, changes = externals(found[0])
    record = ext.record
    assert record.origin is Origin.EXTERNAL
    assert record.pid == launched.kernels[0]["pid"]
    assert record.name == "python3"
    assert ext.can_restart is False
    assert record.execution_state == ExecutionState.UNKNOWN  # nothing asked, nothing known
    key = ext.connection_info["key"]
    assert key not in repr(ext)

    async def scenario() -> None:
        ext.attach()
        front = frontends(found[0].connection_file)
        await warm_up(ext, front)
        # kernelmon's own checks make the kernel publish nothing (no activity for its owner)
        assert await ext.is_alive()
        assert await heartbeat(ext.connection_info)
        await asyncio.sleep(0.5)
        assert front.iopub() == []
        before = record.last_activity
        changes.states.clear()
        msg_id = front.execute("import time; time.sleep(0.3)")
        await wait_until(lambda: front.reply(msg_id) is not None, what="execute_reply")
        await wait_until(lambda: record.execution_state == ExecutionState.IDLE, what="idle")
        assert changes.states[:2] == ["busy", "idle"]
        assert record.last_activity > before
        assert {"last_activity", "messages", "execution_state"} <= changes.fields

    aio.run(scenario())


@pytest.mark.parametrize("mode", ["signal", "message"])
def test_interrupt(aio, kernels, externals, frontends, monkeypatch, mode):
    _launched, found = kernels
    ext, _changes = externals(found[0], interrupt_mode=mode)
    if mode == "message":

        def no_signals(*args: object) -> None:
            raise AssertionError(f"a signal was sent: {args}")

        monkeypatch.setattr(os, "kill", no_signals)
        monkeypatch.setattr(os, "killpg", no_signals)

    async def scenario() -> None:
        ext.attach()
        front = frontends(found[0].connection_file)
        await warm_up(ext, front)
        msg_id = front.execute("import time; time.sleep(30)")
        await wait_until(lambda: ext.record.execution_state == ExecutionState.BUSY, what="busy")
        started = time.monotonic()
        await ext.interrupt()
        await wait_until(lambda: front.reply(msg_id) is not None, what="the reply")
        reply = front.reply(msg_id)
        assert reply is not None
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert time.monotonic() - started < 10
        await wait_until(lambda: ext.record.execution_state == ExecutionState.IDLE, what="idle")
        # a signal needs no control channel; a message does
        assert (ext._control is not None) == (mode == "message")

    aio.run(scenario())


def test_restart_is_refused(aio, kernels, externals):
    _launched, found = kernels
    ext, _changes = externals(found[0])
    with pytest.raises(NotRestartable) as refused:
        aio.run(ext.restart(10))
    assert "kernelmon did not start this kernel" in str(refused.value)
    assert str(refused.value) == ext.record.to_model()["refusals"]["restart"]
    assert not process_gone(found[0].pid)


def test_activity_times_come_from_the_factorys_clock(aio, kernels, frontends):
    """The activity an external kernel's watcher records is timed by the clock the backend
    factory hands out (the map's), not the real one."""
    _launched, found = kernels
    fake = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    ext = BackendFactory(clock=lambda: fake).external(found[0], on_change=Changes())

    async def scenario() -> None:
        ext.attach()
        front = frontends(found[0].connection_file)
        try:
            await warm_up(ext, front)
            msg_id = front.execute("1 + 1")
            await wait_until(lambda: front.reply(msg_id) is not None, what="execute_reply")
            await wait_until(lambda: ext.record.last_activity == fake, timeout=5, what="fake time")
        finally:
            ext.close()

    aio.run(scenario())


def test_shutdown_by_request(aio, kernels, externals, caplog):
    _launched, found = kernels
    # a long grace (15 s before SIGTERM), so that a loaded machine's slow exit is not taken
    # for a kernel that ignored the request
    ext, _changes = externals(found[1], shutdown_wait=30.0)

    async def scenario() -> None:
        ext.attach()
        await ext.shutdown()

    with caplog.at_level(logging.INFO, logger="kernelmon.core.machine.process"):
        aio.run(scenario())
    assert process_gone(found[1].pid)
    # it obeyed the shutdown_request: no signal was needed
    assert not [r for r in caplog.records if "terminating it" in r.getMessage()]
    assert ext.watcher is None
    assert ext.record.reason is None  # a shutdown kernelmon asked for is not a surprise exit


def test_shutdown_escalates_to_kill_for_a_kernel_that_does_not_listen(aio, kernels, externals):
    _launched, found = kernels
    pid = found[2].pid
    ext, _changes = externals(found[2], shutdown_wait=1.0)
    os.kill(pid, signal.SIGSTOP)  # it cannot answer, nor act on SIGTERM
    try:

        async def scenario() -> float:
            ext.attach()
            started = time.monotonic()
            await ext.shutdown()
            return time.monotonic() - started

        took = aio.run(scenario())
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGCONT)
    assert process_gone(pid)
    assert 0.9 < took < 5.0


def test_a_kernel_stopped_by_its_application_is_seen_dead(aio, launch, externals):
    launched = launch(1)
    found = scan_runtime([launched.runtime]).by_kernel_id()[launched.kernels[0]["id"]]
    exited: list[ExternalKernel] = []
    ext, changes = externals(found, on_exit=exited.append)

    async def scenario() -> None:
        ext.attach()
        assert await ext.is_alive()
        assert launched.proc.stdin is not None
        launched.proc.stdin.close()  # the launcher shuts its kernel down
        await wait_until(lambda: exited == [ext], timeout=20, what="the exit seen")

    aio.run(scenario())
    assert ext.record.execution_state == ExecutionState.DEAD
    assert "exited" in (ext.record.reason or "")
    assert "execution_state" in changes.fields
    assert not aio.run(ext.is_alive())
    with pytest.raises(KernelmonError, match="dead"):
        aio.run(ext.interrupt())


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_a_kernel_without_a_process(aio, tmp_path, externals):
    names = ("shell", "iopub", "stdin", "control", "hb")
    info = {f"{n}_port": p for n, p in zip(names, free_ports(5), strict=True)}
    info |= {"ip": "127.0.0.1", "transport": "tcp", "key": "k3y", "kernel_name": "python3"}
    (tmp_path / "kernel-ghost.json").write_text(json.dumps(info))
    found = scan_runtime([tmp_path]).by_kernel_id()["ghost"]
    assert found.origin is Origin.STALE
    ext, _changes = externals(found, reply_timeout=0.3)
    assert ext.record.origin is Origin.STALE
    assert ext.record.pid is None

    async def scenario() -> None:
        ext.attach()
        assert not await ext.is_alive()  # no heartbeat either
        with pytest.raises(KernelmonError, match="did not answer the interrupt request"):
            await ext.interrupt()
        with pytest.raises(KernelmonError, match="does not know its process"):
            await ext.shutdown()

    aio.run(scenario())


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a usable kernel connection file: not a JSON object"),
        ('{"ip": "127.0.0.1", "iopub_port": 1, "control_port": 2, "hb_port": 3}', "shell_port"),
        (json.dumps({"ip": "127.0.0.1", **{p: 1 for p in PORT_NAMES}}), "no signing"),
        (json.dumps({"ip": "*", "key": "k", **{p: 1 for p in PORT_NAMES}}), "wildcard"),
    ],
)
def test_unusable_connection_files_are_refused(tmp_path, content, why):
    path = tmp_path / "kernel-x.json"
    path.write_text(content)
    with pytest.raises(KernelmonError, match=why):
        read_connection_file(str(path))
    with pytest.raises(KernelmonError, match="cannot be read"):
        read_connection_file(str(tmp_path / "kernel-missing.json"))
