"""The culler and buffering settings form (a dock in the main window).

Each field is applied as soon as it is edited (see ``SettingsForm``). Below the form, per
Jupyter server or gateway, whether the server culls its kernels by itself and whether
kernelmon's culler acts on them (the servers panel's checkbox; off by default).
"""

from __future__ import annotations

from html import escape as _escape
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

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


def escape(text: str) -> str:
    return _escape(text, quote=False)


class CullerPanel(SettingsForm):
    """A form for the culler, buffering and timeout settings."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(settings, FIELDS, parent)
        self.setObjectName("culler_panel")
        #: per server: who culls its kernels (``set_servers``); hidden without servers
        self.servers_note = QLabel("")
        self.servers_note.setObjectName("servers_note")
        self.servers_note.setWordWrap(True)
        self.servers_note.setTextFormat(Qt.TextFormat.RichText)
        self.servers_note.setToolTip(
            "kernelmon's culler acts on a server's kernels only if you allow it for that "
            "server (Servers panel); a server may also cull its kernels by itself."
        )
        self.servers_note.hide()
        self.finish()
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.count() - 1, self.servers_note)  # above the stretch

    def set_servers(self, servers: list[dict[str, Any]]) -> None:
        """Say, per server (``KernelMap.list_servers()`` entries), who culls its kernels."""
        from .servers_panel import kernelmon_culls_text, server_culls_text

        lines = [
            f"<b>{escape(str(server.get('name') or server.get('url')))}</b>: "
            f"{escape(server_culls_text(server))} {escape(kernelmon_culls_text(server))}"
            for server in servers
        ]
        self.servers_note.setText("<p>" + "</p><p>".join(lines) + "</p>" if lines else "")
        self.servers_note.setVisible(bool(lines))
