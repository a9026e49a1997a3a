"""Start, model, activity, interrupt, restart and shutdown with real ipykernel kernels."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from kernelmon.core import (
    KernelMap,
    KernelNotFound,
    KernelSpecNotFound,
    PathOutsideRoot,
    Settings,
)
from kernelmon.core.events import (
    KernelAdded,
    KernelChanged,
    KernelInterrupted,
    KernelRemoved,
    KernelRestarted,
    KernelShutDown,
    KernelStarted,
)
from tests.waiting import wait_until

from .conftest import EventLog, goes_busy_then_idle, process_gone


@pytest.fixture(scope="module")
def kid(aio, kmap):
    """One kernel shared by the tests that do not stop it."""
    return aio.run(kmap.start_kernel(path="project"))


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_created_outside_a_loop_without_starting_anything(root):
    km = KernelMap(Settings(root_dir=str(root)))
    assert len(km) == 0
    assert km.list_kernels() == []
    assert km.culling is False


def test_model_of_a_started_kernel(kmap, kid, root):
    model = kmap.kernel_model(kid)
    assert model["id"] == kid
    assert model["name"] == "python3"
    assert model["execution_state"] == "idle"
    assert model["connections"] == 0
    assert model["cwd"] == str(root / "project")
    assert model["origin"] == "owned"
    assert model["restarts"] == 0
    assert isinstance(model["pid"], int)
    assert not process_gone(model["pid"])
    assert model["last_activity"].endswith("Z")
    assert parse(model["last_activity"]).tzinfo is not None
    assert kid in kmap
    assert kid in [m["id"] for m in kmap.list_kernels()]
    # how it is reached, known from its start (no scan of the runtime folder needed)
    assert model["connection_file"].endswith(f"kernel-{kid}.json")
    assert model["transport"] in ("ipc", "tcp")
    assert set(model["ports"]) == {
        "shell_port",
        "iopub_port",
        "stdin_port",
        "control_port",
        "hb_port",
    }
    assert model["can_restart"] is True
    # JSON-safe
    import json

    assert json.loads(json.dumps(model)) == model


def test_kernel_runs_in_its_folder(aio, kmap, kid, root):
    out: list[str] = []

    def on_message(channel, msg):
        if msg["header"]["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    async def go():
        conn = await kmap.connect(kid, "cwd-check", on_message)
        conn.execute("import os; print(os.getcwd())")
        await wait_until(lambda: out, what="stream output")
        await conn.close()

    aio.run(go())
    assert out[0].strip() == str(root / "project")


def test_listed_as_starting_while_it_starts(aio, kmap):
    log = EventLog(kmap)

    async def go():
        task = asyncio.ensure_future(kmap.start_kernel())
        await wait_until(lambda: log.of(KernelAdded), what="KernelAdded")
        added = log.of(KernelAdded)[0]
        assert added.model["execution_state"] == "starting"
        assert kmap.kernel_model(added.kernel_id)["execution_state"] == "starting"
        kid = await task
        assert kid == added.kernel_id
        assert kmap.kernel_model(kid)["execution_state"] == "idle"
        assert log.of(KernelStarted, kid)
        await kmap.shutdown_kernel(kid)
        return kid

    kid = aio.run(go())
    log.unsubscribe()
    assert [type(e) for e in log.of(KernelShutDown) + log.of(KernelRemoved)] == [
        KernelShutDown,
        KernelRemoved,
    ]
    assert kid not in kmap


def test_existing_kernel_id_starts_nothing(aio, kmap, kid):
    before = len(kmap)
    assert aio.run(kmap.start_kernel(kernel_id=kid)) == kid
    assert len(kmap) == before


def test_given_kernel_id_is_used(aio, kmap):
    kid = aio.run(kmap.start_kernel(kernel_id="my-kernel-1"))
    assert kid == "my-kernel-1"
    assert kmap.kernel_model(kid)["execution_state"] == "idle"
    aio.run(kmap.shutdown_kernel(kid))


@pytest.mark.parametrize("bad_id", ["../evil", "a/b", "", " x"])
def test_bad_kernel_id_refused(aio, kmap, bad_id):
    before = len(kmap)
    with pytest.raises(ValueError, match="cannot be a kernel id"):
        aio.run(kmap.start_kernel(kernel_id=bad_id))
    assert len(kmap) == before


def test_unknown_spec_is_a_clear_error(aio, kmap):
    before = len(kmap)
    with pytest.raises(KernelSpecNotFound) as info:
        aio.run(kmap.start_kernel(kernel_name="no-such-kernel"))
    assert "no-such-kernel" in str(info.value)
    assert "python3" in str(info.value)  # says what is installed
    assert len(kmap) == before


@pytest.mark.parametrize("path", ["../..", "/etc", ".."])
def test_path_outside_root_refused(aio, kmap, path):
    before = len(kmap)
    with pytest.raises(PathOutsideRoot):
        aio.run(kmap.start_kernel(path=path))
    assert len(kmap) == before


def test_missing_folder_walks_up(aio, kmap, root):
    assert kmap.cwd_for_path("project/data/not/there") == str(root / "project" / "data")
    with pytest.raises(PathOutsideRoot):
        kmap.cwd_for_path("../outside")


def test_execution_updates_state_and_activity(aio, kmap, kid):
    log = EventLog(kmap)
    states: list[str] = []
    log_states = kmap.subscribe(
        lambda e: (
            isinstance(e, KernelChanged)
            and e.kernel_id == kid
            and "execution_state" in e.fields
            and states.append(e.model["execution_state"])
        )
    )
    before = parse(kmap.kernel_model(kid)["last_activity"])
    before_global = kmap.last_kernel_activity

    async def go():
        conn = await kmap.connect(kid, "activity", lambda c, m: None)
        conn.execute("import time; time.sleep(0.5)")
        await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "busy", what="busy")
        await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "idle", what="idle")
        await conn.close()

    aio.run(go())
    log_states()
    log.unsubscribe()
    assert states[:2] == ["busy", "idle"]
    after = parse(kmap.kernel_model(kid)["last_activity"])
    assert after > before
    assert kmap.last_kernel_activity >= after > before_global


def test_probes_are_not_activity(aio, kmap, kid):
    """kernelmon's own kernel_info_request does not refresh last_activity."""
    backend = kmap.backend(kid)
    aio.sleep(0.2)
    before = kmap.kernel_model(kid)["last_activity"]
    messages_before = kmap.kernel_model(kid)["messages"]

    async def probe():
        reply = await backend.probe.send_kernel_info()
        assert reply["header"]["msg_type"] == "kernel_info_reply"
        # its busy/idle status messages arrive on IOPub around the reply
        await wait_until(lambda: kmap.kernel_model(kid)["messages"] >= messages_before + 2)

    aio.run(probe())
    model = kmap.kernel_model(kid)
    assert model["last_activity"] == before
    assert model["execution_state"] == "idle"


