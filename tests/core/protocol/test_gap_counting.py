"""How the IOPub feed tells a lost message from one it was never meant to see, for the
orders a real kernel produces only by chance: messages published over a real PUB socket by
jupyter_client's ``Session`` (numbered like a kernel's), read by kernelmon's real feed. A
real kernel's restart is tested in tests/core/test_restart_loss.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from jupyter_client.session import Session

from kernelmon.core import KernelMap, Settings
from kernelmon.core.protocol import iopub, wire
from tests.core.conftest import Frontend
from tests.waiting import wait_until


def request(msg_type: str, msg_id: str | None = None) -> dict:
    """The header of another process's request (its pid is not kernelmon's), as a kernel
    puts it in the parent header of what it publishes for it."""
    session = uuid.uuid4().hex
    if msg_id is None:
        msg_id = f"{session}_1_{uuid.uuid4().int % 1000}"
    return {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": "other"}


def test_a_message_that_comes_after_a_later_numbered_one_is_not_lost(aio, watched):
    """ipykernel numbers messages in its shell and control threads and sends them from its
    IOPub thread: a status can overtake the shutdown_reply numbered before it."""
    w = watched()
    pub = w.pub
    early, late = pub.msg("stream", {"text": "a"}), pub.msg("status", {})
    pub.send(late)
    pub.send(early)
    pub.publish("status", {})
    last = pub.msg("status", {})
    pub.send(last)
    assert w.settled(aio, last) == []


def test_a_shutdown_reply_explains_the_reply_sent_on_control(aio, watched):
    """A restart or shutdown asked by any client: the reply goes to that client on control,
    its copy (numbered next) to IOPub."""
    w = watched()
    pub = w.pub
    pub.publish("status", {"execution_state": "busy"})
    pub.skip()  # the reply on control
    pub.publish("shutdown_reply", {"status": "ok", "restart": True})
    last = pub.msg("status", {"execution_state": "idle"})
    pub.send(last)
    assert w.settled(aio, last) == []


def test_output_lost_before_a_shutdown_reply_is_still_told(aio, watched):
    w = watched()
    pub = w.pub
    pub.publish("status", {"execution_state": "busy"})
    pub.skip()  # a stream message the kernel's PUB socket dropped
    pub.publish("status", {"execution_state": "idle"})
    pub.publish("status", {"execution_state": "busy"})
    pub.skip()  # the reply on control
    pub.publish("shutdown_reply", {"status": "ok", "restart": True})
    last = pub.msg("status", {"execution_state": "idle"})
    pub.send(last)
    assert w.settled(aio, last) == [1]


def test_replies_kernelmon_will_never_read_are_not_lost_but_others_are(aio, watched):
    """kernelmon closed the socket of its requests (its probe, at a restart) before their
    replies came: those numbers are missing from IOPub, and no loss; one more is."""
    w = watched()
    pub = w.pub
    w.sub.feed.expect_unread(2)
    pub.skip()
    pub.publish("status", {})
    pub.skip()
    last = pub.msg("status", {})
    pub.send(last)
    assert w.settled(aio, last) == []
    pub.skip()
    last = pub.msg("status", {})
    pub.send(last)
    assert w.settled(aio, last) == [1]


def test_a_new_process_starts_a_new_count(aio, watched):
    """What a new process published before kernelmon's subscription reached it was never
    kernelmon's to receive; numbers after its first message seen count again."""
    w = watched()
    pub = w.pub
    w.sub.feed.expect_unread(1)  # of the old process: not carried over
    old = pub.session
    pub.session = Session(key=b"secret")  # the new process's session
    for _ in range(5):
        pub.skip()  # published before the subscription was there
    pub.publish("iopub_welcome", {"subscription": ""})
    pub.skip()
    last = pub.msg("status", {})
    pub.send(last)
    assert old.session != pub.session.session
    assert w.settled(aio, last) == [1]


