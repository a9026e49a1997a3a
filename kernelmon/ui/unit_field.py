"""A number field with its unit: a spin box and, where the setting has several units (time,
memory, bytes), a unit box; "0 = off" beside the fields where 0 turns something off.

The value is always in the setting's own unit (seconds, MiB, bytes); what is shown is the
largest unit the value is a whole number of (3600 s shows as 1 h, 16777216 bytes as 16 MiB).
Typing a number and picking a unit (or pressing Enter) is one edit: ``editingFinished``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

#: kind -> its units (name, size in the setting's own unit), smallest first.
UNITS: dict[str, tuple[tuple[str, int], ...]] = {
    "seconds": (("s", 1), ("min", 60), ("h", 3600), ("days", 86400)),
    "mib": (("MiB", 1), ("GiB", 1024)),
    "bytes": (("bytes", 1), ("KiB", 1024), ("MiB", 1 << 20), ("GiB", 1 << 30)),
}
#: Kinds whose settings are whole numbers.
WHOLE = ("count", "mib", "bytes")
#: The largest number a field takes (the settings' own checks say the real limits).
MAXIMUM = 1e15


def wheel_when_focused(
    widget: QWidget, event: QWheelEvent, wheel: Callable[[QWheelEvent], None]
) -> None:
    """Let a field take the mouse wheel only once it has the focus; otherwise the wheel
    scrolls what holds it (a panel scrolled past a field does not change the setting)."""
    if widget.hasFocus():
        wheel(event)
    else:
        event.ignore()


class NumberSpin(QDoubleSpinBox):
    """A spin box that shows 0.5, 16 and 600, not 0.500, 16.000 and 600.000; the mouse wheel
    changes it only once it has the focus (scrolling the panel past it changes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:
        wheel_when_focused(self, event, super().wheelEvent)

    def textFromValue(self, value: float) -> str:
        text = f"{value:.{self.decimals()}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text


class UnitBox(QComboBox):
    """The unit's box; the mouse wheel changes it only once it has the focus."""

    def __init__(self) -> None:
        super().__init__()
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, event: QWheelEvent) -> None:
        wheel_when_focused(self, event, super().wheelEvent)


class NumberField(QWidget):
    """A setting's number: ``value()`` / ``set_value()`` in the setting's own unit."""

    #: The user finished editing (Enter, leaving the field, or picking a unit).
    editingFinished = Signal()

    def __init__(
        self, kind: str, unit: str, off: bool, tip: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.kind = kind
        #: The user picked the unit shown: values it shows exactly keep it.
        self._picked = False
        self.units = UNITS.get(kind, ((unit, 1),))
        self.spin = NumberSpin()
        self.spin.setDecimals(3 if kind == "seconds" else 0 if kind == "count" else 2)
        self.spin.setRange(0, MAXIMUM)
        self.spin.setKeyboardTracking(False)
        self.spin.setMinimumWidth(60)
        self.spin.setMaximumWidth(80)
        self.spin.setToolTip(tip)
        self.spin.editingFinished.connect(self.editingFinished)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.spin)
        self.unit_box: QComboBox | None = None
        if len(self.units) > 1:
            self.unit_box = UnitBox()
            self.unit_box.setToolTip(tip)
            for name, _size in self.units:
                self.unit_box.addItem(name)
            self.unit_box.activated.connect(self._on_unit_picked)
            layout.addWidget(self.unit_box)
        elif unit:
            layout.addWidget(QLabel(unit))
        self.off_label: QLabel | None = None
        if off:
            self.spin.setSpecialValueText("off")
            self.off_label = QLabel("0 = off")
            self.off_label.setToolTip(tip)
            layout.addWidget(self.off_label)
        layout.addStretch(1)

    def _on_unit_picked(self, _index: int) -> None:
        self._picked = True
        self.editingFinished.emit()

    def setToolTip(self, tip: str) -> None:
        super().setToolTip(tip)
        self.spin.setToolTip(tip)

    @property
    def unit(self) -> str:
        return self.units[self.unit_box.currentIndex() if self.unit_box else 0][0]

    def _size(self) -> int:
        return self.units[self.unit_box.currentIndex() if self.unit_box else 0][1]

    def value(self) -> float | int:
        """The number in the setting's unit (a whole number for whole kinds), as typed."""
        self.spin.interpretText()
        value = self.spin.value() * self._size()
        return round(value) if self.kind in WHOLE else value

    def set_value(self, value: float) -> None:
        """Show ``value`` (in the setting's unit) in the unit the user picked if it shows it
        exactly, else in the largest unit it is a whole number of; 0 keeps the unit shown."""
        shown = value / self._size()
        if self._picked and round(shown, self.spin.decimals()) == shown:
            pass
        elif value and self.unit_box is not None:
            fits = [i for i, (_n, size) in enumerate(self.units) if (value / size).is_integer()]
            self.unit_box.setCurrentIndex(fits[-1] if fits else 0)
        self.spin.blockSignals(True)
        self.spin.setValue(value / self._size())
        self.spin.blockSignals(False)

    def text(self) -> str:
        """What the field shows, e.g. "10 min" or "off"."""
        shown = self.spin.text()
        return shown if shown == "off" else f"{shown} {self.unit}".strip()
