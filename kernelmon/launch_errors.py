"""What a launch of the window says when it stops before the window opens: on stderr, and
in a dialog too when no terminal shows stderr (launched from the desktop's menu, or at login);
and the ``--install-desktop-entry`` / ``--uninstall-desktop-entry`` options."""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("kernelmon.app")


def has_terminal() -> bool:
    """Someone may read stderr: stdin or stderr is a terminal."""
    for stream in (sys.stdin, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return True
        except (AttributeError, ValueError, OSError):
            continue
    return False


def can_show_window() -> bool:
    """A display a dialog can appear on (not Qt's offscreen or minimal platform)."""
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def tell(text: str) -> None:
    """Why the launch stops: on stderr, and in a dialog too when there is no terminal to read
    it (launched from the desktop's menu, or at login)."""
    print(text, file=sys.stderr)
    if not has_terminal() and can_show_window():
        try:
            from .ui import dialogs

            dialogs.launch_error(text)
        except Exception:  # stderr and the log have it already
            logger.exception("Could not show the launch error in a dialog")


def desktop_entry(install: bool) -> int:
    """``--install-desktop-entry`` / ``--uninstall-desktop-entry``; the exit status."""
    from . import desktop

    try:
        if install:
            files = desktop.install_entry()
            print("kernelmon is in your applications menu: " + ", ".join(map(str, files)))
            return 0
        files = desktop.uninstall_entry()
        autostart = desktop.set_autostart(False)
        files += [autostart] if autostart else []
    except desktop.DesktopError as e:
        tell(f"kernelmon: {e}.")
        return 1
    print("Removed " + ", ".join(map(str, files)) if files else "Nothing to remove.")
    return 0