@pytest.mark.parametrize("at", ["a running cell", "an input prompt"])
def test_a_frontend_that_leaves_before_its_reply_is_no_loss_to_the_others(aio, tmp_path, at):
    """A real kernel: one frontend leaves (no buffering) while its cell runs; the kernel's
    reply to it goes nowhere, which is no lost output for the frontend that stays. Also when
    the cell waits at an input prompt, interrupted once the frontend left: the input_request
    that reached that frontend on stdin has the cell's execute_request for parent, and
    answers nothing (it used to be taken for the cell's reply: its execute_reply, which then
    went nowhere, was counted as 1 message lost)."""
    kmap = KernelMap(
        Settings(root_dir=str(tmp_path), kernel_info_timeout=30, buffer_offline_messages=False),
        shutdown_wait=2.0,
    )
    stays_fe, leaves_fe = Frontend(), Frontend()

    async def go() -> tuple[int, int]:
        kid = await kmap.start_kernel()
        stays = await kmap.connect(kid, "stays", stays_fe)
        stays.on_lost = lambda n, text: stays_fe.told.append((n, text))
        leaves = await kmap.connect(kid, "leaves", leaves_fe)
        if at == "an input prompt":
            asking = leaves.execute("input('name? ')", allow_stdin=True)
            await wait_until(lambda: leaves_fe.types("stdin"), what="the input prompt")
            prompt = next(m for c, m in leaves_fe.messages if c == "stdin")
            assert prompt["header"]["msg_type"] == "input_request"
            assert prompt["parent_header"]["msg_id"] == asking
            await leaves.close()
            await kmap.interrupt_kernel(kid)
        else:
            running = leaves.execute("import time; time.sleep(0.5)")
            await wait_until(
                lambda: any(
                    m["parent_header"].get("msg_id") == running for _c, m in stays_fe.messages
                ),
                what="the cell to start",
            )
            await leaves.close()
        msg_id = stays.execute("1")
        await wait_until(lambda: stays_fe.idle_for(msg_id), what="the idle after the cell")
        await asyncio.sleep(2 * iopub.GRACE + 0.3)  # a gap would be told by now
        feed = iopub.feed_for(wire.channel_url(kmap.backend(kid).connection_info, "iopub"))
        assert feed is not None
        await stays.close()
        return stays.lost, feed.lost

    try:
        lost, feed_lost = aio.run(go())
    finally:
        aio.run(kmap.close())
    assert stays_fe.told == []
    assert lost == 0
    assert feed_lost == 0


def test_nested_windows_of_another_client_explain_one_reply_each(aio, watched):
    """Another client's cell runs on shell while its kernel_info request is answered on
    control (ipykernel's control thread): the control request's window lies inside the
    cell's. Each reply is numbered inside its own window; both are explained, whichever
    window closes first. A browser's request (a plain uuid for msg_id) is another client's
    too."""
    w = watched()
    pub = w.pub
    cell, info = request("execute_request"), request("kernel_info_request", str(uuid.uuid4()))
    pub.status("busy", cell)
    pub.publish("stream", {"name": "stdout", "text": "a"}, cell)
    pub.status("busy", info)
    pub.skip()  # the kernel_info_reply, on control
    pub.status("idle", info)
    pub.publish("stream", {"name": "stdout", "text": "b"}, cell)
    pub.skip()  # the execute_reply, on shell
    last = pub.msg("status", {"execution_state": "idle"}, cell)
    pub.send(last)
    assert w.settled(aio, last) == []


def test_a_window_explains_one_number_and_requests_without_reply_none(aio, watched):
    """A drop inside another client's request is still lost (its window explains its reply
    only); a comm message gets no reply, so a number missing inside its window is lost."""
    w = watched()
    pub = w.pub
    cell, comm = request("execute_request"), request("comm_msg")
    pub.status("busy", cell)
    pub.skip()  # a stream message dropped
    pub.publish("stream", {"name": "stdout", "text": "a"}, cell)
    pub.skip()  # the execute_reply
    pub.status("idle", cell)
    pub.status("busy", comm)
    pub.skip()  # a comm_msg the comm sent, dropped
    last = pub.msg("status", {"execution_state": "idle"}, comm)
    pub.send(last)
    # told at once, or in two parts when the messages came in two batches (a busy machine)
    assert sum(w.settled(aio, last)) == 2


def test_a_window_of_kernelmons_own_request_explains_nothing(aio, watched):
    """kernelmon reads the replies to its own requests (a request from this process): a
    number missing inside such a window that no reply of kernelmon's explains is lost."""
    w = watched()
    pub = w.pub
    own = Session(key=b"secret").msg("kernel_info_request", {})["header"]
    pub.status("busy", own)
    pub.skip()
    last = pub.msg("status", {"execution_state": "idle"}, own)
    pub.send(last)
    assert w.settled(aio, last) == [1]


def test_another_clients_request_begun_before_kernelmon_watched_is_no_loss(aio, watched):
    """kernelmon begins to watch (here: a new process's first message seen) while another
    client's cell runs: the cell's busy was published before, its idle still explains the
    reply numbered before it. A request whose busy was dropped explains its reply too, and
    the busy is lost."""
    w = watched()
    pub = w.pub
    pub.session = Session(key=b"secret")  # what follows is the first seen of its session
    cell = request("execute_request")
    pub.publish("stream", {"name": "stdout", "text": "a"}, cell)
    pub.skip()  # the execute_reply
    pub.status("idle", cell)
    other = request("complete_request")
    pub.skip()  # its busy, dropped
    pub.skip()  # the complete_reply
    last = pub.msg("status", {"execution_state": "idle"}, other)
    pub.send(last)
    assert w.settled(aio, last) == [1]
