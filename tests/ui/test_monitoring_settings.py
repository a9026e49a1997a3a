"""The discovery and resource settings (validated, applied, saved), memory and job
notifications in the tray or the status bar, and the resource totals. No kernels needed:
the warnings are the core's facts, sent here through the bridge as the core sends them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelmon.core import KernelMap
from kernelmon.core.events import JobFinished, MemoryWarning, UsageSampled
from kernelmon.settings_file import load_settings
from kernelmon.ui import dialogs
from kernelmon.ui.main_window import MainWindow
from kernelmon.ui.tray import tooltip_text

from .conftest import QtLoop, another_window, edit_field

MIB = 1024 * 1024


@pytest.fixture
def restore_settings(qloop: QtLoop, window: MainWindow) -> Iterator[None]:
    before = window.settings.user
    yield

    async def reset() -> None:
        window.settings.apply_user(before)

    qloop.run(reset())


def test_the_panel_refuses_bad_values_with_a_sentence(
    window: MainWindow, kernel_map: KernelMap, restore_settings: None
) -> None:
    panel = window.monitoring_panel
    before = kernel_map.settings
    for name, text, why in (("sample_interval", "0", "more than 0 s"),):
        edit_field(panel, name, text)
        assert panel.error_label.isVisibleTo(panel), name
        assert why in panel.error_label.text(), (name, panel.error_label.text())
        assert "previous value is kept" in panel.error_label.text()
        assert panel.edits[name].value() == getattr(before, name)
    # words and negative numbers cannot be typed: the fields are spin boxes from 0
    for name in ("memory_warn_kernel_mb", "memory_warn_total_mb", "notify_job_seconds"):
        assert panel.edits[name].spin.minimum() == 0
    assert kernel_map.settings == before


def test_runtime_folders_are_added_checked_and_removed(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restore_settings: None,
) -> None:
    panel = window.monitoring_panel
    picked: list[str | None] = [str(tmp_path / "missing"), str(tmp_path), str(tmp_path), None]
    monkeypatch.setattr(dialogs, "choose_folder", lambda parent, title: picked.pop(0))

    async def go() -> None:
        panel.add_button.click()  # a folder that does not exist
        assert "is not an existing folder" in panel.error_label.text()
        assert panel.folders == []
        panel.add_button.click()
        assert not panel.error_label.isVisibleTo(panel)
        assert panel.folders == [str(tmp_path)]
        assert kernel_map.settings.runtime_folders == (str(tmp_path),)
        assert load_settings(window.settings.settings_path)[0].runtime_folders == (str(tmp_path),)
        panel.add_button.click()  # the same again
        assert "watched already" in panel.error_label.text()
        panel.add_button.click()  # cancelled: nothing happens
        assert panel.folders == [str(tmp_path)]
        assert not panel.remove_button.isEnabled()
        panel.folder_list.item(0).setSelected(True)
        assert panel.remove_button.isEnabled()
        panel.remove_button.click()
        assert panel.folders == []
        assert kernel_map.settings.runtime_folders == ()

    qloop.run(go())
    assert picked == []


def test_settings_are_applied_saved_and_shown_after_a_relaunch(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, restore_settings: None
) -> None:
    panel = window.monitoring_panel

    async def go() -> None:
        edit_field(panel, "sample_interval", "0.5")
        edit_field(panel, "memory_warn_kernel_mb", "512")
        edit_field(panel, "memory_warn_total_mb", "2048")
        edit_field(panel, "notify_job_seconds", "30")
        panel.checks["discover_kernels"].setChecked(False)
        window.culler_panel.checks["cull_orphans"].setChecked(True)

    qloop.run(go())
    applied = kernel_map.settings
    assert (applied.sample_interval, applied.memory_warn_kernel_mb) == (0.5, 512)
    assert (applied.memory_warn_total_mb, applied.notify_job_seconds) == (2048, 30)
    assert applied.discover_kernels is False
    assert applied.cull_orphans is True
    saved, message = load_settings(window.settings.settings_path)
    assert message is None
    assert saved == window.settings.user
    with another_window(
        KernelMap(saved),
        window.settings.settings_path,
        window_state_path=Path(window.settings.settings_path).with_name("relaunch.ini"),
    ) as relaunched:
        other = relaunched.monitoring_panel
        assert other.edits["memory_warn_kernel_mb"].text() == "512 MiB"
        assert other.edits["sample_interval"].text() == "0.5 s"
        assert not other.checks["discover_kernels"].isChecked()
        assert relaunched.culler_panel.checks["cull_orphans"].isChecked()


def test_folders_given_for_one_run_are_watched_but_not_saved(
    qloop: QtLoop, window: MainWindow, tmp_path: Path
) -> None:
    saved_folder = tmp_path / "saved"
    run_folder = tmp_path / "run"
    saved_folder.mkdir()
    run_folder.mkdir()
    settings = dataclasses.replace(window.settings.user, runtime_folders=(str(saved_folder),))
    km = KernelMap(settings)
    with another_window(
        km,
        tmp_path / "settings.json",
        window_state_path=tmp_path / "window.ini",
        user_settings=settings,
        run_folders=[str(run_folder)],
    ) as other:
        assert "For this run only" in other.monitoring_panel.run_folders_label.text()

        async def go() -> None:
            other.settings.apply_user(dataclasses.replace(settings, memory_warn_kernel_mb=100))

        qloop.run(go())
        assert km.settings.runtime_folders == (str(saved_folder), str(run_folder))
        assert load_settings(tmp_path / "settings.json")[0].runtime_folders == (str(saved_folder),)
        assert other.monitoring_panel.folders == [str(saved_folder)]


def test_memory_and_job_notices_without_a_tray_go_to_the_status_bar(
    window: MainWindow,
) -> None:
    assert window.tray is None
    bridge = window.bridge
    bridge.on_kernel_map_event(MemoryWarning("abcdef0123", rss=900 * MIB, limit=512 * MIB))
    assert "uses 900 MiB, over the limit of 512 MiB" in window.status.currentMessage()
    assert "abcdef01 uses 900 MiB" in window.event_log.texts()[0]
    bridge.on_kernel_map_event(MemoryWarning("", rss=3 * 1024 * MIB, limit=2048 * MIB, total=True))
    assert "All kernels together use 3.00 GiB" in window.status.currentMessage()
    bridge.on_kernel_map_event(JobFinished("abcdef0123", seconds=125.0))
    assert "finished a job that ran 2 min 5 s" in window.status.currentMessage()
    assert "finished a job" in window.event_log.texts()[0]


def test_usage_totals_in_the_status_bar_and_the_tray(window: MainWindow) -> None:
    window.bridge.on_kernel_map_event(UsageSampled("", total_cpu=45.0, total_rss=5 * 1024**3))
    label = window.status.usage_label
    assert label.isVisibleTo(window.status)
    assert label.text() == "CPU 45 % · Memory 5.00 GiB", "beyond 32 bits"
    tray = window.create_tray()
    window.tray = tray
    try:
        assert tray.toolTip().endswith("memory 5.00 GiB")
        assert tray.toolTip().startswith("kernelmon: no kernels")
        window.bridge.on_kernel_map_event(MemoryWarning("k1", rss=700 * MIB, limit=512 * MIB))
        window.bridge.on_kernel_map_event(JobFinished("k1", seconds=40.0))
        titles = [title for title, _text in tray.notifications]
        assert titles == ["A kernel uses a lot of memory", "Job finished"]
        assert "kernel k1 uses 700 MiB" in tray.notifications[0][1]
        assert "finished a job" in window.event_log.texts()[0], "the log keeps them too"
    finally:
        window.tray = None
        tray.deleteLater()


def test_tray_tooltip_text() -> None:
    models = [
        {"execution_state": "idle", "origin": "owned"},
        {"execution_state": "busy", "origin": "external"},
        {"execution_state": "dead", "origin": "stale"},
    ]
    assert tooltip_text(models, 0) == "kernelmon: 2 kernels: 2 running, 1 busy, 0 dead"
    assert tooltip_text(models, 3 * MIB).endswith("; memory 3.00 MiB")
