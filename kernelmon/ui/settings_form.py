"""A form bound to some fields of ``Settings``, applied as soon as a field is edited.

The form builds new ``Settings`` with ``dataclasses.replace`` (which validates), and either
emits ``settings_changed`` or shows, under the form, the reason ``SettingsError`` gives and
keeps the previous value. Numbers are spin boxes with their unit (``NumberField``: a time in
s, min, h or days, memory in MiB or GiB, a buffer in bytes up to GiB), "0 = off" beside those
where 0 turns something off. Fields this version of the core's ``Settings`` does not have are
left out. Subclasses pass their fields, may add rows (``form``) and refuse values in
``check``, then call ``finish()``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ..core import Settings, SettingsError
from .unit_field import NumberField

logger = logging.getLogger(__name__)

#: (label, unit, kind, tooltip); kind is "seconds", "count", "mib" (MiB or GiB), "bytes"
#: (bytes to GiB), "flag" or "words" (a list of names, shown and typed separated by commas).
#: A number kind prefixed "off_" (e.g. "off_seconds") is turned off by 0.
Field = tuple[str, str, str, str]


def words_text(value: tuple[str, ...]) -> str:
    return ", ".join(value)


def words_value(text: str) -> tuple[str, ...]:
    """A list of names typed separated by commas or spaces."""
    return tuple(word for word in text.replace(",", " ").split() if word)


def settings_fields() -> set[str]:
    """The fields this version of ``Settings`` has."""
    return {f.name for f in dataclasses.fields(Settings)}


class SettingsForm(QWidget):
    """Number fields and check boxes for some ``Settings`` fields."""

    #: ``(settings)``: the user changed a field and the new settings are valid.
    settings_changed = Signal(object)

    def __init__(
        self, settings: Settings, fields: dict[str, Field], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        known = settings_fields()
        self.fields = {name: spec for name, spec in fields.items() if name in known}
        #: The fields' editors: a ``NumberField`` per number, a line edit per list of words.
        self.edits: dict[str, QLineEdit | NumberField] = {}
        self.checks: dict[str, QCheckBox] = {}
        self.form = QFormLayout()
        for name, (label, unit, kind, tip) in self.fields.items():
            if kind == "flag":
                check = QCheckBox(label)
                check.setObjectName(name)
                check.setToolTip(tip)
                check.toggled.connect(lambda _on, n=name: self.on_field_edited(n))
                self.checks[name] = check
                self.form.addRow(check)
                continue
            edit: QLineEdit | NumberField
            if kind == "words":
                edit = QLineEdit()
                edit.setAlignment(Qt.AlignmentFlag.AlignRight)
            else:
                edit = NumberField(kind.removeprefix("off_"), unit, kind.startswith("off_"), tip)
            edit.setObjectName(name)
            edit.setToolTip(tip)
            edit.editingFinished.connect(lambda n=name: self.on_field_edited(n))
            self.edits[name] = edit
            label_widget = QLabel(f"{label}:")
            label_widget.setToolTip(tip)
            self.form.addRow(label_widget, edit)
        self.error_label = QLabel()
        self.error_label.setObjectName("settings_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.hide()

    def finish(self) -> None:
        """Lay the form out and show the settings (after subclasses added their rows)."""
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self.set_settings(self._settings)

    @property
    def settings(self) -> Settings:
        return self._settings

    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` (without emitting ``settings_changed``)."""
        self._settings = settings
        for name, edit in self.edits.items():
            if isinstance(edit, NumberField):
                edit.set_value(getattr(settings, name))
            else:
                edit.setText(words_text(getattr(settings, name)))
        for name, check in self.checks.items():
            check.blockSignals(True)
            check.setChecked(bool(getattr(settings, name)))
            check.blockSignals(False)

    def _value(self, name: str) -> Any:
        if name in self.checks:
            return self.checks[name].isChecked()
        edit = self.edits[name]
        if isinstance(edit, NumberField):
            return edit.value()
        return words_value(edit.text())

    def check(self, name: str, value: Any) -> None:
        """Refuse a value ``Settings`` would accept but the form should not (raise
        ``SettingsError``)."""

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    def on_field_edited(self, name: str) -> None:
        value = self._value(name)
        if value == getattr(self._settings, name):
            self.error_label.hide()
            return
        label = self.fields[name][0]
        try:
            self.check(name, value)
            new = dataclasses.replace(self._settings, **{name: value})
        except SettingsError as e:
            self.show_error(f"{label}: {e.why}. The previous value is kept.")
            logger.info("Refused setting %s=%r: %s", name, value, e.why)
            self.set_settings(self._settings)
            return
        self.apply(new)

    def apply(self, new: Settings) -> None:
        """Show and announce valid new settings."""
        self.error_label.hide()
        self.set_settings(new)
        self.settings_changed.emit(new)
