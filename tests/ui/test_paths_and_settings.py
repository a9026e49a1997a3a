"""Folders from the environment, and a settings file that is missing, good or corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernelmon import paths
from kernelmon.core import Settings
from kernelmon.settings_file import load_settings, save_settings


def test_env_overrides_every_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERNELMON_CONFIG_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("KERNELMON_STATE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("KERNELMON_LOG_DIR", str(tmp_path / "l"))
    assert paths.config_dir() == tmp_path / "c"
    assert paths.settings_file() == tmp_path / "c" / "settings.json"
    assert paths.window_state_file() == tmp_path / "s" / "window.ini"
    assert paths.log_file() == tmp_path / "l" / "kernelmon.log"


def test_platformdirs_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KERNELMON_CONFIG_DIR", "KERNELMON_STATE_DIR", "KERNELMON_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert paths.config_dir().name == "kernelmon"
    assert "kernelmon" in paths.log_dir().parts


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    settings, message = load_settings(tmp_path / "none.json", str(tmp_path))
    assert message is None
    assert settings == Settings(root_dir=str(tmp_path))


def test_saved_settings_come_back(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    assert save_settings(Settings(root_dir=str(tmp_path), cull_idle_timeout=90), path) is None
    settings, message = load_settings(path)
    assert message is None
    assert settings.cull_idle_timeout == 90
    assert settings.root_dir == str(tmp_path)


def test_root_dir_argument_wins_over_saved(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    other = tmp_path / "other"
    other.mkdir()
    Settings(root_dir=str(tmp_path), cull_busy=True).save(path)
    settings, _ = load_settings(path, str(other))
    assert settings.root_dir == str(other)
    assert settings.cull_busy is True


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps({"cull_idle_timeout": -5}), json.dumps([1, 2])]
)
def test_corrupt_file_falls_back_and_keeps_a_copy(tmp_path: Path, content: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    settings, message = load_settings(path, str(tmp_path))
    assert settings == Settings(root_dir=str(tmp_path))
    assert message is not None
    assert "defaults" in message
    copies = list(tmp_path.glob("settings.json.bad-*"))
    assert len(copies) == 1
    assert copies[0].read_text() == content
    assert str(copies[0]) in message


def test_vanished_root_dir_keeps_the_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    gone = tmp_path / "gone"
    gone.mkdir()
    Settings(root_dir=str(gone), cull_idle_timeout=42).save(path)
    gone.rmdir()
    settings, message = load_settings(path)
    assert settings.cull_idle_timeout == 42
    assert settings.root_dir == str(Path.home())
    assert message is not None
    assert "no longer exists" in message
