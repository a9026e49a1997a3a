import dataclasses
import json
import os

import pytest

from kernelmon.core import Settings, SettingsError


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.root_dir == str(tmp_path)
    assert s.cull_idle_timeout == 0
    assert s.cull_interval == 300
    assert s.cull_connected is False
    assert s.cull_busy is False
    assert s.buffer_offline_messages is True
    assert s.kernel_info_timeout == 60
    assert s.buffer_max_messages == 10_000
    assert s.buffer_max_bytes == 16 * 1024 * 1024


def test_monitoring_defaults_and_round_trip(tmp_path):
    s = Settings(root_dir=str(tmp_path))
    assert s.discover_kernels is True
    assert s.runtime_folders == ()
    assert s.cull_orphans is False
    assert s.sample_interval == 2.0
    assert (s.memory_warn_kernel_mb, s.memory_warn_total_mb, s.notify_job_seconds) == (0, 0, 0)
    s = dataclasses.replace(s, runtime_folders=["~/runtime", str(tmp_path), str(tmp_path)])
    assert s.runtime_folders == (os.path.expanduser("~/runtime"), str(tmp_path))
    path = tmp_path / "settings.json"
    s.save(path)
    assert json.loads(path.read_text())["runtime_folders"] == list(s.runtime_folders)
    assert Settings.load(path) == s


def test_relative_root_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert Settings(root_dir="sub").root_dir == str(tmp_path / "sub")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("root_dir", "/definitely/not/a/folder"),
        ("root_dir", 42),
        ("root_dir", ""),
        ("kernel_info_timeout", 0),
        ("kernel_info_timeout", -1.5),
        ("kernel_info_timeout", "60"),
        ("kernel_info_timeout", float("nan")),
        ("cull_idle_timeout", -1),
        ("cull_idle_timeout", None),
        ("cull_busy", 1),
        ("cull_connected", "yes"),
        ("buffer_offline_messages", None),
        ("buffer_max_messages", -1),
        ("buffer_max_messages", 1.5),
        ("buffer_max_bytes", -10),
        ("buffer_max_bytes", True),
        ("discover_kernels", "no"),
        ("cull_orphans", 0),
        ("runtime_folders", "/one/folder"),
        ("runtime_folders", [""]),
        ("runtime_folders", [3]),
        ("sample_interval", 0),
        ("sample_interval", 10**6),
        ("sample_interval", "2"),
        ("memory_warn_kernel_mb", -1),
        ("memory_warn_total_mb", 1.5),
        ("notify_job_seconds", -1),
    ],
)
def test_bad_values_name_field_and_value(tmp_path, field, value):
    kwargs = {"root_dir": str(tmp_path), field: value}
    with pytest.raises(SettingsError) as info:
        Settings(**kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_root_file_is_not_a_folder(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(SettingsError, match="not an existing folder"):
        Settings(root_dir=str(f))


@pytest.mark.parametrize("interval", [0, -5, 1e-9, 0.05, 1e12, 7 * 24 * 3600 + 1])
def test_cull_interval_outside_its_range_refused(tmp_path, interval):
    """1e12 s overflowed the culler's timer (the task died while culling looked on); 1e-9 s
    ran tens of thousands of passes a second."""
    with pytest.raises(SettingsError, match="cull_interval") as info:
        Settings(root_dir=str(tmp_path), cull_interval=interval)
    assert "0.1" in str(info.value)
    assert "604800" in str(info.value)


@pytest.mark.parametrize("interval", [0.1, 1, 7 * 24 * 3600])
def test_cull_interval_range_is_inclusive(tmp_path, interval):
    assert Settings(root_dir=str(tmp_path), cull_interval=interval).cull_interval == interval


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kernel_info_timeout", 1e12),
        ("kernel_info_timeout", 0.01),
        ("cull_idle_timeout", 1e300),
        ("notify_job_seconds", 1e300),
        ("buffer_max_messages", 10**30),
        ("buffer_max_bytes", 10**30),
        ("memory_warn_kernel_mb", 10**30),
        ("memory_warn_total_mb", 10**30),
        ("untracked_message_types", "kernel_info_request"),
        ("untracked_message_types", [3]),
        ("untracked_message_types", [""]),
        ("untracked_message_types", ["a b"]),
        ("untracked_message_types", ["x" * 101]),
        ("untracked_message_types", [f"t{i}" for i in range(300)]),
    ],
)
def test_numbers_and_lists_outside_their_range_refused(tmp_path, field, value):
    with pytest.raises(SettingsError) as info:
        Settings(**{"root_dir": str(tmp_path), field: value})
    assert info.value.field == field


def test_untracked_message_types_default_and_round_trip(tmp_path):
    """jupyter_server's default list, plus the usage messages it lacks."""
    manager = pytest.importorskip("jupyter_server.services.kernels.kernelmanager")
    s = Settings(root_dir=str(tmp_path))
    server = manager.MappingKernelManager.class_traits()["untracked_message_types"].default()
    assert set(s.untracked_message_types) == set(server) | {"usage_request", "usage_reply"}
    s = dataclasses.replace(s, untracked_message_types=[" kernel_info_request", "status", "status"])
    assert s.untracked_message_types == ("kernel_info_request", "status")
    path = tmp_path / "settings.json"
    s.save(path)
    assert Settings.load(path) == s


def test_replace_validates_again(tmp_path):
    s = Settings(root_dir=str(tmp_path))
    assert dataclasses.replace(s, cull_idle_timeout=10).cull_idle_timeout == 10
    with pytest.raises(SettingsError):
        dataclasses.replace(s, kernel_info_timeout=0)


def test_save_and_load_round_trip(tmp_path):
    s = Settings(root_dir=str(tmp_path), cull_idle_timeout=600, cull_busy=True, buffer_max_bytes=1)
    path = tmp_path / "cfg" / "settings.json"
    s.save(path)
    assert Settings.load(path) == s
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp file left


def test_load_ignores_unknown_keys_and_fills_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "root_dir": str(tmp_path), "future": 1}))
    s = Settings.load(path)
    assert s.root_dir == str(tmp_path)
    assert s.cull_interval == 300


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"kernel_info_timeout": -3}',
        '{"version": 99}',
        '{"version": "one"}',
    ],
)
def test_load_bad_file_raises_settings_error(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_text(text)
    with pytest.raises(SettingsError):
        Settings.load(path)


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    Settings(root_dir=str(tmp_path), cull_idle_timeout=5).save(path)
    before = path.read_text()

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        Settings(root_dir=str(tmp_path), cull_idle_timeout=99).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
