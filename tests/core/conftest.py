from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.events import KernelEvent
from tests.waiting import wait_until  # noqa: F401  (the tests of this package import it from here)


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
