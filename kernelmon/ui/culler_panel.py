"""The culler and buffering settings form (a dock in the main window).

Each field is applied as soon as it is edited (see ``SettingsForm``).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from ..core import Settings, SettingsError
from .settings_form import Field, SettingsForm

#: field -> (label, unit, kind, tooltip); kind is "seconds", "count" or "flag".
FIELDS: dict[str, Field] = {
    "cull_idle_timeout": (
        "Cull after idle",
        "s",
        "seconds",
        "Shut down kernels that have done nothing for this many seconds. 0 turns culling off.",
    ),
    "cull_interval": (
        "Check every",
        "s",
        "seconds",
        "How often the culler looks for idle kernels. A kernel is culled on the first check "
        "after its idle time passes the limit.",
    ),
    "cull_connected": (
        "Cull kernels with connections",
        "",
        "flag",
        "Also cull idle kernels that a console or notebook is still attached to. Off: a "
        "kernel with a connection is never culled.",
    ),
    "cull_busy": (
        "Cull busy kernels",
        "",
        "flag",
        "Also cull kernels that are running code but have sent nothing for the idle time. "
        "Off: a busy kernel is never culled.",
    ),
    "cull_orphans": (
        "Also cull orphaned kernels",
        "",
        "flag",
        "Also cull idle kernels whose application (a notebook server, an editor) is gone. "
        "Off: kernelmon only culls the kernels it started.",
    ),
    "buffer_offline_messages": (
        "Keep messages while disconnected",
        "",
        "flag",
        "When a console disconnects, keep what its kernel sends and show it when the console "
        "comes back (with the same session).",
    ),
    "buffer_max_messages": (
        "Keep at most",
        "messages",
        "count",
        "The most messages kept per disconnected session; the oldest are dropped first.",
    ),
    "buffer_max_bytes": (
        "Keep at most",
        "bytes",
        "count",
        "The most bytes kept per disconnected session; the oldest messages are dropped first.",
    ),
    "kernel_info_timeout": (
        "Start/restart timeout",
        "s",
        "seconds",
        "How long a starting or restarted kernel may take to answer before it counts as failed.",
    ),
}


class CullerPanel(SettingsForm):
    """A form for the culler, buffering and timeout settings."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(settings, FIELDS, parent)
        self.setObjectName("culler_panel")
        self.finish()

    def check(self, name: str, value: Any) -> None:
        if name == "cull_interval" and isinstance(value, float) and value <= 0:
            # Settings would quietly use its default instead; say no instead.
            raise SettingsError(name, value, "it must be more than 0 s")
