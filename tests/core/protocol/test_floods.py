"""Floods of output through a real frontend connection: nothing lost while kernelmon is
stalled (its subscriber's queue holds the flood), and a loss it could not avoid is counted
and told (no timing is asserted)."""

from __future__ import annotations

import asyncio
import time

from kernelmon.core.events import OutputLost
from kernelmon.core.protocol import iopub, wire
from kernelmon.core.protocol.channels import StreamDecoder
from kernelmon.core.protocol.iopub import message_number
from tests.core.conftest import EventLog, Frontend, watched_kernel
from tests.waiting import wait_until


def test_a_stalled_frontend_loses_no_line_and_gets_the_final_idle(aio, kmap, tmp_path):
    """5,000 lines printed while kernelmon's loop is stalled: libzmq's default queues (1,000
    messages on each side) would make the kernel's PUB socket drop most of them."""
    n = 5000
    done = tmp_path / "done"

    fe = Frontend(done)

    async def go() -> int:
        async with watched_kernel(kmap, "stalled", fe) as (_kid, conn, _feed):
            code = f"for i in range({n}): print(i, flush=True)\nopen({str(done)!r}, 'w').close()"
            msg_id = conn.execute(code)
            await wait_until(lambda: fe.idle_for(msg_id), timeout=40, what="the final idle")
            await asyncio.sleep(1.5)  # a gap would be counted by now
            return conn.lost

    lost = aio.run(go())
    assert fe.stalled
    assert fe.lines() == [str(i) for i in range(n)]
    assert lost == 0


def test_a_slow_frontend_is_not_told_of_a_loss_that_did_not_happen(aio, kmap, monkeypatch):
    """A frontend that stalls the loop while the kernel runs a cell, then takes longer than
    the grace period over the final idle. The kernel's counter jumps before that idle (the
    execute reply went out on shell), and the reply waits unread on kernelmon's shell socket
    while the frontend holds the loop: it explains the gap once the loop is free again, so no
    loss is counted."""

    class SlowOnIdle(Frontend):
        def __call__(self, channel: str, msg: dict) -> None:
            super().__call__(channel, msg)
            if channel == "iopub" and msg["header"]["msg_type"] == "status":
                # busy: the kernel runs the cell and replies meanwhile; idle: slower than GRACE
                time.sleep(
                    0.3 if msg["content"]["execution_state"] == "busy" else iopub.GRACE + 0.3
                )

    monkeypatch.setattr(iopub, "GRACE", 0.3)

    fe = SlowOnIdle()

    async def go() -> int:
        async with watched_kernel(kmap, "slow", fe) as (_kid, conn, _feed):
            msg_id = conn.execute("print('x')")
            await wait_until(lambda: fe.replies(msg_id), timeout=30, what="the execute reply")
            await asyncio.sleep(iopub.GRACE * 3)  # a gap would be counted by now
            return conn.lost

    assert aio.run(go()) == 0
    assert fe.told == []


def test_output_the_kernel_dropped_is_counted_and_told(aio, kmap, tmp_path, small_queue):
    """The kernel publishes 3,000 display messages (one message each) while kernelmon is
    stalled and its queue holds 50: what the frontend got plus what kernelmon counts as lost
    is what the kernel sent, plus the few status messages dropped in the same burst (the
    final idle, and busy/idle around kernelmon's own probes of the kernel meanwhile)."""
    n = 3000
    done = tmp_path / "done"
    log = EventLog(kmap)

    fe = Frontend(done)

    async def go() -> tuple[int, str]:
        # a new kernel: its IOPub subscriber gets the small queue
        async with watched_kernel(kmap, "lossy", fe) as (kid, conn, _feed):
            code = (
                "from IPython.display import display\n"
                f"for i in range({n}): display(i)\n"
                f"open({str(done)!r}, 'w').close()"
            )
            msg_id = conn.execute(code)
            await wait_until(lambda: fe.stalled, timeout=60, what="the stall")
            await wait_until(lambda: fe.replies(msg_id), timeout=60, what="the execute reply")
            await wait_until(lambda: conn.lost > 0, timeout=10, what="the loss to be counted")
            await asyncio.sleep(1.5)  # every gap is counted by now
            return conn.lost, kid

    try:
        lost, kid = aio.run(go())
    finally:
        log.unsubscribe()
    got = fe.count("display_data")
    assert lost > 0
    assert got < n
    assert n <= got + lost <= n + 10
    events = log.of(OutputLost, kid)
    assert sum(e.messages for e in events) == lost
    assert sum(told for told, _text in fe.told) == lost
    assert all("never reached kernelmon" in e.text for e in events)


def test_stream_decoder_decodes_like_decode_message():
    signer = wire.Signer(b"secret")

    def frames(header: bytes, parent: bytes, meta: bytes, content: bytes, key=signer):
        parts = [header, parent, meta, content]
        return [b"topic", wire.DELIM, key.sign(parts), *parts, b"buf"]

    parent = b'{"msg_id": "p1", "msg_type": "execute_request"}'
    good = [
        frames(b'{"msg_id": "a", "msg_type": "stream"}', parent, b"{}", b'{"text": "x"}'),
        frames(
            b'{"msg_id": "b", "msg_type": "stream"}', parent, b'{"m": 1}', b'{"text": "\\u00e9"}'
        ),
        frames(
            b'{"msg_id": "c", "msg_type": "status"}', b"{}", b"{}", b'{"execution_state": "idle"}'
        ),
    ]
    bad = [
        frames(b'{"msg_id": "d"}', parent, b"{}", b"{}"),  # no msg_type
        frames(b'{"msg_id": "e", "msg_type": "x"}', b"[]", b"{}", b"{}"),  # parent not a dict
        frames(b'{"msg_id": "f", "msg_type": "x"}', parent, b"{}", b"[1]"),  # content not a dict
        frames(b"{not json", parent, b"{}", b"{}"),
        frames(b'{"msg_id": "g", "msg_type": "x"}', parent, b"{}", b"{}", wire.Signer(b"other")),
        [b"no delimiter"],
        frames(b'{"msg_id": "h", "msg_type": "x"}', parent, b"[]", b"{}"),  # metadata a list
        frames(b'{"msg_id": 7, "msg_type": "x"}', parent, b"{}", b"{}"),  # msg_id a number
        frames(b'["msg_id", "msg_type"]', parent, b"{}", b"{}"),  # header not an object
        frames(b'{"msg_id": "i", "msg_type": "x"}', b"{", b"{}", b"{}"),  # parent not JSON
    ]
    decode = StreamDecoder(signer)
    for f in good + bad + good:
        assert decode(f) == wire.decode_message(signer, f)
    first, second = decode(good[0]), decode(good[1])
    assert first is not None
    assert second is not None
    first["parent_header"]["changed"] = True  # a handler changing its own message
    assert "changed" not in second["parent_header"]
    assert "changed" not in decode(good[0])["parent_header"]


def test_message_numbers_are_read_from_the_header_bytes():
    header = b'{"msg_id": "5c3e-aa_4242_17", "msg_type": "stream", "session": "5c3e-aa"}'
    assert message_number(header) == (b"5c3e-aa_4242", 17)
    # not jupyter_client's form, or no msg_id: nothing to follow (never a false loss)
    assert message_number(b'{"msg_id": "0f5e2c1e9b8a4d7f", "msg_type": "x"}') is None
    assert message_number(b'{"msg_id": "a_b_c", "msg_type": "x"}') is None
    assert message_number(b'{"msg_type": "x"}') is None
    assert message_number(b'{"msg_id": "unterminated') is None
