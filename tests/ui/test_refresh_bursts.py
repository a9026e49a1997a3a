"""Bursts of kernel changes (a sample tick changes every kernel's figures) cost the window
and the tray one refresh of what reads every kernel, not one per kernel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from kernelmon.core import KernelMap
from kernelmon.core.events import KernelAdded, KernelChanged, KernelRemoved, UsageSampled
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.tray import KernelTray

from .conftest import QtLoop, window_tray

#: Kernels in a burst.
N = 40
#: What a burst may cost in reads of every kernel: the actions, the status bar and the tray
#: once each, and one more for the status bar's clock if it ticks meanwhile.
PER_BURST = 4


@pytest.fixture
def tray(window: MainWindow) -> Iterator[KernelTray]:
    with window_tray(window) as tray:
        yield tray


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, window: MainWindow) -> list[int]:
    """How often the store's kernels were listed (every reader of all kernels does so)."""
    count = [0]
    store = window.bridge.store
    original = store.models

    def counted() -> list[dict[str, Any]]:
        count[0] += 1
        return original()

    monkeypatch.setattr(store, "models", counted)
    return count


def model(kid: str, cpu: float = 0.0) -> dict[str, Any]:
    return {
        "id": kid,
        "name": "python3",
        "display_name": "Python 3",
        "execution_state": "idle",
        "origin": "owned",
        "cpu_percent": cpu,
    }


def settle(qloop: QtLoop) -> None:
    qloop.run(asyncio.sleep(0.05))


def test_a_burst_of_changes_refreshes_once(
    qloop: QtLoop, window: MainWindow, tray: KernelTray, reads: list[int]
) -> None:
    bridge = window.bridge
    kids = [f"burst-{i:02d}-0000-0000-0000-000000000000" for i in range(N)]
    settle(qloop)
    reads[0] = 0
    for kid in kids:
        bridge.on_kernel_map_event(KernelAdded(kid, model=model(kid)))
    settle(qloop)
    assert window.table_model.row_of(kids[-1]) == N - 1
    assert 1 <= reads[0] <= PER_BURST, f"{reads[0]} reads for {N} kernels added"

    # A sample tick: every kernel's figures change, then the totals come. The bridge sends
    # the rows in time slices (a loop turn each): one refresh per slice, not per kernel.
    reads[0] = 0
    slices = bridge.slices
    for kid in kids:
        bridge.on_kernel_map_event(KernelChanged(kid, frozenset({"cpu_percent"}), model(kid, 5)))
    bridge.on_kernel_map_event(UsageSampled("", total_cpu=5.0 * N, total_rss=0))
    settle(qloop)
    slices = bridge.slices - slices
    assert window.table_model.kernel_model(kids[0])["cpu_percent"] == 5
    assert slices < N // 4
    # figures alone change no action: at most the status bar's clock reads meanwhile
    assert reads[0] <= PER_BURST, f"{reads[0]} reads for {N} kernels changed"

    reads[0] = 0
    for kid in kids:
        bridge.on_kernel_map_event(KernelRemoved(kid, reason="test"))
    settle(qloop)
    assert window.table_model.row_of(kids[0]) == -1
    assert 1 <= reads[0] <= PER_BURST, f"{reads[0]} reads for {N} kernels removed"


def test_the_refresh_after_a_burst_shows_the_last_state(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap
) -> None:
    """Deferred, not lost: once the loop turns, the actions and status bar are current."""
    window.update_actions()
    assert not window.actions_by_name["shutdown_all"].isEnabled()

    async def go() -> str:
        kid = await kernel_map.start_kernel("python3")
        await asyncio.sleep(0.05)
        return kid

    kid = qloop.run(go())
    try:
        assert window.actions_by_name["shutdown_all"].isEnabled()
        assert window.status.counts_label.text().startswith("1 running")
    finally:
        qloop.run(kernel_map.shutdown_kernel(kid))
    settle(qloop)
    assert not window.actions_by_name["shutdown_all"].isEnabled()
    assert window.status.counts_label.text() == "No kernels"
