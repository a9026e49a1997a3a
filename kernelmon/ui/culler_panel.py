"""The culler and buffering settings form (a dock in the main window).

Each field is applied as soon as it is edited (see ``SettingsForm``).
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from ..core import Settings
from ..core.settings import (
    MAX_BUFFER_BYTES,
    MAX_BUFFER_MESSAGES,
    MAX_CULL_INTERVAL,
    MAX_DURATION,
    MAX_KERNEL_INFO_TIMEOUT,
    MIN_CULL_INTERVAL,
    MIN_KERNEL_INFO_TIMEOUT,
)
from .settings_form import Field, SettingsForm

#: field -> (label, unit, kind, tooltip): see ``settings_form.Field``.
FIELDS: dict[str, Field] = {
    "cull_idle_timeout": (
        "Cull after idle",
        "s",
        "off_seconds",
        "Shut down kernels that have done nothing for this many seconds. 0 turns culling off; "
        f"at most {MAX_DURATION:g} s (a year).",
    ),
    "cull_interval": (
        "Check every",
        "s",
        "seconds",
        "How often the culler looks for idle kernels. A kernel is culled on the first check "
        f"after its idle time passes the limit. From {MIN_CULL_INTERVAL:g} s to "
        f"{MAX_CULL_INTERVAL:g} s (a week): more often would keep the computer busy, less "
        "often would never come.",
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
        "The most messages kept per disconnected session; the oldest are dropped first. "
        f"0 to {MAX_BUFFER_MESSAGES:,}.",
    ),
    "buffer_max_bytes": (
        "Keep at most",
        "bytes",
        "bytes",
        "The most bytes kept per disconnected session; the oldest messages are dropped first. "
        f"0 to {MAX_BUFFER_BYTES:,} (64 GiB).",
    ),
    "kernel_info_timeout": (
        "Start/restart timeout",
        "s",
        "seconds",
        "How long a starting or restarted kernel may take to answer before it counts as failed. "
        f"From {MIN_KERNEL_INFO_TIMEOUT:g} s to {MAX_KERNEL_INFO_TIMEOUT:g} s (a day).",
    ),
    "untracked_message_types": (
        "Not activity",
        "",
        "words",
        "Messages that do not count as a kernel's activity for the culler (nor the messages "
        "answering them, unless the kernel is busy), separated by commas. The default is "
        "jupyter_server's list plus usage_request and usage_reply, so kernelmon and a Jupyter "
        "server cull alike. Empty: every message is activity.",
    ),
}


class CullerPanel(SettingsForm):
    """A form for the culler, buffering and timeout settings."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(settings, FIELDS, parent)
        self.setObjectName("culler_panel")
        self.finish()