def test_interrupt_stops_running_code(aio, kmap, kid):
    replies: list[dict] = []
    log = EventLog(kmap)

    def on_message(channel, msg):
        if msg["header"]["msg_type"] == "execute_reply":
            replies.append(msg["content"])

    async def go():
        conn = await kmap.connect(kid, "interrupt", on_message)
        conn.execute("import time; time.sleep(30)")
        await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "busy")
        await asyncio.sleep(0.2)
        await kmap.interrupt_kernel(kid)
        await wait_until(lambda: replies, timeout=10, what="execute_reply")
        await conn.close()

    aio.run(go())
    log.unsubscribe()
    assert replies[0]["status"] == "error"
    assert replies[0]["ename"] == "KeyboardInterrupt"
    assert log.of(KernelInterrupted, kid)


def test_restart_keeps_id_and_folder_and_watching(aio, kmap, kid, root):
    old_pid = kmap.kernel_model(kid)["pid"]
    log = EventLog(kmap)
    aio.run(kmap.restart_kernel(kid))
    model = kmap.kernel_model(kid)
    assert model["id"] == kid
    assert model["execution_state"] == "idle"
    assert model["restarts"] == 1
    assert model["cwd"] == str(root / "project")
    assert model["pid"] != old_pid
    assert process_gone(old_pid)
    restarted = log.of(KernelRestarted, kid)
    assert len(restarted) == 1
    assert restarted[0].auto is False
    states = [e.model["execution_state"] for e in log.of(KernelChanged, kid)]
    assert states[0] == "restarting"
    # watching goes on with the new process
    log.clear()

    async def busy_again():
        await goes_busy_then_idle(kmap, kid, "after-restart")

    aio.run(busy_again())
    log.unsubscribe()


