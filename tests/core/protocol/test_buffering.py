import asyncio

import pytest

from kernelmon.core.protocol.buffering import _OVERHEAD, MessageBuffer, pack, unpack


def frames(n, size=10):
    return [bytes([n % 256]) * size]


def test_fifo_and_count_cap():
    buf = MessageBuffer(max_messages=3, max_bytes=10**6)
    for i in range(5):
        buf.append("iopub", frames(i))
    assert len(buf) == 3
    assert buf.dropped == 2
    assert [f[0][0] for _, f in buf.drain()] == [2, 3, 4]
    assert len(buf) == 0
    assert buf.nbytes == 0


def test_byte_cap_drops_oldest():
    per = len(pack("shell", frames(0, 100))) + _OVERHEAD
    buf = MessageBuffer(max_messages=1000, max_bytes=per * 3)
    for i in range(10):
        buf.append("shell", frames(i, 100))
    assert len(buf) == 3
    assert buf.nbytes <= per * 3
    assert buf.dropped == 7
    assert [f[0][0] for _, f in buf.drain()] == [7, 8, 9]


def test_message_larger_than_cap_is_dropped_not_stored():
    buf = MessageBuffer(max_messages=10, max_bytes=50)
    buf.append("iopub", frames(1, 1000))
    assert len(buf) == 0
    assert buf.dropped == 1


def test_zero_caps_keep_nothing():
    buf = MessageBuffer(max_messages=0, max_bytes=10**6)
    buf.append("iopub", frames(1))
    assert len(buf) == 0
    assert buf.dropped == 1


def test_channels_kept_in_order():
    buf = MessageBuffer(10, 10**6)
    buf.append("iopub", [b"x"])
    buf.append("shell", [b"y"])
    assert [c for c, _ in buf.drain()] == ["iopub", "shell"]


def test_set_caps_shrinks():
    buf = MessageBuffer(10, 10**6)
    for i in range(10):
        buf.append("iopub", frames(i))
    buf.set_caps(4, 10**6)
    assert len(buf) == 4
    assert buf.dropped == 6


def test_pack_round_trip():
    msg = [b"topic", b"<IDS|MSG>", b"sig", b"{}", b"", b"\x00" * 70_000]
    assert unpack(pack("iopub", msg)) == ("iopub", tuple(msg))
    assert unpack(pack("stdin", [])) == ("stdin", ())


def test_memory_per_message_close_to_its_size():
    """A buffered message costs at most 1.2x its raw size (typical ~550 B IOPub message)."""
    import sys

    raw = [b"stream.stdout", b"<IDS|MSG>", b"a" * 64, b"h" * 200, b"p" * 200, b"{}", b"c" * 60]
    raw_size = sum(len(f) for f in raw)
    buf = MessageBuffer(10_000, 10**9)
    for _ in range(1000):
        buf.append("iopub", raw)
    per_message = sum(sys.getsizeof(b) for b in buf._items) / len(buf) + 8  # + deque slot
    assert per_message <= 1.2 * raw_size
    assert buf.nbytes / len(buf) == pytest.approx(per_message, rel=0.05)


def test_messages_with_many_frames_are_kept():
    """The frame count used to be one byte: a message of 256 frames or more raised."""
    buf = MessageBuffer(10, 10**6)
    many = [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b"{}"] + [b"b"] * 300
    buf.append("iopub", many)
    buf.append("iopub", [b"x"])
    assert len(buf) == 2
    assert buf.dropped == 0
    assert [f for _, f in buf.drain()] == [tuple(many), (b"x",)]


def test_unstorable_messages_are_counted_as_dropped():
    buf = MessageBuffer(10, 10**6)
    buf.append("nowhere", [b"x"])  # not a channel
    buf.append("iopub", [b"y"])
    assert (len(buf), buf.dropped) == (1, 1)


def test_many_frames_through_a_disconnected_session(aio):
    """A stand-in kernel (real sockets, signed messages) publishes a message with 300 binary
    buffers while no frontend is attached: it is buffered with its neighbours, then replayed
    whole."""
    import zmq
    from jupyter_client.session import Session

    from kernelmon.core.protocol.channels import SessionChannels
    from tests.waiting import wait_until

    key = b"buffer-key"
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    routers = {c: ctx.socket(zmq.ROUTER) for c in ("shell", "control", "stdin")}
    info = {"transport": "tcp", "ip": "127.0.0.1", "key": key.decode()}
    info["iopub_port"] = pub.bind_to_random_port("tcp://127.0.0.1")
    for channel, sock in routers.items():
        info[f"{channel}_port"] = sock.bind_to_random_port("tcp://127.0.0.1")
    kernel = Session(key=key)
    try:

        async def go():
            channels = SessionChannels(info, "offline", lambda: None)
            channels.buffer = MessageBuffer(100, 10**7)
            # PUB drops messages until the subscription arrives: send until one is kept
            for _ in range(300):
                kernel.send(pub, "status", {"execution_state": "idle"})
                await asyncio.sleep(0.01)
                if len(channels.buffer):
                    break
            channels.buffer.clear()
            kernel.send(pub, "stream", {"name": "stdout", "text": "before"})
            kernel.send(pub, "display_data", {"data": {}}, buffers=[b"%d" % i for i in range(300)])
            kernel.send(pub, "stream", {"name": "stdout", "text": "after"})
            await wait_until(lambda: len(channels.buffer) + channels.buffer.dropped >= 3)
            assert (len(channels.buffer), channels.buffer.dropped) == (3, 0)
            got: list[dict] = []
            channels.handler = lambda _channel, msg: got.append(msg)
            assert channels.replay() == 3
            channels.close()
            return got

        got = aio.run(go())
    finally:
        pub.close(linger=0)
        for sock in routers.values():
            sock.close(linger=0)
    assert [m["msg_type"] for m in got] == ["stream", "display_data", "stream"]
    assert [bytes(b) for b in got[1]["buffers"]] == [b"%d" % i for i in range(300)]
