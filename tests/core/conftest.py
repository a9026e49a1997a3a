from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import KernelEvent
from kernelmon.core.protocol import iopub, wire
from tests.waiting import wait_until


def process_gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class EventLog:
    def __init__(self, kmap: KernelMap) -> None:
        self.events: list[KernelEvent] = []
        self.unsubscribe = kmap.subscribe(self.events.append)

    def of(self, kind: type, kernel_id: str | None = None) -> list:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (kernel_id is None or e.kernel_id == kernel_id)
        ]

    def clear(self) -> None:
        self.events.clear()


def idle_for(messages: list[tuple[str, dict]], msg_id: str) -> bool:
    """Whether ``messages`` (channel, message) hold the final idle of request ``msg_id``."""
    return any(
        c == "iopub"
        and m["header"]["msg_type"] == "status"
        and m["content"]["execution_state"] == "idle"
        and m["parent_header"].get("msg_id") == msg_id
        for c, m in messages
    )


class Frontend:
    """A frontend as far as the core can tell: the messages it got (channel, message) and
    the losses it was told (count and sentence, when attached by ``watched_kernel``). With
    ``stall_file``, the first IOPub message of a kind in ``stall_on`` stalls the whole loop
    until that file exists (meanwhile only libzmq's IO thread reads)."""

    def __init__(
        self,
        stall_file: Path | None = None,
        stall_on: Collection[str] = ("stream", "display_data"),
    ) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.told: list[tuple[int, str]] = []
        self.stall_file = stall_file
        self.stall_on = stall_on
        self.stalled = False

    def __call__(self, channel: str, msg: dict) -> None:
        stall = self.stall_file
        kind = msg["header"]["msg_type"]
        if stall is not None and not self.stalled and channel == "iopub" and kind in self.stall_on:
            self.stalled = True
            deadline = time.monotonic() + 60
            while not stall.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # the kernel's last messages are on their way meanwhile
        self.messages.append((channel, msg))

    def count(self, kind: str) -> int:
        return sum(1 for _c, m in self.messages if m["header"]["msg_type"] == kind)

    def types(self, channel: str) -> list[str]:
        return [m["header"]["msg_type"] for c, m in self.messages if c == channel]

    def printed(self) -> str:
        return "".join(
            m["content"]["text"]
            for c, m in self.messages
            if c == "iopub" and m["header"]["msg_type"] == "stream"
        )

    def lines(self) -> list[str]:
        return self.printed().splitlines()

    def replies(self, msg_id: str) -> list[dict]:
        return [
            m
            for c, m in self.messages
            if c == "shell" and m["parent_header"].get("msg_id") == msg_id
        ]

    def idle_for(self, msg_id: str) -> bool:
        return idle_for(self.messages, msg_id)

    def printed_for(self, msg_id: str) -> bool:
        return any(
            c == "iopub"
            and m["header"]["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == msg_id
            for c, m in self.messages
        )


@asynccontextmanager
async def watched_kernel(
    kmap: KernelMap, session: str, fe: Frontend, spec: str | None = None, *, settle: bool = False
) -> AsyncIterator[tuple[str, Any, iopub.Feed]]:
    """A new kernel (of ``spec``) with ``fe`` attached and told its losses: (kernel id,
    connection, IOPub feed). With ``settle``, every gap left open when the block ends is
    settled (told) before the connection is closed and the kernel shut down."""
    kid = await kmap.start_kernel(spec)
    conn = await kmap.connect(kid, session, fe)
    conn.on_lost = lambda n, text: fe.told.append((n, text))
    feed = iopub.feed_for(wire.channel_url(kmap.backend(kid).connection_info, "iopub"))
    assert feed is not None
    try:
        yield kid, conn, feed
        if settle:
            await asyncio.sleep(2 * iopub.GRACE + 0.5)
    finally:
        await conn.close()
        await kmap.shutdown_kernel(kid)


async def goes_busy_then_idle(kmap: KernelMap, kid: str, session: str) -> None:
    """A cell of 0.3 s run through a new connection: the kernel's model goes busy, then
    idle (its IOPub is watched)."""
    conn = await kmap.connect(kid, session, lambda c, m: None)
    conn.execute("import time; time.sleep(0.3)")
    await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "busy")
    await wait_until(lambda: kmap.kernel_model(kid)["execution_state"] == "idle")
    await conn.close()


async def wait_quiet(kmap: KernelMap, kid: str, since: int, quiet: float = 0.3) -> None:
    """Wait until the kernel has sent messages after ``since`` and then nothing for ``quiet``
    seconds while idle (a batch may hold both busy and idle, so watch the count)."""
    record = kmap.record(kid)
    await wait_until(lambda: record.messages > since, what="the kernel to react")
    last = (-1, 0.0)
    loop = asyncio.get_running_loop()
    while True:
        if record.messages != last[0]:
            last = (record.messages, loop.time())
        elif record.execution_state == "idle" and loop.time() - last[1] >= quiet:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
def small_queue(monkeypatch):
    """A subscriber queue of 50 messages: a stall of the loop loses output for sure."""
    monkeypatch.setattr(wire, "RECEIVE_HWM", 50)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("root")
    (r / "project" / "data").mkdir(parents=True)
    return r


@pytest.fixture(scope="module")
def kmap(aio, root):
    km = KernelMap(
        Settings(root_dir=str(root), kernel_info_timeout=30),
        restart_poll=0.2,
        shutdown_wait=2.0,
    )
    yield km
    aio.run(km.close())
    assert len(km) == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only; skipped where mounting is not permitted): a disk
    that can run full or be made read-only."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