def test_restart_with_new_ports_keeps_watching(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    backend = kmap.backend(kid)
    old_ports = backend.connection_info["iopub_port"]

    async def go():
        # Ports can change on a restart (jupyter_client's restarter may ask for new ones);
        # force it here, then restart through the map as usual.
        km = backend.km
        for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
            setattr(km, name, 0)
        km.cleanup_connection_file()
        await kmap.restart_kernel(kid)
        assert backend.connection_info["iopub_port"] != old_ports
        await goes_busy_then_idle(kmap, kid, "ports")
        await kmap.shutdown_kernel(kid)

    aio.run(go())


def test_shutdown_leaves_no_process(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]
    conn_file = kmap.backend(kid).connection_file
    assert os.path.exists(conn_file)
    assert os.stat(conn_file).st_mode & 0o777 == 0o600
    before = kmap.last_kernel_activity
    aio.run(kmap.shutdown_kernel(kid))
    assert kid not in kmap
    assert process_gone(pid)
    assert not os.path.exists(conn_file)
    assert kmap.last_kernel_activity > before  # shutdowns count
    with pytest.raises(KernelNotFound):
        kmap.kernel_model(kid)


def test_shutdown_now_and_twice(aio, kmap):
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]

    async def go():
        # two concurrent shutdowns share the work; neither fails
        await asyncio.gather(kmap.shutdown_kernel(kid, now=True), kmap.shutdown_kernel(kid))

    aio.run(go())
    assert process_gone(pid)
    with pytest.raises(KernelNotFound):
        aio.run(kmap.shutdown_kernel(kid))


def test_shutdown_all_stops_every_kernel(aio, root):
    km = KernelMap(Settings(root_dir=str(root)))

    async def go():
        ids = await asyncio.gather(*(km.start_kernel() for _ in range(3)))
        pids = [km.kernel_model(k)["pid"] for k in ids]
        await km.shutdown_all()
        return pids

    pids = aio.run(go())
    assert len(km) == 0
    assert all(process_gone(p) for p in pids)


def test_kernel_that_ignores_shutdown_request_is_still_gone(aio, kmap):
    """shutdown_request is ignored (SIGTERM too): terminate, then kill, in bounded time."""
    kid = aio.run(kmap.start_kernel())
    pid = kmap.kernel_model(kid)["pid"]

    async def go():
        conn = await kmap.connect(kid, "stubborn", lambda c, m: None)
        conn.execute(
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True: time.sleep(1)"
        )
        await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "busy")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await kmap.shutdown_kernel(kid)
        return loop.time() - t0

    took = aio.run(go())
    assert process_gone(pid)
    assert took < 2.0 + 5.0 + 1.0  # shutdown_wait, then the kill's own wait, with slack


@pytest.mark.parametrize(
    "call",
    [
        lambda km: km.kernel_model("nope"),
        lambda km: km.notify_connect("nope"),
        lambda km: km.notify_disconnect("nope"),
        lambda km: km.cull_eta("nope"),
    ],
)
def test_unknown_id_sync(kmap, call):
    before = kmap.list_kernels()
    with pytest.raises(KernelNotFound, match="'nope'") as info:
        call(kmap)
    assert isinstance(info.value, KeyError)
    assert kmap.list_kernels() == before


@pytest.mark.parametrize(
    "call",
    [
        lambda km: km.restart_kernel("nope"),
        lambda km: km.interrupt_kernel("nope"),
        lambda km: km.shutdown_kernel("nope"),
        lambda km: km.connect("nope", "s", lambda c, m: None),
    ],
)
def test_unknown_id_async(aio, kmap, call):
    before = kmap.list_kernels()
    with pytest.raises(KernelNotFound, match="nope"):
        aio.run(call(kmap))
    assert kmap.list_kernels() == before
    assert "nope" not in kmap


def test_last_kernel_activity_is_utc(kmap):
    assert kmap.last_kernel_activity.tzinfo is not None
    assert kmap.last_kernel_activity.utcoffset() == UTC.utcoffset(None)


def test_lost_idle_status_is_corrected(aio, kmap, kid):
    """If IOPub dropped the final 'idle' (a watcher fell behind), the kernel is not shown busy
    for ever: a probe queued behind the user's code finds it idle, within a second."""
    record = kmap.record(kid)
    aio.sleep(0.5)
    assert record.execution_state == "idle"
    before = record.last_activity
    record.execution_state = "busy"  # what a lost idle status leaves behind

    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await wait_until(lambda: record.execution_state == "idle", timeout=3)
        return loop.time() - t0

    took = aio.run(go())
    assert took < 1.0
    assert record.last_activity == before  # the check is not activity


def test_silent_long_computation_stays_busy(aio, kmap, kid):
    record = kmap.record(kid)
    seen: list[str] = []

    async def go():
        conn = await kmap.connect(kid, "silent", lambda c, m: None)
        conn.execute("import time; time.sleep(2)")
        await wait_until(lambda: record.execution_state == "busy")
        for _ in range(15):  # 1.5 s of silence: the idle check must not flip it
            await asyncio.sleep(0.1)
            seen.append(record.execution_state)
        await wait_until(lambda: record.execution_state == "idle", timeout=5)
        await conn.close()

    aio.run(go())
    assert set(seen) == {"busy"}
