"""Where kernelmon keeps its files: settings (config), window state (state) and logs.

The folders come from platformdirs; the environment variables ``KERNELMON_CONFIG_DIR``,
``KERNELMON_STATE_DIR`` and ``KERNELMON_LOG_DIR`` override them (tests use these).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

import platformdirs

APP_NAME = "kernelmon"


def _folder(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def config_dir() -> Path:
    """Folder of the user's settings (``settings.json``)."""
    return _folder("KERNELMON_CONFIG_DIR", platformdirs.user_config_path(APP_NAME, False))


def state_dir() -> Path:
    """Folder of what the app remembers between runs (window geometry, answers)."""
    return _folder("KERNELMON_STATE_DIR", platformdirs.user_state_path(APP_NAME, False))


def log_dir() -> Path:
    """Folder of the rotating log file."""
    return _folder("KERNELMON_LOG_DIR", platformdirs.user_log_path(APP_NAME, False))


def settings_file() -> Path:
    return config_dir() / "settings.json"


def window_state_file() -> Path:
    return state_dir() / "window.ini"


def log_file() -> Path:
    return log_dir() / "kernelmon.log"


@functools.cache
def resources_dir() -> Path:
    """The folder holding kernelmon.svg, icons/ and kernelmon.desktop (installed, or the
    checkout's); Qt-free, for the window's icons and the desktop entry alike."""
    try:
        installed = importlib.resources.files("kernelmon") / "resources"
        if installed.is_dir():
            return Path(str(installed))
    except (ModuleNotFoundError, OSError):
        pass
    return Path(__file__).resolve().parents[1] / "resources"
