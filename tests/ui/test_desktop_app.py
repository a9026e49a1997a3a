"""The app launched from a desktop: errors at launch in a dialog when no terminal shows
stderr; ``kernelmon --install-desktop-entry`` / ``--uninstall-desktop-entry`` (temporary XDG
folders)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kernelmon import app
from kernelmon.ui import dialogs

from .conftest import run_kernelmon


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("CONFIG", "STATE", "LOG"):
        monkeypatch.setenv(f"KERNELMON_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


@pytest.mark.parametrize("terminal", [False, True])
def test_a_launch_error_is_shown_in_a_dialog_when_no_terminal_shows_it(
    qapp: Any, folders: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    shown: list[str] = []
    monkeypatch.setattr(dialogs, "launch_error", shown.append, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")  # as on a desktop (Qt itself runs already)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "stdin", Terminal() if terminal else io.StringIO())
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    missing = folders / "missing"
    assert app.main(["--root-dir", str(missing)]) == 2
    assert "is not a folder" in stderr.getvalue()
    if terminal:
        assert shown == [], "a terminal shows stderr"
    else:
        assert len(shown) == 1
        assert str(missing) in shown[0]
        assert "is not a folder" in shown[0]


def run_in(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kernelmon ARGS`` with its XDG and log folders under ``tmp_path``."""
    return run_kernelmon(
        *args,
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        KERNELMON_LOG_DIR=str(tmp_path / "log"),
    )


def test_desktop_entry_installed_and_removed_from_the_command_line(tmp_path: Path) -> None:
    help_text = run_in(tmp_path, "--help").stdout
    for option in ("--install-desktop-entry", "--uninstall-desktop-entry", "--in-tray"):
        assert option in help_text
    entry = tmp_path / "data" / "applications" / "kernelmon.desktop"
    icon = tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "kernelmon.svg"
    autostart = tmp_path / "config" / "autostart" / "kernelmon.desktop"
    result = run_in(tmp_path, "--install-desktop-entry")
    assert result.returncode == 0, result.stderr
    assert str(entry) in result.stdout
    assert entry.is_file()
    assert icon.read_bytes().startswith(b"<")
    assert "Name=kernelmon" in entry.read_text()
    exec_line = next(x for x in entry.read_text().splitlines() if x.startswith("Exec="))
    assert "kernelmon" in exec_line
    # the login autostart the window's File menu adds goes too
    autostart.parent.mkdir(parents=True)
    other = tmp_path / "data" / "applications" / "other.desktop"
    other.write_text("[Desktop Entry]\nName=other\n")
    from kernelmon import desktop

    autostart.write_text(desktop.entry_text(autostart=True))
    result = run_in(tmp_path, "--uninstall-desktop-entry")
    assert result.returncode == 0, result.stderr
    assert not entry.exists()
    assert not icon.exists()
    assert not autostart.exists()
    assert other.exists(), "only kernelmon's own files"
    result = run_in(tmp_path, "--uninstall-desktop-entry")
    assert result.returncode == 0
    assert "Nothing to remove" in result.stdout


def test_a_desktop_entry_kernelmon_did_not_write_is_not_replaced(tmp_path: Path) -> None:
    entry = tmp_path / "data" / "applications" / "kernelmon.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nExec=/opt/kernelmon/run\n")
    for option in ("--install-desktop-entry", "--uninstall-desktop-entry"):
        result = run_in(tmp_path, option)
        assert result.returncode == 1
        assert "kernelmon did not write it" in result.stderr or "not written by" in result.stderr
        assert "Traceback" not in result.stderr
    assert entry.read_text() == "[Desktop Entry]\nExec=/opt/kernelmon/run\n"
