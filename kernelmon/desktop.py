"""kernelmon as a desktop citizen (freedesktop.org/XDG): its entry in the applications menu
(a ``.desktop`` file and the icon, for the user only) and starting at login in the tray
(XDG autostart). Nothing here imports Qt.

Where: ``$XDG_DATA_HOME/applications/kernelmon.desktop`` and
``$XDG_DATA_HOME/icons/hicolor/scalable/apps/kernelmon.svg`` (``~/.local/share`` without
``XDG_DATA_HOME``), ``$XDG_CONFIG_HOME/autostart/kernelmon.desktop`` (``~/.config``); the
folders come from platformdirs, which reads those variables. Each file written carries the
line ``X-kernelmon-Installed=true``; removing touches only files that carry it (a file the
user or a package wrote is left alone, and said so).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import platformdirs

from .core.files import write_bytes_atomic, write_text_atomic
from .paths import resources_dir

ENTRY_NAME = "kernelmon.desktop"
ICON_NAME = "kernelmon.svg"
#: The line that marks the files kernelmon wrote (and may remove).
MARK = "X-kernelmon-Installed=true"
#: The option the autostart entry launches kernelmon with (the window stays in the tray).
IN_TRAY = "--in-tray"


class DesktopError(Exception):
    """Installing or removing a desktop file failed; the message is a sentence."""


def entry_file() -> Path:
    """The user's entry in the applications menu."""
    return platformdirs.user_data_path() / "applications" / ENTRY_NAME


def icon_file() -> Path:
    return platformdirs.user_data_path() / "icons" / "hicolor" / "scalable" / "apps" / ICON_NAME


def autostart_file() -> Path:
    """The XDG autostart entry that starts kernelmon at login."""
    return platformdirs.user_config_path() / "autostart" / ENTRY_NAME


def command() -> str:
    """How the entries launch kernelmon: the ``kernelmon`` next to this Python (a venv's),
    else the one on PATH, else this Python with ``-m kernelmon``."""
    beside = Path(sys.executable).with_name("kernelmon")
    if beside.is_file() and os.access(beside, os.X_OK):
        return shlex.quote(str(beside))
    found = shutil.which("kernelmon")
    if found:
        return shlex.quote(found)
    return f"{shlex.quote(sys.executable)} -m kernelmon"


def entry_text(autostart: bool = False) -> str:
    """The ``.desktop`` file: the shipped one, launching this kernelmon (in the tray for
    autostart), marked as kernelmon's."""
    shipped = (resources_dir() / ENTRY_NAME).read_text(encoding="utf-8")
    exec_line = f"Exec={command()}" + (f" {IN_TRAY}" if autostart else "")
    lines = [exec_line if line.startswith("Exec=") else line for line in shipped.splitlines()]
    if autostart:
        lines += ["X-GNOME-Autostart-enabled=true", "NoDisplay=true"]
    return "\n".join([*lines, MARK, ""])


def is_ours(path: Path) -> bool:
    """The file exists and kernelmon wrote it."""
    try:
        return MARK in path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False


def _write(path: Path, data: str | bytes) -> None:
    """Write one of kernelmon's desktop files (readable by all, as such files are), as the
    core writes its own: never half-written, never over a ``.desktop`` file it did not write."""
    if path.exists() and not is_ours(path) and path.suffix == ".desktop":
        raise DesktopError(f"{path} exists and kernelmon did not write it; it is left alone")
    try:
        if isinstance(data, str):
            write_text_atomic(path, data, mode=0o644)
        else:
            write_bytes_atomic(path, data, mode=0o644)
    except OSError as e:
        raise DesktopError(f"cannot write {path}: {e.strerror or e}") from e


def _remove(path: Path) -> bool:
    """Remove a file kernelmon wrote; False when there is none."""
    if not path.exists():
        return False
    if not is_ours(path):
        raise DesktopError(f"{path} was not written by kernelmon; it is left alone")
    try:
        path.unlink()
    except OSError as e:
        raise DesktopError(f"cannot remove {path}: {e.strerror or e}") from e
    return True


def install_entry() -> list[Path]:
    """Put kernelmon in the user's applications menu (the entry and its icon); the files."""
    try:
        icon = (resources_dir() / ICON_NAME).read_bytes()
    except OSError as e:
        raise DesktopError(f"cannot read kernelmon's icon: {e.strerror or e}") from e
    _write(icon_file(), icon)
    _write(entry_file(), entry_text())
    return [entry_file(), icon_file()]


def uninstall_entry() -> list[Path]:
    """Take kernelmon out of the applications menu; the files removed. The icon goes too
    when it is the copy kernelmon put there (the same bytes as its own)."""
    removed = [entry_file()] if _remove(entry_file()) else []
    icon = icon_file()
    try:
        same = icon.read_bytes() == (resources_dir() / ICON_NAME).read_bytes()
    except OSError:
        same = False
    if same:
        icon.unlink(missing_ok=True)
        removed.append(icon)
    return removed


def entry_installed() -> bool:
    return is_ours(entry_file())


def set_autostart(on: bool) -> Path | None:
    """Start kernelmon (in the tray) at login, or not; the file written or removed."""
    if on:
        _write(autostart_file(), entry_text(autostart=True))
        return autostart_file()
    return autostart_file() if _remove(autostart_file()) else None


def autostart_on() -> bool:
    return is_ours(autostart_file())
