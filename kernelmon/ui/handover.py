"""Another launch of kernelmon handed its options to this one: apply what can be applied."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .notifier import Level

if TYPE_CHECKING:
    from .main_window import MainWindow

logger = logging.getLogger(__name__)


def stays_in_tray(window: MainWindow, in_tray: bool) -> bool:
    """Whether a launch with ``--in-tray`` (``in_tray``) leaves the window out of sight, in
    the tray: only while the tray icon shows (without it the window would be out of reach).
    Otherwise the window is shown (at start) or raised (when another launch is handed
    over)."""
    return in_tray and window.tray is not None


def take_launch(
    window: MainWindow,
    *,
    root_dir: str | None = None,
    run_folders: Sequence[str] = (),
    no_tray: bool = False,
    in_tray: bool = False,
    log_level: str | None = None,
    apply_log_level: Callable[[str], None] | None = None,
    launcher_pid: int | None = None,
) -> tuple[list[str], list[str]]:
    """Apply another launch's options (the folders absolute already), raise the window
    (unless the launch asked for the tray, ``--in-tray``, and the tray icon shows) and say
    in the event log and the status bar what was applied and what was ignored; returns
    both lists."""
    settings = window.settings
    applied: list[str] = []
    ignored: list[str] = []
    if root_dir is not None and root_dir != settings.user.root_dir:
        if os.path.isdir(root_dir):
            settings.apply_user(dataclasses.replace(settings.user, root_dir=root_dir))
            applied.append(f"--root-dir {root_dir} (new kernels work under it)")
        else:
            ignored.append(f"--root-dir {root_dir} (not a folder)")
    new = [f for f in dict.fromkeys(run_folders) if f not in settings.run_folders]
    missing = [f for f in new if not os.path.isdir(f)]
    ignored += [f"--runtime-dir {f} (not a folder)" for f in missing]
    added = settings.add_run_folders(f for f in new if f not in missing)
    applied += [f"--runtime-dir {f} (watched for this run)" for f in added]
    if log_level is not None and apply_log_level is not None:
        apply_log_level(log_level)
        applied.append(f"--log-level {log_level}")
    if no_tray and window.tray is not None:
        ignored.append("--no-tray (the tray icon stays until kernelmon is restarted)")
    if stays_in_tray(window, in_tray):
        applied.append("--in-tray (the window stays as it is)")
    else:
        window.raise_window()
    who = f" (pid {launcher_pid})" if launcher_pid else ""
    text = f"Another launch of kernelmon{who} was handed over to this window"
    if applied:
        text += "; applied: " + "; ".join(applied)
    if ignored:
        text += "; ignored: " + "; ".join(ignored)
    window.notifier.notify(Level.WARNING if ignored else Level.INFO, "", text)
    logger.info("%s", text)
    return applied, ignored
