"""The UI enables its actions, and explains them, from the core's refusals in the kernel
model, never from its own idea of the kernel (origin, state): whatever sentence the kernel's
backend writes is what the tooltips, the tray and the status bar show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kernelmon.core.events import KernelAdded, KernelChanged, KernelRemoved
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.tray import KernelTray

from .conftest import QtLoop, window_tray

KID = "0f1e2d3c-refusals-0000-0000-000000000000"
#: Sentences no UI code contains: only the model can have put them there.
NO_RESTART = "Backend says: not now, for reason R-17"
NO_INTERRUPT = "Backend says: nothing to interrupt, reason I-42"


def model(origin: str, refusals: dict[str, str]) -> dict[str, Any]:
    return {
        "id": KID,
        "name": "python3",
        "display_name": "Python 3",
        "execution_state": "idle",
        "origin": origin,
        "refusals": refusals,
    }


@pytest.fixture
def kernel(qloop: QtLoop, window: MainWindow) -> Iterator[str]:
    """A kernel the window knows only from its model (nothing acts on it here)."""
    window.bridge.on_kernel_map_event(
        KernelAdded(KID, model=model("owned", {"restart": NO_RESTART, "interrupt": NO_INTERRUPT}))
    )
    qloop.sleep(0.02)
    yield KID
    window.bridge.on_kernel_map_event(KernelRemoved(KID, reason="test"))
    qloop.sleep(0.02)


@pytest.fixture
def tray(window: MainWindow) -> Iterator[KernelTray]:
    with window_tray(window) as tray:
        yield tray


def test_the_actions_show_the_cores_own_sentences(
    qloop: QtLoop, window: MainWindow, kernel: str, tray: KernelTray, no_dialogs: Any
) -> None:
    window.select_kernel(kernel)
    acts = window.actions_by_name
    assert not acts["restart"].isEnabled()
    assert NO_RESTART in acts["restart"].toolTip()
    assert not acts["interrupt"].isEnabled()
    assert NO_INTERRUPT in acts["interrupt"].toolTip()
    assert acts["shutdown"].isEnabled(), "not named in the refusals: it can be tried"
    assert acts["console"].isEnabled()
    # asked anyway (a stale menu, a script): nothing is asked nor done, the sentence is told
    assert window.commands.request_restart([kernel]) == []
    assert NO_RESTART in window.status.currentMessage()
    assert window.commands.request_interrupt([kernel]) == []
    assert NO_INTERRUPT in window.status.currentMessage()
    assert no_dialogs["confirm"] == []
    tray.rebuild_menu()
    assert not tray.find_action("restart", kernel).isEnabled()
    assert tray.find_action("restart", kernel).toolTip() == NO_RESTART
    assert not tray.find_action("interrupt", kernel).isEnabled()
    assert tray.find_action("shutdown", kernel).isEnabled()


def test_what_the_core_allows_is_offered_whoever_owns_the_kernel(
    qloop: QtLoop, window: MainWindow, kernel: str, tray: KernelTray
) -> None:
    """Another application's kernel whose backend refuses nothing: the UI does not refuse a
    restart on its own (the core decides, e.g. a server's kernel it can restart)."""
    base = window.actions_by_name["restart"].statusTip()
    window.bridge.on_kernel_map_event(
        KernelChanged(KID, frozenset({"origin", "refusals"}), model("external", {}))
    )
    window.bridge.flush()
    window.select_kernel(kernel)
    restart = window.actions_by_name["restart"]
    assert restart.isEnabled()
    assert NO_RESTART not in restart.toolTip()
    assert window.actions_by_name["interrupt"].isEnabled()
    tray.rebuild_menu()
    assert tray.find_action("restart", kernel).isEnabled()
    # and back: the refusal comes with the next change of the model
    window.bridge.on_kernel_map_event(
        KernelChanged(KID, frozenset({"refusals"}), model("external", {"restart": NO_RESTART}))
    )
    window.bridge.flush()
    assert not restart.isEnabled()
    assert restart.toolTip() != base
    assert NO_RESTART in restart.toolTip()
