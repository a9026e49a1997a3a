"""The IOPub watcher against a real PUB socket we control: good, probe, malformed, forged."""

from __future__ import annotations

import asyncio

import pytest
import zmq
from jupyter_client.session import Session

from kernelmon.core.protocol.activity import ActivityWatcher
from kernelmon.core.records import KernelRecord
from tests.waiting import wait_until

KEY = b"secret-key"


@pytest.fixture
def publisher():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)  # the test sends faster than it reads: keep everything
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    yield pub, {"transport": "tcp", "ip": "127.0.0.1", "iopub_port": port, "key": KEY.decode()}
    pub.close(linger=0)


def watch(aio, info, probe_session="kernelmon-probe-xyz"):
    record = KernelRecord(id="k1", name="fake")
    changes: list[set[str]] = []

    async def make():
        return ActivityWatcher(record, info, probe_session, lambda r, f, now: changes.append(f))

    watcher = aio.run(make())
    return record, watcher, changes


def send_until_seen(aio, pub, record, msgs, session: Session):
    """PUB drops messages until the subscription arrives: send a status until one lands."""

    async def go():
        for _ in range(200):
            session.send(pub, "status", {"execution_state": "idle"})
            await asyncio.sleep(0.01)
            if record.messages:
                return
        raise AssertionError("subscriber never connected")

    aio.run(go())


def test_status_and_activity(aio, publisher):
    pub, info = publisher
    record, watcher, _ = watch(aio, info)
    session = Session(key=KEY)
    send_until_seen(aio, pub, record, [], session)
    before = record.last_activity
    session.send(pub, "status", {"execution_state": "busy"})
    session.send(pub, "stream", {"name": "stdout", "text": "hi"})
    aio.run(wait_until(lambda: record.execution_state == "busy"))
    aio.run(wait_until(lambda: record.last_activity > before))
    session.send(pub, "status", {"execution_state": "idle"})
    aio.run(wait_until(lambda: record.execution_state == "idle"))
    assert record.bad_messages == 0
    watcher.close()


def test_probe_messages_change_nothing(aio, publisher):
    pub, info = publisher
    record, watcher, _ = watch(aio, info, probe_session="kernelmon-probe-xyz")
    session = Session(key=KEY)
    send_until_seen(aio, pub, record, [], session)
    aio.sleep(0.05)
    before_activity, before_count = record.last_activity, record.messages
    probe_parent = Session(key=KEY, session="kernelmon-probe-xyz").msg("kernel_info_request")
    session.send(pub, "status", {"execution_state": "busy"}, parent=probe_parent)
    aio.run(wait_until(lambda: record.messages == before_count + 1))
    assert record.execution_state == "idle"
    assert record.last_activity == before_activity
    watcher.close()


def test_malformed_and_forged_messages_dropped_and_counted(aio, publisher):
    pub, info = publisher
    record, watcher, _ = watch(aio, info)
    good = Session(key=KEY)
    forger = Session(key=b"wrong-key")
    send_until_seen(aio, pub, record, [], good)
    seen = record.messages
    forger.send(pub, "status", {"execution_state": "busy"})  # bad signature
    pub.send_multipart([b"no delimiter at all"])
    pub.send_multipart([b"<IDS|MSG>", b"sig"])  # too short
    # right signature, header not JSON
    parts = [b"not json", b"{}", b"{}", b"{}"]
    pub.send_multipart([b"<IDS|MSG>", good.sign(parts), *parts])
    # right signature, status content not JSON
    header = good.pack(good.msg_header("status"))
    parts = [header, b"{}", b"{}", b"\xff\xfe"]
    pub.send_multipart([b"<IDS|MSG>", good.sign(parts), *parts])
    good.send(pub, "status", {"execution_state": "busy"})
    aio.run(wait_until(lambda: record.execution_state == "busy"))
    assert record.bad_messages == 5
    assert record.messages == seen + 1  # the good one; the status with bad content is dropped
    watcher.close()


def test_flood_is_drained_in_batches(aio, publisher):
    pub, info = publisher
    record, watcher, changes = watch(aio, info)
    session = Session(key=KEY)
    send_until_seen(aio, pub, record, [], session)
    changes.clear()
    n = 5000
    for i in range(n):
        session.send(pub, "stream", {"name": "stdout", "text": str(i)})
    session.send(pub, "status", {"execution_state": "busy"})
    aio.run(wait_until(lambda: record.execution_state == "busy", timeout=20))
    assert record.messages >= n
    assert len(changes) < n / 10  # one change notice per batch, not per message
    watcher.close()


