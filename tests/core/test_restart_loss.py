"""A restart is not a loss of output: the control reply that answers the restart's
shutdown_request goes to the client that asked (kernelmon's own kernel manager, or another
client), never to IOPub, so it leaves a gap in the old process's message numbers. The gap
used to be forgotten only when the new process's first message arrived: a restart that took
longer than ``iopub.GRACE`` (a loaded machine, a kernel that starts slowly) reported "1
message of the kernel's output never reached kernelmon". A real ipykernel, started through
a wrapper that waits before it starts it (a slow start, as from a heavy environment). An
interrupt by message is no loss either: its reply goes to jupyter_client's kernel manager."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from kernelmon.core.events import OutputLost
from kernelmon.core.protocol import iopub
from tests.core.conftest import EventLog, Frontend, watched_kernel
from tests.kernels import kernels_dir, write_spec
from tests.waiting import wait_until

#: Seconds the wrapper waits before starting the kernel: longer than ``iopub.GRACE``.
SLOW_START = 2.0


@pytest.fixture(scope="module")
def slow_spec() -> str:
    assert SLOW_START > iopub.GRACE
    code = (
        f"import time; time.sleep({SLOW_START}); "
        "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
    )
    return write_spec([sys.executable, "-c", code, "-f", "{connection_file}"], prefix="slow")


def assert_no_loss(fe: Frontend, lost: int, log: EventLog, *printed: str) -> None:
    log.unsubscribe()
    for text in printed:
        assert text in fe.printed()
    assert fe.told == []
    assert lost == 0
    assert log.of(OutputLost) == []


def test_a_slow_restart_reports_no_lost_output(aio, kmap, slow_spec):
    """Restarted by kernelmon, idle and then while a cell prints."""
    log = EventLog(kmap)

    async def go() -> tuple[Frontend, int]:
        fe = Frontend()
        watching = watched_kernel(kmap, "restarting", fe, slow_spec, settle=True)
        async with watching as (kid, conn, _feed):

            async def run(code: str, until: Callable[[str], bool], what: str) -> None:
                msg_id = conn.execute(code)
                await wait_until(lambda: until(msg_id), timeout=30, what=what)

            await kmap.restart_kernel(kid)
            await run("print('after restart 0')", fe.idle_for, "the idle")
            # a restart to stop a cell that prints
            code = "import time\nfor i in range(200): print(i, flush=True); time.sleep(0.02)"
            await run(code, fe.printed_for, "the cell's output")
            await kmap.restart_kernel(kid)
            await run("print('after restart 1')", fe.idle_for, "the idle")
        return fe, conn.lost

    fe, lost = aio.run(go())
    assert_no_loss(fe, lost, log, "after restart 0", "after restart 1")


def test_a_restart_by_another_client_reports_no_lost_output(aio, kmap, slow_spec):
    """Another client (jupyter_client in another process) asks the kernel to restart: its
    process exits and kernelmon's restarter starts a new one; the reply to that client is not
    kernelmon's to see, and is not a loss either."""
    log = EventLog(kmap)
    script = (
        "import sys, jupyter_client\n"
        "c = jupyter_client.BlockingKernelClient(connection_file=sys.argv[1])\n"
        "c.load_connection_file(); c.start_channels()\n"
        "c.shutdown(restart=True)\n"
        "c.get_control_msg(timeout=20)\n"
        "c.stop_channels()\n"
    )

    async def go() -> tuple[Frontend, int]:
        fe = Frontend()
        watching = watched_kernel(kmap, "watching", fe, slow_spec, settle=True)
        async with watching as (kid, conn, _feed):
            record = kmap.record(kid)
            restarts = record.restarts
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", script, record.connection_file],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            await wait_until(lambda: record.restarts > restarts, timeout=30, what="the restart")
            await wait_until(lambda: record.execution_state == "idle", timeout=30, what="idle")
            msg_id = conn.execute("print('after the restart')")
            await wait_until(lambda: fe.idle_for(msg_id), timeout=30, what="the idle")
        return fe, conn.lost

    fe, lost = aio.run(go())
    assert_no_loss(fe, lost, log, "after the restart")


@pytest.fixture(scope="module")
def message_interrupt_spec() -> str:
    """An ipykernel interrupted by a message (``interrupt_mode: message``): jupyter_client's
    kernel manager sends an interrupt_request on control and never reads the reply."""
    name = write_spec(
        [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], prefix="msgint"
    )
    path = kernels_dir() / name / "kernel.json"
    spec = json.loads(path.read_text())
    path.write_text(json.dumps({**spec, "interrupt_mode": "message"}))
    return name


def test_an_interrupt_by_message_reports_no_lost_output(aio, kmap, message_interrupt_spec):
    """kernelmon interrupts a running cell of a kernel whose spec asks for interrupts by
    message: the reply to that request goes to jupyter_client's kernel manager, which
    kernelmon never reads (it used to be counted: 1 message lost)."""
    log = EventLog(kmap)

    async def go() -> tuple[Frontend, int]:
        fe = Frontend()
        watching = watched_kernel(kmap, "interrupting", fe, message_interrupt_spec, settle=True)
        async with watching as (kid, conn, _feed):
            msg_id = conn.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
            await wait_until(lambda: fe.printed_for(msg_id), timeout=30, what="the cell")
            await kmap.interrupt_kernel(kid)
            await wait_until(lambda: fe.idle_for(msg_id), timeout=30, what="the interrupt")
            msg_id = conn.execute("print('after the interrupt')")
            await wait_until(lambda: fe.idle_for(msg_id), timeout=30, what="the idle")
        return fe, conn.lost

    fe, lost = aio.run(go())
    assert_no_loss(fe, lost, log, "sleeping", "after the interrupt")
