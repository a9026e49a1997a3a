"""The culler and buffering settings form (a dock in the main window).

Each field is applied as soon as it is edited: the form builds new ``Settings`` with
``dataclasses.replace`` (which validates), and either emits ``settings_changed`` or shows,
next to the form, the reason ``SettingsError`` gives and keeps the previous value.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ..core import Settings, SettingsError

logger = logging.getLogger(__name__)

#: field -> (label, unit, kind, tooltip); kind is "seconds", "count" or "flag".
FIELDS: dict[str, tuple[str, str, str, str]] = {
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


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_value(kind: str, text: str) -> Any:
    """The text of a number field as a number (or the text itself when it is not one, so
    ``Settings`` explains what is wrong)."""
    text = text.strip().replace("_", "")
    try:
        return int(text) if kind == "count" else float(text)
    except ValueError:
        return text


class CullerPanel(QWidget):
    """A form for the culler, buffering and timeout settings."""

    #: ``(settings)``: the user changed a field and the new settings are valid.
    settings_changed = Signal(object)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("culler_panel")
        self._settings = settings
        self.edits: dict[str, QLineEdit] = {}
        self.checks: dict[str, QCheckBox] = {}
        form = QFormLayout()
        for name, (label, unit, kind, tip) in FIELDS.items():
            if kind == "flag":
                check = QCheckBox(label)
                check.setObjectName(name)
                check.setToolTip(tip)
                check.toggled.connect(lambda _on, n=name: self.on_field_edited(n))
                self.checks[name] = check
                form.addRow(check)
                continue
            edit = QLineEdit()
            edit.setObjectName(name)
            edit.setToolTip(tip)
            edit.setMaximumWidth(110)
            edit.setAlignment(Qt.AlignmentFlag.AlignRight)
            edit.editingFinished.connect(lambda n=name: self.on_field_edited(n))
            self.edits[name] = edit
            row = QHBoxLayout()
            row.addWidget(edit)
            unit_label = QLabel(unit)
            unit_label.setToolTip(tip)
            row.addWidget(unit_label)
            row.addStretch(1)
            label_widget = QLabel(f"{label}:")
            label_widget.setToolTip(tip)
            form.addRow(label_widget, row)
        self.error_label = QLabel()
        self.error_label.setObjectName("settings_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self.set_settings(settings)

    @property
    def settings(self) -> Settings:
        return self._settings

    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` (without emitting ``settings_changed``)."""
        self._settings = settings
        for name, edit in self.edits.items():
            edit.setText(_number_text(getattr(settings, name)))
        for name, check in self.checks.items():
            check.blockSignals(True)
            check.setChecked(bool(getattr(settings, name)))
            check.blockSignals(False)

    def _value(self, name: str) -> Any:
        if name in self.checks:
            return self.checks[name].isChecked()
        return parse_value(FIELDS[name][2], self.edits[name].text())

    def on_field_edited(self, name: str) -> None:
        value = self._value(name)
        if value == getattr(self._settings, name) and not isinstance(value, str):
            self.error_label.hide()
            return
        try:
            if name == "cull_interval" and isinstance(value, float) and value <= 0:
                # Settings would quietly use its default instead; say no instead.
                raise SettingsError(name, value, "it must be more than 0 s")
            new = dataclasses.replace(self._settings, **{name: value})
        except SettingsError as e:
            label = FIELDS[name][0]
            self.error_label.setText(f"{label}: {e.why}. The previous value is kept.")
            self.error_label.show()
            logger.info("Refused setting %s=%r: %s", name, value, e.why)
            if name in self.edits:
                self.edits[name].setText(_number_text(getattr(self._settings, name)))
            return
        self.error_label.hide()
        self.set_settings(new)
        self.settings_changed.emit(new)
