"""``LocalKernel`` (kernelmon's own kernels), on real kernels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

from kernelmon.core.backends.base import Action
from kernelmon.core.backends.factory import BackendFactory
from kernelmon.core.errors import ActionRefused, NotRestartable
from kernelmon.core.records import KernelRecord
from tests.core.conftest import process_gone
from tests.waiting import wait_until


def test_a_restart_asked_while_the_kernel_shuts_down_launches_nothing(aio, kmap):
    """A restart that waits for a shutdown in progress must not launch a process after it:
    the map forgets the kernel once it is shut down, so that process would run on, kept by
    nobody. It is refused, with the sentence the model shows."""
    kid = aio.run(kmap.start_kernel())
    backend = kmap.backend(kid)
    first_pid = kmap.record(kid).pid

    async def go() -> None:
        stopping = asyncio.ensure_future(backend.shutdown())
        await asyncio.sleep(0)  # the shutdown has begun (and holds the kernel)
        with pytest.raises(NotRestartable) as refused:
            await backend.restart(10.0)
        assert str(refused.value) == backend.refusal(Action.RESTART)
        assert backend.refusals()["restart"] == str(refused.value)
        await stopping
        assert kmap.record(kid).pid == first_pid  # nothing was launched
        assert process_gone(first_pid)
        assert not await backend.is_alive()
        await kmap.shutdown_kernel(kid)

    aio.run(go())


def test_activity_times_come_from_the_factorys_clock(aio, tmp_path):
    """Every activity time a kernel's watcher records comes from the clock the backend
    factory hands out (the map's, which the culler compares them with), not the real one.
    A real kernel, a real jupyter_client frontend running code in it."""
    fake = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    changes: list[set[str]] = []
    record = KernelRecord(id="clock-kernel", name=NATIVE_KERNEL_NAME)
    backend = BackendFactory(clock=lambda: fake).local(
        record,
        kernel_spec_manager=KernelSpecManager(),
        connection_dir=str(tmp_path),
        on_change=lambda r, fields, now: changes.append(fields),
        emit=lambda event: None,
    )

    async def go() -> None:
        await backend.start(str(tmp_path), 30.0)
        client = AsyncKernelClient(connection_file=backend.connection_file)
        client.load_connection_file()
        client.start_channels()
        try:
            await client.execute_interactive("1 + 1", timeout=30)
            await wait_until(lambda: record.last_activity == fake, timeout=5, what="the fake time")
        finally:
            client.stop_channels()
            await backend.shutdown()
            backend.close()
            backend.remove_log()
        assert process_gone(record.pid)

    aio.run(go())


def test_an_interrupt_during_a_restart_is_refused_with_the_models_sentence(aio, kmap):
    """While a kernel restarts there is nothing to interrupt: the action says so, in the
    sentence the model shows, instead of signalling a process on its way out."""
    kid = aio.run(kmap.start_kernel())
    backend = kmap.backend(kid)

    async def go() -> None:
        restarting = asyncio.ensure_future(kmap.restart_kernel(kid))
        await wait_until(lambda: kmap.record(kid).execution_state == "restarting")
        shown = kmap.kernel_model(kid)["refusals"]["interrupt"]
        with pytest.raises(ActionRefused) as refused:
            await backend.interrupt()
        assert str(refused.value) == shown
        assert "restarting" in shown
        await restarting
        await backend.interrupt()  # running again: it can be interrupted
        await kmap.shutdown_kernel(kid)

    aio.run(go())
