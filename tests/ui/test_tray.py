"""The tray's menu and actions, triggered directly (offscreen has no system tray)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QSystemTrayIcon

from kernelmon.core import KernelMap, Settings
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.tray import KernelTray, overall_state

from .conftest import QtLoop, another_window, closed_after, pid_alive, wait_until, window_tray


@pytest.fixture(scope="module")
def kernel_map(qloop: QtLoop, ui_root: Path) -> Iterator[KernelMap]:
    """As in conftest, with a quick auto-restarter so a killed kernel is noticed at once."""
    settings = Settings(root_dir=str(ui_root), kernel_info_timeout=30)
    with closed_after(qloop, KernelMap(settings, restart_poll=0.2)) as km:
        yield km


@pytest.fixture(scope="module")
def tray(window: MainWindow) -> Iterator[KernelTray]:
    with window_tray(window) as tray:
        yield tray


def test_overall_state() -> None:
    assert overall_state([]) == "none"
    assert overall_state([{"execution_state": "idle"}]) == "idle"
    assert overall_state([{"execution_state": "idle"}, {"execution_state": "busy"}]) == "busy"
    assert overall_state([{"execution_state": "busy"}, {"execution_state": "dead"}]) == "dead"


def test_offscreen_has_no_tray_and_the_window_has_none(window: MainWindow) -> None:
    assert not QSystemTrayIcon.isSystemTrayAvailable()
    with another_window(window.kernel_map, window.settings.settings_path, use_tray=True) as other:
        assert other.tray is None


def test_start_from_the_tray_then_act_on_the_kernel(
    qloop: QtLoop, tray: KernelTray, window: MainWindow, kernel_map: KernelMap, no_dialogs: Any
) -> None:
    tray.rebuild_menu()
    assert "no kernels" in tray.toolTip()

    async def go() -> str:
        tray.find_action("start").trigger()
        await wait_until(lambda: len(kernel_map) == 1)
        (kid,) = list(kernel_map)
        await wait_until(lambda: kernel_map.kernel_model(kid)["execution_state"] == "idle")
        return kid

    kid = qloop.run(go())
    assert "1 running, 0 busy, 0 dead" in tray.toolTip()
    tray.menu.aboutToShow.emit()  # the menu is rebuilt each time it opens
    assert kid in tray.kernel_menus
    assert "idle" in tray.kernel_menus[kid].title()

    async def restart() -> None:
        pid = kernel_map.kernel_model(kid)["pid"]
        tray.find_action("restart", kid).trigger()
        await wait_until(lambda: kernel_map.kernel_model(kid)["restarts"] == 1, timeout=40)
        await wait_until(lambda: not pid_alive(pid))

    qloop.run(restart())
    assert no_dialogs["confirm"][-1][0] == "Restart kernel"

    async def interrupt() -> None:
        conn = await kernel_map.connect(kid, "tray-test", lambda ch, msg: None)
        conn.execute("import time; time.sleep(60)")
        await wait_until(lambda: kernel_map.kernel_model(kid)["execution_state"] == "busy")
        await wait_until(lambda: "1 busy" in tray.toolTip())
        tray.rebuild_menu()
        tray.find_action("interrupt", kid).trigger()
        await wait_until(lambda: kernel_map.kernel_model(kid)["execution_state"] == "idle")
        await conn.close()

    qloop.run(interrupt())

    async def console() -> None:
        tray.rebuild_menu()
        tray.find_action("console", kid).trigger()
        assert kid in window.consoles.consoles
        await wait_until(lambda: kernel_map.kernel_model(kid)["connections"] == 1)
        window.consoles.consoles[kid].close()
        await wait_until(lambda: kernel_map.kernel_model(kid)["connections"] == 0)

    qloop.run(console())

    async def shutdown() -> None:
        pid = kernel_map.kernel_model(kid)["pid"]
        tray.rebuild_menu()
        tray.find_action("shutdown", kid).trigger()
        await wait_until(lambda: kid not in kernel_map, timeout=30)
        await wait_until(lambda: not pid_alive(pid))

    qloop.run(shutdown())
    tray.rebuild_menu()
    assert tray.kernel_menus == {}
    assert not tray.find_action("shutdown_all").isEnabled()


def test_pause_culling_from_the_tray(qloop: QtLoop, tray: KernelTray, window: MainWindow) -> None:
    async def go() -> None:
        window.settings.apply_user(
            dataclasses.replace(window.kernel_map.settings, cull_idle_timeout=300)
        )
        tray.rebuild_menu()
        action = tray.find_action("pause_culling")
        assert not action.isChecked()
        action.trigger()
        assert window.settings.paused
        assert not window.kernel_map.culling
        tray.rebuild_menu()
        assert tray.find_action("pause_culling").isChecked()
        assert window.actions_by_name["pause_culling"].isChecked()
        tray.find_action("pause_culling").trigger()
        assert not window.settings.paused
        assert window.kernel_map.culling
        window.settings.apply_user(
            dataclasses.replace(window.kernel_map.settings, cull_idle_timeout=0)
        )

    qloop.run(go())


def test_shut_down_all_from_the_tray(
    qloop: QtLoop, tray: KernelTray, window: MainWindow, kernel_map: KernelMap, no_dialogs: Any
) -> None:
    async def go() -> list[int]:
        ids = [await window.commands.request_start("python3") for _ in range(2)]
        pids = [kernel_map.kernel_model(k)["pid"] for k in ids]
        tray.rebuild_menu()
        assert set(tray.kernel_menus) == set(ids)
        tray.find_action("shutdown_all").trigger()
        await wait_until(lambda: len(kernel_map) == 0, timeout=30)
        return pids

    pids = qloop.run(go())
    assert no_dialogs["confirm"][-1][0] == "Shut down all kernels"
    assert window.table_model.rowCount() == 0
    assert not any(pid_alive(p) for p in pids)


def test_culled_kernel_is_notified(
    qloop: QtLoop, tray: KernelTray, window: MainWindow, kernel_map: KernelMap
) -> None:
    async def go() -> str:
        kid = await window.commands.request_start("python3")
        # a cull pass with a tiny timeout culls the idle kernel and says so
        kernel_map.apply_settings(dataclasses.replace(kernel_map.settings, cull_idle_timeout=0.001))
        await asyncio.sleep(0.01)
        await kernel_map.cull_kernels()
        await wait_until(lambda: any(t == "Kernel culled" for t, _ in tray.notifications))
        kernel_map.apply_settings(dataclasses.replace(kernel_map.settings, cull_idle_timeout=0))
        return kid

    kid = qloop.run(go())
    assert kid not in kernel_map
    assert any(t.startswith("culled:") for t in window.event_log.texts())


def test_window_toggle_and_quit_via_tray(
    qloop: QtLoop, tray: KernelTray, window: MainWindow
) -> None:
    window.show()
    tray.rebuild_menu()
    assert tray.find_action("toggle_window").text() == "Hide window"
    tray.find_action("toggle_window").trigger()
    assert not window.isVisible()
    tray.rebuild_menu()
    assert tray.find_action("toggle_window").text() == "Show window"
    tray.find_action("toggle_window").trigger()
    assert window.isVisible()
    assert tray.find_action("quit").isEnabled()


def test_failed_restart_notifies(
    qloop: QtLoop,
    tray: KernelTray,
    window: MainWindow,
    kernel_map: KernelMap,
    no_dialogs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernelmon.core import RestartFailed

    async def go() -> None:
        kid = await window.commands.request_start("python3")

        async def fail(kernel_id: str) -> None:
            raise RestartFailed(f"Kernel {kernel_id} died during its restart.")

        monkeypatch.setattr(kernel_map, "restart_kernel", fail)
        tray.rebuild_menu()
        label = window.commands.label(kid)
        tray.find_action("restart", kid).trigger()
        await wait_until(
            lambda: any(t == f"Restart of {label} failed" for t, _ in tray.notifications)
        )
        await kernel_map.shutdown_kernel(kid)

    qloop.run(go())
    assert "died during its restart" in no_dialogs["show_error"][-1][1]


def test_a_dying_kernel_is_notified(
    qloop: QtLoop, tray: KernelTray, window: MainWindow, kernel_map: KernelMap
) -> None:
    import psutil

    async def go() -> str:
        kid = await window.commands.request_start("python3")
        psutil.Process(kernel_map.kernel_model(kid)["pid"]).kill()
        await wait_until(lambda: any(t == "Kernel died" for t, _ in tray.notifications))
        # the auto-restarter brings it back
        await wait_until(lambda: kernel_map.kernel_model(kid)["execution_state"] == "idle")
        await kernel_map.shutdown_kernel(kid)
        return kid

    qloop.run(go())
    text = next(x for t, x in tray.notifications if t == "Kernel died")
    assert "restarting it" in text
    assert any(t.startswith("died:") for t in window.event_log.texts())
