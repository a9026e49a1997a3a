"""Execution state and activity as Jupyter defines them, with a real ipykernel and a real
jupyter_client client next to kernelmon (another frontend of the same kernel)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from jupyter_client import AsyncKernelClient

from tests.waiting import wait_until


@pytest.fixture(scope="module")
def kid(aio, kmap):
    return aio.run(kmap.start_kernel())


@pytest.fixture
def client(aio, kmap, kid):
    kc = AsyncKernelClient(connection_file=kmap.backend(kid).connection_file)
    kc.load_connection_file()
    kc.start_channels()
    yield kc
    kc.stop_channels()


@pytest.fixture(autouse=True)
def default_settings(kmap):
    saved = kmap.settings
    yield
    kmap.apply_settings(saved)


async def control(kc: AsyncKernelClient, msg_type: str) -> dict:
    """A request on the control channel, as another client sends it; returns the reply."""
    msg = kc.session.msg(msg_type)
    kc.control_channel.send(msg)
    while True:
        reply = await kc.control_channel.get_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


def test_a_client_connecting_is_not_activity(aio, kmap, kid, client):
    """jupyter_server does not count kernel_info (a client's nudge) or usage requests as
    activity; neither does kernelmon, so the two cull alike."""
    record = kmap.record(kid)
    aio.sleep(0.3)
    before, seen = record.last_activity, record.messages

    async def connect():
        await client.wait_for_ready(timeout=10)  # kernel_info_request on shell
        await control(client, "kernel_info_request")
        await control(client, "usage_request")
        # each request's busy and idle
        await wait_until(lambda: record.messages >= seen + 6, what="the statuses")

    aio.run(connect())
    aio.sleep(0.1)
    assert record.last_activity == before
    assert record.execution_state == "idle"

    async def run_code():
        client.execute("1 + 1")
        await wait_until(lambda: record.last_activity > before, what="activity")

    aio.run(run_code())


def test_control_requests_during_a_cell_keep_it_busy_and_uncullable(aio, kmap, kid, client):
    record = kmap.record(kid)
    kmap.apply_settings(
        dataclasses.replace(kmap.settings, cull_idle_timeout=1.0, cull_interval=0.2)
    )

    async def cell_with_control_requests():
        msg_id = client.execute("import time; time.sleep(3)")
        await wait_until(lambda: record.execution_state == "busy", what="busy")
        for msg_type in ("kernel_info_request", "usage_request"):
            reply = await control(client, msg_type)
            assert reply["msg_type"] == msg_type.replace("request", "reply")
        # idle timeout and several cull passes go by while the cell runs
        for _ in range(20):
            await asyncio.sleep(0.1)
            assert kid in kmap
            assert record.execution_state == "busy"
        while True:
            reply = await client.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        kmap.apply_settings(dataclasses.replace(kmap.settings, cull_idle_timeout=0))
        await wait_until(lambda: record.execution_state == "idle", what="idle")

    aio.run(cell_with_control_requests())
    assert kid in kmap
