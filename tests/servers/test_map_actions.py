"""Actions on a server's kernels through the map, against a real jupyter_server: start (a kernel
spec of the server's), interrupt, restart, shut down, each through the REST API; the culler
leaves a server's kernels alone unless the user allows it for that server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.culler import cull_reason
from kernelmon.core.errors import KernelStartFailed
from kernelmon.core.events import (
    KernelEvent,
    KernelInterrupted,
    KernelRemoved,
    KernelRestarted,
    KernelStarted,
)
from kernelmon.core.records import ExecutionState, KernelRecord, Origin
from kernelmon.core.settings import Settings
from tests.servers.realservers import RealServer
from tests.servers.test_local_servers import kernel_ids
from tests.servers.test_map_servers import make_map


def test_start_interrupt_restart_shut_down_through_the_server(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    (jupyter_server.root / "work").mkdir(exist_ok=True)
    kmap = make_map(tmp_path, server_token_file=True)
    events: list[KernelEvent] = []
    kmap.subscribe(events.append)

    async def go() -> dict[str, Any]:
        sid = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        specs = await kmap.server_kernel_specs(sid)
        assert specs["python3"]["default"] is True
        with pytest.raises(KernelStartFailed, match="has no kernel spec 'nope'"):
            await kmap.start_kernel("nope", server_id=sid)
        kid = await kmap.start_kernel(path="work", server_id=sid)
        model = kmap.kernel_model(kid)
        assert model["server_id"] == sid
        assert model["origin"] == "server"
        assert kid in await asyncio.to_thread(kernel_ids, jupyter_server)
        await kmap.interrupt_kernel(kid)
        await kmap.restart_kernel(kid)
        assert kmap.record(kid).restarts == 1
        await kmap.poll_servers()
        after_polls = kmap.kernel_model(kid)
        await kmap.shutdown_kernel(kid)
        assert kid not in kmap
        assert kid not in await asyncio.to_thread(kernel_ids, jupyter_server)
        await kmap.poll_servers()  # the next poll does not bring it back
        assert kid not in kmap
        return after_polls

    try:
        model = aio.run(go())
    finally:
        aio.run(kmap.close())
    kid = model["id"]
    assert model["restarts"] == 1  # a poll keeps what kernelmon counted
    kinds = [type(e) for e in events if e.kernel_id == kid]
    for kind in (KernelStarted, KernelInterrupted, KernelRestarted, KernelRemoved):
        assert kind in kinds
    removed = [e for e in events if isinstance(e, KernelRemoved) and e.kernel_id == kid]
    assert [e.reason for e in removed] == ["shut down"]


def test_the_culler_acts_on_a_servers_kernels_only_when_allowed(
    aio: Any, jupyter_server: RealServer, tmp_path: Path
) -> None:
    kmap = make_map(tmp_path, server_token_file=True)

    async def go() -> tuple[bool, bool, list[bool]]:
        sid = await kmap.add_server(jupyter_server.url, jupyter_server.token)
        kid = await kmap.start_kernel(server_id=sid)
        record = kmap.record(kid)
        before = record.server_culling
        kmap.set_server_culling(sid, True)
        allowed = record.server_culling
        flags = [s["kernelmon_culling"] for s in kmap.list_servers()]
        # a kernel idle for long enough is culled only now, through the server
        kmap.apply_settings(
            Settings(
                root_dir=kmap.settings.root_dir,
                cull_idle_timeout=1,
                server_poll_interval=60,
                server_timeout=7,
            )
        )
        assert kmap.server_client(sid).timeout == 7  # new settings hold at once
        # idle past the timeout (the server says "starting" of a kernel started this way,
        # which its own culler takes for idle too): the culler asks the server again first,
        # and goes by the server's last activity
        culled: dict[str, str] = {}
        for _ in range(60):
            culled = await kmap.cull_kernels()
            if culled:
                break
            await asyncio.sleep(0.5)
        assert list(culled) == [kid]
        assert kid not in await asyncio.to_thread(kernel_ids, jupyter_server)
        return before, allowed, flags

    try:
        before, allowed, flags = aio.run(go())
    finally:
        aio.run(kmap.close())
    assert (before, allowed, flags) == (False, True, [True])


def test_cull_rules_for_a_servers_kernel() -> None:
    settings = Settings(cull_idle_timeout=10)
    record = KernelRecord(id="k", name="python3", origin=Origin.SERVER)
    record.execution_state = ExecutionState.IDLE
    now = record.last_activity + timedelta(hours=1)
    assert cull_reason(record, settings, now) is None
    record.server_culling = True
    assert cull_reason(record, settings, now) is not None
    record.execution_state = ExecutionState.UNKNOWN  # its server cannot be asked
    assert cull_reason(record, settings, now) is None