def test_signing_key_required():
    from kernelmon.core.protocol.wire import Signer

    with pytest.raises(ValueError, match="signing key"):
        Signer(b"")


def test_decode_message_matches_jupyter_client():
    from kernelmon.core.protocol.wire import Signer, decode_message

    session = Session(key=KEY)
    msg = session.msg("execute_result", {"data": {"text/plain": "42"}, "execution_count": 1})
    frames = session.serialize(msg, ident=[b"topic"])
    decoded = decode_message(Signer(KEY), frames)
    assert decoded is not None
    reference = session.deserialize(session.feed_identities(frames)[1])
    for key in ("msg_id", "msg_type", "content", "metadata", "parent_header"):
        assert decoded[key] == reference[key]
    assert decoded["header"]["msg_id"] == reference["header"]["msg_id"]
    assert isinstance(decoded["header"]["date"], str)  # dates stay ISO strings
    # forged and malformed
    assert decode_message(Signer(b"other"), frames) is None
    assert decode_message(Signer(KEY), frames[:3]) is None
    bad = [*frames]
    bad[-1] = b"not json"
    assert decode_message(Signer(KEY), bad) is None


def subscribed(aio, pub, record):
    """Wait until the subscription is live without the watcher seeing a kernel message
    (a forged one is dropped and counted)."""
    forger = Session(key=b"wrong-key")

    async def go():
        for _ in range(200):
            forger.send(pub, "stream", {"name": "stdout", "text": ""})
            await asyncio.sleep(0.01)
            if record.bad_messages:
                return
        raise AssertionError("subscriber never connected")

    aio.run(go())


def test_late_starting_status_does_not_undo_a_confirmed_state(aio, publisher):
    pub, info = publisher
    record, watcher, _ = watch(aio, info)
    record.execution_state = "idle"  # confirmed by a probe before IOPub caught up
    session = Session(key=KEY)
    subscribed(aio, pub, record)
    # the process's "starting", the first message of the kernel this watcher sees (after the
    # kernel's welcome to the new subscriber, which says nothing of its process): stale
    session.send(pub, "iopub_welcome", {"subscription": ""})
    session.send(pub, "status", {"execution_state": "starting"})
    aio.run(wait_until(lambda: record.messages == 2))
    assert record.execution_state == "idle"
    watcher.close()
    record, watcher, _ = watch(aio, info)
    record.execution_state = "restarting"  # while (re)starting, it is taken as it comes
    subscribed(aio, pub, record)
    session.send(pub, "status", {"execution_state": "starting"})
    aio.run(wait_until(lambda: record.execution_state == "starting"))
    watcher.close()


# -- execution state: by request, as Jupyter defines it ------------------------------------


def watched(aio, publisher):
    """A watcher whose subscription is live, and the stand-in kernel's session."""
    pub, info = publisher
    record, watcher, _ = watch(aio, info)
    kernel = Session(key=KEY)
    send_until_seen(aio, pub, record, [], kernel)
    return pub, record, watcher, kernel


def request(msg_type: str, subshell: str | None = None) -> dict:
    msg = Session(key=KEY, session="client").msg(msg_type)
    if subshell is not None:
        msg["header"]["subshell_id"] = subshell
    return msg


def status(session: Session, pub, state: str, parent: dict | None) -> None:
    session.send(pub, "status", {"execution_state": state}, parent=parent)


def test_control_requests_during_a_cell_leave_it_busy(aio, publisher):
    pub, record, watcher, kernel = watched(aio, publisher)
    cell = request("execute_request")
    status(kernel, pub, "busy", cell)
    for msg_type in ("kernel_info_request", "usage_request", "debug_request"):
        control = request(msg_type)
        status(kernel, pub, "busy", control)
        status(kernel, pub, "idle", control)
    kernel.send(pub, "stream", {"name": "stdout", "text": "still running"}, parent=cell)
    n = record.messages + 8
    aio.run(wait_until(lambda: record.messages >= n))
    assert record.execution_state == "busy"
    status(kernel, pub, "idle", cell)
    aio.run(wait_until(lambda: record.execution_state == "idle"))
    watcher.close()


