"""A small time plot painted with QPainter: one series over the last minutes, with axes.

The y axis runs from 0 to a round value above the largest point (``nice_top`` for counts and
percentages, ``binary_top`` for bytes), labelled with the plot's formatter; the x axis from
``-span`` on the left to "now" on the right. The title line shows the current value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPalette, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from .figures import format_duration


def nice_top(value: float, floor: float = 1.0) -> float:
    """The smallest of 1, 2, 5 x 10^n that is at least ``value`` (and ``floor``)."""
    value = max(value, floor)
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        top = step * 10.0**exponent
        if top >= value * (1 - 1e-9):
            return top
    return 10.0 ** (exponent + 1)


def binary_top(value: float, floor: float = 1024.0 * 1024.0) -> float:
    """The smallest power of two (bytes) at least ``value`` (and ``floor``)."""
    value = max(value, floor, 1.0)
    return float(2 ** math.ceil(math.log2(value)))


#: The time spans a plot may show: the shortest that holds every point.
SPANS = (60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def shown_span(points: Sequence[tuple[float, float]], now: float, full: float) -> float:
    """How much time a plot shows: the shortest of ``SPANS`` that reaches back to the oldest
    point (so a kernel found a minute ago is not a sliver at the right), at most ``full``."""
    if not points:
        return min(SPANS[0], full)
    age = now - points[0][0]
    for span in SPANS:
        if span >= age:
            return min(span, full)
    return full


def plot_points(
    points: Sequence[tuple[float, float]], rect: QRectF, now: float, span: float, top: float
) -> list[QPointF]:
    """Where ``(time, value)`` points go in ``rect``: ``now`` at the right edge, ``now - span``
    at the left, 0 at the bottom and ``top`` at the top (older points are left out)."""
    out = []
    for at, value in points:
        age = now - at
        if age > span or top <= 0:
            continue
        x = rect.right() - max(age, 0.0) / span * rect.width()
        y = rect.bottom() - min(max(value / top, 0.0), 1.0) * rect.height()
        out.append(QPointF(x, y))
    return out


class TimePlot(QWidget):
    """One figure of one kernel over time (``set_points``), e.g. its CPU %."""

    def __init__(
        self,
        title: str,
        formatter: Callable[[float], str],
        colour: QColor,
        *,
        top: Callable[[float], float] = nice_top,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.formatter = formatter
        self.colour = colour
        self.top_for = top
        self.points: list[tuple[float, float]] = []
        self.now = 0.0
        self.span = 600.0
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(title)

    def sizeHint(self) -> QSize:
        return QSize(280, 120)

    def set_points(self, points: Sequence[tuple[float, float]], now: float, span: float) -> None:
        self.points = list(points)
        self.now = now
        self.span = shown_span(self.points, now, span if span > 0 else 600.0)
        self.setToolTip(f"{self.title}: {self.current_text()}")
        self.update()

    def clear(self) -> None:
        self.set_points([], self.now, self.span)

    @property
    def top(self) -> float:
        return self.top_for(max((v for _t, v in self.points), default=0.0))

    def current_text(self) -> str:
        """The newest value in words ("no samples yet" without any)."""
        if not self.points:
            return "no samples yet"
        return self.formatter(self.points[-1][1])

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        palette = self.palette()
        text_colour = palette.color(QPalette.ColorRole.WindowText)
        faint = QColor(text_colour)
        faint.setAlpha(60)
        metrics = QFontMetrics(self.font())
        line = metrics.height()
        top = self.top
        top_label = self.formatter(top)
        left = max(metrics.horizontalAdvance(top_label), metrics.horizontalAdvance("0")) + 6
        # below the title line, with room for the top label's upper half
        top_edge = line * 1.5 + 4
        area = QRectF(left, top_edge, self.width() - left - 4, self.height() - top_edge - line - 6)
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        painter.setPen(text_colour)
        painter.drawText(
            QRectF(4, 0, self.width() - 8, line + 2),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            self.title,
        )
        painter.drawText(
            QRectF(4, 0, self.width() - 8, line + 2),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            self.current_text(),
        )
        if area.width() < 10 or area.height() < 10:
            return
        # axes, a middle grid line, labels
        painter.setPen(QPen(faint, 1))
        painter.drawLine(area.bottomLeft(), area.bottomRight())
        painter.drawLine(area.bottomLeft(), area.topLeft())
        middle = area.top() + area.height() / 2
        painter.drawLine(QPointF(area.left(), middle), QPointF(area.right(), middle))
        painter.setPen(text_colour)
        label_box = QRectF(0, 0, left - 4, line)
        painter.drawText(
            label_box.translated(0, area.top() - line / 2),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            top_label,
        )
        painter.drawText(
            label_box.translated(0, area.bottom() - line / 2),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            "0",
        )
        bottom = QRectF(area.left(), area.bottom() + 2, area.width(), line)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignLeft, f"-{format_duration(self.span)}")
        painter.drawText(bottom, Qt.AlignmentFlag.AlignRight, "now")
        points = plot_points(self.points, area, self.now, self.span, top)
        if not points:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(self.colour)
        pen.setWidthF(1.6)
        painter.setPen(pen)
        if len(points) == 1:
            painter.drawEllipse(points[0], 1.5, 1.5)
        else:
            painter.drawPolyline(QPolygonF(points))
