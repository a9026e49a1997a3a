"""Frontend connections through the map, and offline buffering with replay/discard/caps."""

from __future__ import annotations

import dataclasses

import pytest

from kernelmon.core.events import KernelChanged
from tests.core.conftest import EventLog, Frontend, wait_quiet
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def kid(aio, kmap):
    return aio.run(kmap.start_kernel())


@pytest.fixture(autouse=True)
def default_settings(kmap):
    saved = kmap.settings
    yield
    kmap.apply_settings(saved)


async def leave_running(kmap, kid, session: str, code: str) -> None:
    """Start code from ``session``, disconnect at once, and wait until the kernel is done."""
    conn = await kmap.connect(kid, session, Frontend())
    since = kmap.record(kid).messages
    conn.execute(code)
    await conn.close()
    await wait_quiet(kmap, kid, since)
    # busy, execute_input, stream, idle (iopub) and execute_reply (shell), all kept
    await wait_until(lambda: kmap.record(kid).buffered >= 5, what="buffered messages")


def test_connect_counts_and_gets_messages(aio, kmap, kid):
    fe = Frontend()
    log = EventLog(kmap)

    async def go():
        conn = await kmap.connect(kid, "count-1", fe)
        assert kmap.kernel_model(kid)["connections"] == 1
        other = await kmap.connect(kid, "count-2", Frontend())
        assert kmap.kernel_model(kid)["connections"] == 2
        msg_id = conn.execute("print('hello'); 6 * 7")
        await wait_until(lambda: fe.replies(msg_id), what="execute_reply")
        # shell and iopub are separate streams: the output may come just after the reply
        await wait_until(lambda: "hello" in fe.printed(), what="the output")
        await conn.close()
        await conn.close()  # twice is harmless
        await other.close()
        assert kmap.kernel_model(kid)["connections"] == 0
        return msg_id

    msg_id = aio.run(go())
    log.unsubscribe()
    assert fe.replies(msg_id)[0]["content"]["status"] == "ok"
    assert "hello" in fe.printed()
    results = [m for c, m in fe.messages if m["header"]["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "42"
    counts = [
        e.model["connections"] for e in log.of(KernelChanged, kid) if "connections" in e.fields
    ]
    assert counts == [1, 2, 1, 0]


def test_notify_connect_and_disconnect(kmap, kid):
    kmap.notify_connect(kid)
    kmap.notify_connect(kid)
    assert kmap.kernel_model(kid)["connections"] == 2
    kmap.notify_disconnect(kid)
    kmap.notify_disconnect(kid)
    kmap.notify_disconnect(kid)  # never below zero
    assert kmap.kernel_model(kid)["connections"] == 0


def test_buffered_messages_replayed_to_same_session(aio, kmap, kid):
    async def go():
        # a job prints while its frontend is away
        code = "import time\nfor i in range(5):\n    time.sleep(0.05); print('away', i)"
        await leave_running(kmap, kid, "replay", code)
        assert kmap.kernel_model(kid)["buffered"] > 0
        back = Frontend()
        conn = await kmap.connect(kid, "replay", back)
        replayed = conn.replayed
        assert kmap.kernel_model(kid)["buffered"] == 0
        # then live messages follow
        msg_id = conn.execute("print('live')")
        await wait_until(lambda: back.replies(msg_id))
        await conn.close()
        return back, replayed

    back, replayed = aio.run(go())
    assert replayed > 0
    text = back.printed()
    assert text.index("away 0") < text.index("away 4") < text.index("live")


def test_other_session_discards_buffer(aio, kmap, kid):
    async def go():
        await leave_running(kmap, kid, "left", "print('for left only')")
        kmap_before = kmap.kernel_model(kid)["buffered"]
        assert kmap_before > 0
        newcomer = Frontend()
        conn2 = await kmap.connect(kid, "newcomer", newcomer)
        assert kmap.kernel_model(kid)["buffered"] == 0
        await conn2.close()
        return kmap_before, newcomer, conn2.replayed

    _before, newcomer, replayed = aio.run(go())
    assert replayed == 0
    assert "for left only" not in newcomer.printed()


def test_buffer_caps_drop_oldest(aio, kmap, kid):
    kmap.apply_settings(dataclasses.replace(kmap.settings, buffer_max_messages=20))

    async def go():
        await leave_running(
            kmap, kid, "capped", "for i in range(200): print('line', i, flush=True)"
        )
        model = kmap.kernel_model(kid)
        assert model["buffered"] == 20
        assert model["buffer_dropped"] > 0
        back = Frontend()
        conn = await kmap.connect(kid, "capped", back)
        await conn.close()
        return back, conn.replayed, conn.dropped, model["buffer_dropped"]

    back, replayed, dropped, model_dropped = aio.run(go())
    assert replayed == 20
    assert dropped == model_dropped > 0
    text = back.printed()
    assert "line 199" in text  # newest kept
    assert "line 0\n" not in text  # oldest dropped


def test_buffering_off_keeps_nothing(aio, kmap, kid):
    kmap.apply_settings(dataclasses.replace(kmap.settings, buffer_offline_messages=False))

    async def go():
        log = EventLog(kmap)
        conn = await kmap.connect(kid, "unbuffered", Frontend())
        conn.execute("print('lost')")
        await conn.close()
        await wait_until(
            lambda: (
                [e.model["execution_state"] for e in log.of(KernelChanged, kid)][-1:] == ["idle"]
            )
        )
        log.unsubscribe()
        assert kmap.kernel_model(kid)["buffered"] == 0
        back = Frontend()
        conn = await kmap.connect(kid, "unbuffered", back)
        await conn.close()
        return back, conn.replayed

    back, replayed = aio.run(go())
    assert replayed == 0
    assert "lost" not in back.printed()


def test_turning_buffering_off_discards_buffers(aio, kmap, kid):
    kmap.apply_settings(dataclasses.replace(kmap.settings, buffer_offline_messages=True))

    async def go():
        await leave_running(kmap, kid, "to-discard", "print('x')")

    aio.run(go())
    assert kmap.kernel_model(kid)["buffered"] > 0
    kmap.apply_settings(dataclasses.replace(kmap.settings, buffer_offline_messages=False))
    assert kmap.kernel_model(kid)["buffered"] == 0


def test_sending_is_activity(aio, kmap, kid):
    async def go():
        conn = await kmap.connect(kid, "toucher", Frontend())
        before = kmap.record(kid).last_activity
        conn.kernel_info()
        after = kmap.record(kid).last_activity
        await conn.close()
        return before, after

    before, after = aio.run(go())
    assert after > before


def test_closed_connection_refuses_to_send(aio, kmap, kid):
    async def go():
        conn = await kmap.connect(kid, "closed", Frontend())
        await conn.close()
        return conn

    conn = aio.run(go())
    with pytest.raises(RuntimeError, match="closed"):
        conn.execute("1")


def test_bad_session_key(aio, kmap, kid):
    with pytest.raises(ValueError, match="session key"):
        aio.run(kmap.connect(kid, "", Frontend()))
    assert kmap.kernel_model(kid)["connections"] == 0