def test_control_requests_never_make_an_idle_kernel_busy_and_end_starting(aio, publisher):
    pub, record, watcher, kernel = watched(aio, publisher)
    control = request("usage_request")
    status(kernel, pub, "busy", control)
    n = record.messages + 1
    aio.run(wait_until(lambda: record.messages >= n))
    assert record.execution_state == "idle"
    status(kernel, pub, "idle", control)
    # a restart (a "starting" after other messages): what ran is forgotten
    cell = request("execute_request")
    status(kernel, pub, "busy", cell)
    aio.run(wait_until(lambda: record.execution_state == "busy"))
    status(kernel, pub, "starting", {})
    aio.run(wait_until(lambda: record.execution_state == "starting"))
    assert watcher.open_requests == {}
    nudge = request("kernel_info_request")  # the application's nudge after a restart
    status(kernel, pub, "busy", nudge)
    status(kernel, pub, "idle", nudge)
    aio.run(wait_until(lambda: record.execution_state == "idle"))
    watcher.close()


def test_subshells_and_lost_idles(aio, publisher):
    pub, record, watcher, kernel = watched(aio, publisher)
    main, side = request("execute_request"), request("execute_request", "sub-1")
    status(kernel, pub, "busy", main)
    status(kernel, pub, "busy", side)
    status(kernel, pub, "idle", main)
    n = record.messages + 3
    aio.run(wait_until(lambda: record.messages >= n))
    assert record.execution_state == "busy"  # the subshell still runs
    status(kernel, pub, "idle", side)
    aio.run(wait_until(lambda: record.execution_state == "idle"))
    # an idle lost (IOPub dropped it): the next busy in the same subshell means it finished
    lost = request("execute_request")
    status(kernel, pub, "busy", lost)
    aio.run(wait_until(lambda: record.execution_state == "busy"))
    after = request("execute_request")
    status(kernel, pub, "busy", after)
    status(kernel, pub, "idle", after)
    aio.run(wait_until(lambda: record.execution_state == "idle"))
    assert watcher.open_requests == {}
    watcher.close()


def test_open_requests_are_bounded(aio, publisher):
    from kernelmon.core.protocol.activity import OPEN_MEMORY

    pub, record, watcher, kernel = watched(aio, publisher)
    n = record.messages + 3 * OPEN_MEMORY
    for i in range(3 * OPEN_MEMORY):
        status(kernel, pub, "busy", request("execute_request", f"sub-{i}"))
    aio.run(wait_until(lambda: record.messages >= n))
    assert len(watcher.open_requests) == OPEN_MEMORY
    assert record.execution_state == "busy"
    watcher.close()


def test_settle_after_a_lost_idle(aio, publisher):
    """The main shell answering kernelmon's probe means the request it ran has finished."""
    import time

    pub, record, watcher, kernel = watched(aio, publisher)
    status(kernel, pub, "busy", request("execute_request"))
    status(kernel, pub, "busy", request("execute_request", "sub-1"))
    aio.run(wait_until(lambda: len(watcher.open_requests) == 2))
    sent_at = time.monotonic()
    assert watcher.settle(sent_at) is False  # the subshell still runs
    assert record.execution_state == "busy"
    watcher.open_requests.pop("sub-1")
    assert watcher.settle(sent_at) is True
    assert record.execution_state == "idle"
    watcher.close()


# -- activity: what jupyter_server calls activity ------------------------------------------


def test_untracked_requests_are_not_activity(aio, publisher):
    pub, record, watcher, kernel = watched(aio, publisher)
    aio.sleep(0.05)
    before = record.last_activity
    for msg_type in ("kernel_info_request", "usage_request", "comm_info_request"):
        nudge = request(msg_type)
        status(kernel, pub, "busy", nudge)
        status(kernel, pub, "idle", nudge)
    n = record.messages + 6
    aio.run(wait_until(lambda: record.messages >= n))
    assert record.last_activity == before
    cell = request("execute_request")
    kernel.send(pub, "stream", {"name": "stdout", "text": "x"}, parent=cell)
    aio.run(wait_until(lambda: record.last_activity > before))
    watcher.close()


# -- malformed fields: the message is dropped and counted, its batch goes on ---------------


