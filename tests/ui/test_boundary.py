"""The UI's boundary: the bridge's store and its one signal per burst, the notifier's one
way to tell the user, and the user's vs the effective settings. No kernels needed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from kernelmon.core import Settings
from kernelmon.core.events import KernelAdded, KernelChanged, KernelRemoved
from kernelmon.ui.bridge import KernelBridge
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.notifier import Level
from kernelmon.ui.settings_controller import effective_settings
from kernelmon.ui.tray import KernelTray

from .conftest import QtLoop
from .test_kernel_table import FakeMap, model_for


@pytest.fixture
def bridge() -> Iterator[tuple[KernelBridge, FakeMap, list[frozenset[str]]]]:
    fake = FakeMap()
    bridge = KernelBridge(fake, interval_ms=0)  # type: ignore[arg-type]
    bursts: list[frozenset[str]] = []
    bridge.store.kernels_changed.connect(bursts.append)
    yield bridge, fake, bursts
    bridge.close()


def test_the_store_holds_the_latest_models_and_names_each_burst_once(
    qtbot: Any, bridge: tuple[KernelBridge, FakeMap, list[frozenset[str]]]
) -> None:
    b, fake, bursts = bridge
    for kid in ("a", "b", "c"):
        fake.emit(KernelAdded(kid, model_for(kid)))
    assert b.store.get("a") is not None, "in the store as soon as the event is handled"
    assert bursts == [], "named once the loop turns"
    qtbot.waitUntil(lambda: bursts == [frozenset({"a", "b", "c"})], timeout=2000)
    # figures alone change no action and no count: the store has them, no burst names them
    fake.emit(KernelChanged("a", frozenset({"cpu_percent"}), model_for("a", cpu_percent=7.0)))
    qtbot.wait(20)
    assert b.store.get("a")["cpu_percent"] == 7.0
    assert bursts == [frozenset({"a", "b", "c"})]
    # a fact (the state) and a removal: one burst naming both
    fake.emit(KernelChanged("b", frozenset({"execution_state"}), model_for("b", "busy")))
    fake.emit(KernelRemoved("c", "shut down"))
    qtbot.waitUntil(lambda: len(bursts) == 2, timeout=2000)
    assert bursts[1] == frozenset({"b", "c"})
    assert b.store.get("b")["execution_state"] == "busy"
    assert "c" not in b.store
    # a late change of a removed kernel does not bring it back
    fake.emit(KernelChanged("c", frozenset({"execution_state"}), model_for("c")))
    assert "c" not in b.store
    # a closed bridge names nothing more
    b.close()
    b.end_burst()
    assert len(bursts) == 2


def test_one_notify_reaches_the_status_bar_the_event_log_and_the_tray(
    qloop: QtLoop, window: MainWindow, no_dialogs: dict[str, list[Any]]
) -> None:
    tray: KernelTray = window.create_tray()
    try:
        window.notifier.notify(Level.WARNING, "Heads up", "something to see")
        assert window.status.currentMessage() == "Heads up: something to see"
        assert window.event_log.texts()[0] == "something to see"
        assert tray.notifications[-1] == ("Heads up", "something to see")
        # an error the core's event logged already: not twice in the log; a dialog
        before = window.event_log.texts()
        window.notifier.notify(Level.ERROR, "It failed", "why", log=False, dialog=True)
        assert window.event_log.texts() == before
        assert no_dialogs["show_error"][-1] == ("It failed", "why")
        # a status message: the status bar only
        n = len(tray.notifications)
        window.notifier.status("Doing it…")
        assert window.status.currentMessage() == "Doing it…"
        assert window.event_log.texts() == before
        assert len(tray.notifications) == n
    finally:
        tray.deleteLater()


def test_effective_settings_pause_culling_and_add_this_runs_folders() -> None:
    user = Settings(cull_idle_timeout=600, runtime_folders=("/saved",))
    assert effective_settings(user, paused=False, run_folders=()) is user
    run = effective_settings(user, paused=True, run_folders=("/saved", "/run"))
    assert run.cull_idle_timeout == 0
    assert run.runtime_folders == ("/saved", "/run")
    assert dataclasses.replace(run, cull_idle_timeout=600, runtime_folders=("/saved",)) == user


def test_pausing_runs_other_settings_than_the_user_saved(qloop: QtLoop, window: MainWindow) -> None:
    settings = window.settings
    user = settings.user
    try:
        settings.set_paused(True)
        assert window.kernel_map.settings.cull_idle_timeout == 0
        assert settings.user == user, "what the user chose is unchanged"
        assert settings.effective() == window.kernel_map.settings
        assert window.actions_by_name["pause_culling"].isChecked()
    finally:
        settings.set_paused(False)
    assert window.kernel_map.settings == settings.effective()
    assert not window.actions_by_name["pause_culling"].isChecked()
