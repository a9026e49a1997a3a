"""The IOPub watcher against a real PUB socket we control: good, probe, malformed, forged."""

from __future__ import annotations

import asyncio

import pytest
import zmq
from jupyter_client.session import Session

from kernelmon.core.activity import ActivityWatcher
from kernelmon.core.records import KernelRecord

from .conftest import wait_until

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
    assert record.messages == seen + 2  # the header-valid status with bad content, the good one
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
    from kernelmon.core.wire import Signer

    with pytest.raises(ValueError, match="signing key"):
        Signer(b"")


def test_decode_message_matches_jupyter_client():
    from kernelmon.core.wire import Signer, decode_message

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


def test_late_starting_status_does_not_undo_a_confirmed_state(aio, publisher):
    pub, info = publisher
    record, watcher, _ = watch(aio, info)
    session = Session(key=KEY)
    send_until_seen(aio, pub, record, [], session)
    assert record.execution_state == "idle"
    before = record.messages
    session.send(pub, "status", {"execution_state": "starting"})  # late, from process start
    aio.run(wait_until(lambda: record.messages > before))
    assert record.execution_state == "idle"
    record.execution_state = "restarting"  # while (re)starting, it is taken as it comes
    session.send(pub, "status", {"execution_state": "starting"})
    aio.run(wait_until(lambda: record.execution_state == "starting"))
    watcher.close()