def signed(session: Session, header: bytes, parent: bytes, content: bytes) -> list[bytes]:
    parts = [header, parent, b"{}", content]
    return [b"<IDS|MSG>", session.sign(parts), *parts]


def test_malformed_fields_drop_only_their_message(aio, publisher):
    pub, record, watcher, kernel = watched(aio, publisher)
    aio.sleep(0.05)
    seen, bad = record.messages, record.bad_messages
    status_header = kernel.pack(kernel.msg_header("status"))
    cell = kernel.pack(request("execute_request")["header"])
    hostile = [
        signed(kernel, status_header, cell, b'{"execution_state": ["busy"]}'),
        signed(kernel, status_header, cell, b'{"execution_state": 3}'),
        signed(kernel, status_header, cell, b'{"execution_state": "weird"}'),
        signed(kernel, status_header, cell, b"[1, 2]"),
        signed(kernel, status_header, cell, b'"busy"'),
        signed(kernel, status_header, b"[]", b'{"execution_state": "busy"}'),
        signed(kernel, status_header, b'{"msg_id": 7}', b'{"execution_state": "busy"}'),
        signed(kernel, status_header, b'{"msg_type": []}', b'{"execution_state": "busy"}'),
        signed(kernel, status_header, b"[" * 100_000 + b"]" * 100_000, b"{}"),
        signed(kernel, status_header, cell, b'{"n": ' + b"9" * 5000 + b"}"),
        signed(kernel, b'{"msg_type": 5}', cell, b"{}"),
        signed(kernel, b"[]", cell, b"{}"),
        signed(kernel, b'"status"', cell, b"{}"),
    ]
    # the real busy first, hostile messages around the stream: all in one batch
    status(kernel, pub, "busy", request("execute_request"))
    for frames in hostile:
        pub.send_multipart(frames)
    kernel.send(pub, "stream", {"name": "stdout", "text": "x"})
    aio.run(wait_until(lambda: record.messages >= seen + 2 and record.bad_messages > bad))
    aio.sleep(0.05)
    assert record.bad_messages == bad + len(hostile)
    assert record.messages == seen + 2
    assert record.execution_state == "busy"
    watcher.close()


def test_decode_message_refuses_malformed_fields():
    from kernelmon.core.protocol.wire import Signer, decode_message

    session = Session(key=KEY)
    header = session.pack(session.msg_header("status"))
    for h, parent in [
        (b"[]", b"{}"),
        (b'{"msg_id": 1, "msg_type": "x"}', b"{}"),
        (header, b"[" * 100_000 + b"]" * 100_000),
        (header, b'{"n": ' + b"9" * 5000 + b"}"),
    ]:
        assert decode_message(Signer(KEY), signed(session, h, parent, b"{}")) is None


def test_the_msg_type_read_is_the_header_objects_own(aio, publisher):
    """The header is read as JSON, not by its bytes: a ``msg_type`` key of a nested object
    or text like one inside another field's string is not the message's type, and a signed
    header that only begins like a stream's is dropped and counted."""
    pub, record, watcher, kernel = watched(aio, publisher)
    aio.sleep(0.05)
    seen, bad = record.messages, record.bad_messages
    cell = kernel.pack(request("execute_request")["header"])
    busy = b'{"execution_state": "busy"}'
    nested = b'{"msg_id": "k_1_1", "x": {"msg_type": "stream"}, "msg_type": "status"}'
    in_text = (
        b'{"msg_id": "k_1_2", "username": "\\"msg_type\\": \\"stream\\"", "msg_type": "status"}'
    )
    truncated = b'{"msg_id": "k_1_3", "msg_type": "stream", "username": "k'
    pub.send_multipart(signed(kernel, nested, cell, busy))
    aio.run(wait_until(lambda: record.execution_state == "busy", what="the nested one's busy"))
    pub.send_multipart(signed(kernel, truncated, cell, b'{"name": "stdout", "text": "x"}'))
    pub.send_multipart(signed(kernel, in_text, cell, b'{"execution_state": "idle"}'))
    aio.run(wait_until(lambda: record.execution_state == "idle", what="the other's idle"))
    aio.run(wait_until(lambda: record.bad_messages == bad + 1, what="the truncated one"))
    assert record.messages == seen + 2
    watcher.close()
