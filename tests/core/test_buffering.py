from kernelmon.core.buffering import _OVERHEAD, MessageBuffer


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
    per = 100 + _OVERHEAD
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
