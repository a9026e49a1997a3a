"""Sparklines: a kernel's recent CPU, memory and message rate as small lines in a table cell.

``SparklineDelegate`` paints the cell from the model's ``HISTORY_ROLE`` value, a triple
``(cpu_values, rss_values, message_rates)`` of lists (oldest first), or None when there is
no history yet.
``polyline`` (pure) turns values into points inside a rectangle; ``draw_line`` paints them.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

CPU_COLOUR = QColor("#1e6fd9")
MEMORY_COLOUR = QColor("#8e44ad")
RATE_COLOUR = QColor("#e67e22")

#: Role with ``(cpu_values, rss_values, message_rates)`` for the sparkline column.
HISTORY_ROLE = Qt.ItemDataRole.UserRole + 2


def polyline(
    values: Sequence[float], rect: QRectF, top: float | None = None, slots: int | None = None
) -> list[QPointF]:
    """Points for ``values`` in ``rect``: 0 at the bottom, ``top`` (default: the largest
    value) at the top; ``slots`` points fill the width (default: as many as there are values),
    the newest at the right edge."""
    if not values:
        return []
    high = max(values) if top is None else top
    if high <= 0:
        high = 1.0
    n = max(slots or len(values), len(values), 2)
    step = rect.width() / (n - 1)
    first = n - len(values)
    points = []
    for i, value in enumerate(values):
        x = rect.left() + (first + i) * step
        fraction = min(max(value / high, 0.0), 1.0)
        y = rect.bottom() - fraction * rect.height()
        points.append(QPointF(x, y))
    return points


def draw_line(painter: QPainter, points: list[QPointF], colour: QColor, width: float = 1.2) -> None:
    if not points:
        return
    pen = QPen(colour)
    pen.setWidthF(width)
    painter.setPen(pen)
    if len(points) == 1:
        painter.drawPoint(points[0])
    else:
        painter.drawPolyline(QPolygonF(points))


class SparklineDelegate(QStyledItemDelegate):
    """Paints CPU (blue, 0 to at least one core), memory (purple, 0 to its largest value)
    and IOPub messages per second (orange, 0 to its largest value; only once some came)
    over the sample history, newest on the right."""

    #: How many samples the width shows (older ones scroll off to the left).
    slots = 60

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        # The background, selection and focus as for any cell, without text.
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        history = index.data(HISTORY_ROLE)
        if not history:
            return
        cpu, rss, rate = history
        rect = QRectF(option.rect).adjusted(3, 3, -3, -3)
        if rect.width() < 4 or rect.height() < 4:
            return
        cpu = list(cpu)[-self.slots :]
        rss = list(rss)[-self.slots :]
        rate = list(rate)[-self.slots :]
        painter.save()
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            cpu_top = max(100.0, max(cpu, default=0.0))
            draw_line(painter, polyline(rss, rect, slots=self.slots), MEMORY_COLOUR)
            if any(rate):  # a kernel that publishes nothing gets no line at the bottom
                draw_line(painter, polyline(rate, rect, slots=self.slots), RATE_COLOUR)
            draw_line(painter, polyline(cpu, rect, cpu_top, self.slots), CPU_COLOUR)
        finally:
            painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(90, super().sizeHint(option, index).height())
