"""Reading the user's settings file forgivingly: a bad file never stops the app.

``load_settings`` returns usable settings and, when the file could not be used, a sentence
for the user; the bad file is kept next to the good one so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from .core import Settings, SettingsError

logger = logging.getLogger(__name__)


def default_root_dir() -> str:
    return str(Path.home())


def _keep_bad_copy(path: Path) -> Path | None:
    copy = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        shutil.copy2(path, copy)
    except OSError as e:
        logger.warning("Could not keep a copy of the bad settings file %s: %s", path, e)
        return None
    return copy


def load_settings(path: Path, root_dir: str | None = None) -> tuple[Settings, str | None]:
    """The settings saved at ``path`` (``root_dir``, when given, replaces the saved one).

    Returns ``(settings, message)``; ``message`` is None when the file was fine or missing,
    otherwise it says what was wrong and where the bad file was kept.
    """
    root = root_dir if root_dir is not None else default_root_dir()
    try:
        settings = Settings.load(path)
    except FileNotFoundError:
        return Settings(root_dir=root), None
    except SettingsError as e:
        if e.field == "root_dir" and root_dir is None:
            # Only the saved folder is gone: keep everything else.
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                data["root_dir"] = default_root_dir()
                settings = Settings.from_dict(data)
            except (SettingsError, ValueError, OSError, RecursionError):
                pass
            else:
                return settings, (
                    f"The saved root folder {e.value!r} no longer exists; "
                    f"using {settings.root_dir} instead."
                )
        copy = _keep_bad_copy(path)
        kept = f" The bad file was kept as {copy}." if copy else ""
        logger.warning("Settings file %s is unusable: %s", path, e)
        partly = _without_bad_fields(path, root, e)
        if partly is not None:
            settings, dropped = partly
            if root_dir is not None:
                settings = dataclasses.replace(settings, root_dir=root_dir)
            return settings, (
                f"Some of your settings could not be used ({'; '.join(dropped)}); their "
                f"defaults are used, the others are kept.{kept}"
            )
        return (
            Settings(root_dir=root),
            f"Your settings could not be read ({e}); the defaults are used.{kept}",
        )
    if root_dir is not None:
        settings = dataclasses.replace(settings, root_dir=root_dir)
    return settings, None


def _without_bad_fields(
    path: Path, root: str, error: SettingsError
) -> tuple[Settings, list[str]] | None:
    """The saved settings without the fields that are not usable (each replaced by its
    default), and what was wrong with each; None when the file as a whole is unusable."""
    names = {f.name for f in dataclasses.fields(Settings)}
    if error.field not in names:
        return None  # not JSON, not an object, a newer version...
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    dropped: list[str] = []
    for _ in names:
        data.pop(error.field, None)
        dropped.append(str(error))
        data.setdefault("root_dir", root)
        try:
            return Settings.from_dict(data), dropped
        except SettingsError as e:
            if e.field not in names:
                return None
            error = e
    return None


def save_settings(settings: Settings, path: Path) -> str | None:
    """Save; returns a sentence for the user when that failed (None when it worked)."""
    try:
        settings.save(path)
    except OSError as e:
        logger.error("Could not save settings to %s: %s", path, e)
        return f"Your settings could not be saved to {path}: {e}"
    return None
