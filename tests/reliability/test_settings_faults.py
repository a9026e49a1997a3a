"""A bad settings file never stops kernelmon and loses nothing."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from kernelmon.core import Settings
from kernelmon.settings_file import load_settings, save_settings


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{truncated", "not valid JSON"),
        ('{"version": 7, "cull_busy": true}', "newer kernelmon"),
        ('{"version": 1, "kernel_info_timeout": -1}', "kernel_info_timeout"),
        ('{"version": 1, "cull_interval": 1e12}', "cull_interval"),
        ('{"version": 1, "cull_idle_timeout": ' + "9" * 5000 + "}", "not usable JSON"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ('{"root_dir": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deeply"),
        ('{"untracked_message_types": "status"}', "untracked_message_types"),
        ('{"version": 1, "x": "' + "y" * 2_000_000 + '"}', "larger than"),
    ],
    ids=[
        "truncated",
        "newer",
        "bad-timeout",
        "huge-interval",
        "digits",
        "nested",
        "nested-root",
        "untracked",
        "huge-file",
    ],
)
def test_bad_file_gives_defaults_keeps_a_copy_and_says_so(tmp_path, text, said):
    path = tmp_path / "settings.json"
    path.write_text(text)
    settings, message = load_settings(path, str(tmp_path))
    assert settings == Settings(root_dir=str(tmp_path))
    assert message is not None
    assert said in message
    [copy] = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.bad-")]
    assert copy.read_text() == text
    assert str(copy) in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_keeps_old_file(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    path = folder / "settings.json"
    Settings(root_dir=str(tmp_path), cull_idle_timeout=5).save(path)
    before = path.read_text()
    folder.chmod(0o500)
    try:
        message = save_settings(Settings(root_dir=str(tmp_path), cull_idle_timeout=9), path)
    finally:
        folder.chmod(0o700)
    assert message is not None
    assert "could not be saved" in message
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("module", "call", "error"),
    [
        (os, "fsync", OSError(28, "No space left on device")),
        # as root (CI) permissions cannot make a folder read-only, so the file system's
        # answer is simulated where the temporary file is created
        (tempfile, "mkstemp", OSError(30, "Read-only file system")),
    ],
    ids=["full disk", "read-only file system"],
)
def test_a_save_the_disk_refuses_keeps_the_old_file(tmp_path, monkeypatch, module, call, error):
    path = tmp_path / "settings.json"
    Settings(root_dir=str(tmp_path), cull_idle_timeout=5).save(path)
    before = path.read_text()

    def refused(*_a, **_k):
        raise error

    monkeypatch.setattr(module, call, refused)
    message = save_settings(Settings(root_dir=str(tmp_path), cull_idle_timeout=9), path)
    assert message is not None
    assert error.strerror in message
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_only_the_unusable_fields_fall_back(tmp_path):
    """An interval saved by an older kernelmon (0 was taken as "the default") costs that field
    only; everything else the user set is kept, and so is a copy of the file."""
    path = tmp_path / "settings.json"
    text = json.dumps(
        {"version": 1, "cull_idle_timeout": 600, "cull_interval": 0, "sample_interval": 1e9}
    )
    path.write_text(text)
    settings, message = load_settings(path, str(tmp_path))
    assert settings.cull_idle_timeout == 600
    assert settings.cull_interval == Settings(root_dir=str(tmp_path)).cull_interval
    assert settings.sample_interval == Settings(root_dir=str(tmp_path)).sample_interval
    assert message is not None
    assert "cull_interval" in message
    assert "sample_interval" in message
    [copy] = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.bad-")]
    assert copy.read_text() == text
