"""The kernel table: a ``QAbstractTableModel`` adapter over the core's kernel models.

Rows are inserted and removed as kernels come and go and each kernel's row is refreshed with
``dataChanged`` when the bridge reports a change; the model is never reset while running.
The time columns ("last activity", "culled in") are refreshed once a second. What a cell
shows, sorts by and says is computed by the pure functions of ``columns``; the models are
read from the bridge's ``KernelStore``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QFont

from .bridge import KernelBridge
from .columns import (
    FIELD_COLUMNS,
    HEADERS,
    MUTED,
    NUMBER_COLUMNS,
    STATE_COLOURS,
    Column,
    display_text,
    parse_time,
    sort_key,
    tooltip_text,
)
from .figures import origin_of
from .icons import kernel_icon, origin_icon, state_icon
from .sparkline import HISTORY_ROLE
from .store import KernelStore

logger = logging.getLogger(__name__)

#: Role with a value that sorts the column naturally (numbers as numbers).
SORT_ROLE = Qt.ItemDataRole.UserRole
#: Role with the kernel's full id, in every column.
KERNEL_ID_ROLE = Qt.ItemDataRole.UserRole + 1

ModelIndex = QModelIndex | QPersistentModelIndex


class KernelTableModel(QAbstractTableModel):
    """One row per kernel of a bridge's ``KernelStore`` (or of what ``add_kernel`` is given,
    when not attached to a bridge)."""

    def __init__(
        self,
        bridge: KernelBridge | None = None,
        parent: QObject | None = None,
        *,
        refresh_ms: int = 1000,
    ) -> None:
        super().__init__(parent)
        self._bridge: KernelBridge | None = None
        #: Where the models are read: the bridge's store once attached, else one of its own.
        self._store = KernelStore(self)
        self._ids: list[str] = []
        self._specs: dict[str, dict[str, Any]] = {}
        self._specs_loaded = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_times)
        if refresh_ms > 0:
            self._timer.start(refresh_ms)
        if bridge is not None:
            self.attach(bridge)

    # -- feeding ----------------------------------------------------------------------------

    def attach(self, bridge: KernelBridge) -> None:
        """Show the kernels of ``bridge``'s store, and follow its signals."""
        self._bridge = bridge
        self._store = bridge.store
        for kid in bridge.store.ids():
            if kid not in self._ids:
                self.beginInsertRows(QModelIndex(), len(self._ids), len(self._ids))
                self._ids.append(kid)
                self.endInsertRows()
        bridge.kernel_added.connect(self.on_bridge_kernel_added)
        bridge.kernel_changed.connect(self.on_bridge_kernel_changed)
        bridge.kernel_removed.connect(self.on_bridge_kernel_removed)
        bridge.usage_sampled.connect(self.on_bridge_usage_sampled)

    def on_bridge_kernel_added(self, kernel_id: str, model: dict[str, Any]) -> None:
        self.add_kernel(kernel_id, model)

    def on_bridge_kernel_changed(self, kernel_id: str, model: dict[str, Any], fields: Any) -> None:
        self.update_kernel(kernel_id, model, fields)

    def on_bridge_kernel_removed(self, kernel_id: str, _reason: str) -> None:
        self.remove_kernel(kernel_id)

    def on_bridge_usage_sampled(self, _total_cpu: Any, _total_rss: Any) -> None:
        """A sample tick: the sparklines move on even for kernels whose figures did not
        change (and so sent no change)."""
        if self._ids:
            self.dataChanged.emit(
                self.index(0, Column.USAGE),
                self.index(len(self._ids) - 1, Column.USAGE),
                [HISTORY_ROLE, Qt.ItemDataRole.ToolTipRole],
            )

    def _keep(self, kernel_id: str, model: dict[str, Any]) -> None:
        """Without a bridge, the table keeps the models it is given (with one, the bridge
        has put them in its store already)."""
        if self._bridge is None:
            self._store.put(kernel_id, dict(model))

    def add_kernel(self, kernel_id: str, model: dict[str, Any]) -> None:
        if kernel_id in self._ids:
            self.update_kernel(kernel_id, model)
            return
        row = len(self._ids)
        self.beginInsertRows(QModelIndex(), row, row)
        self._ids.append(kernel_id)
        self._keep(kernel_id, model)
        self.endInsertRows()

    def update_kernel(self, kernel_id: str, model: dict[str, Any], fields: Any = None) -> None:
        """A kernel's model changed (``fields``, if given, names what changed: only the
        columns that show those are repainted)."""
        row = self.row_of(kernel_id)
        if row < 0:
            return  # a late change for a kernel already removed
        self._keep(kernel_id, model)
        first, last = 0, len(Column) - 1
        if fields and all(f in FIELD_COLUMNS for f in fields):
            columns = [c for f in fields for c in FIELD_COLUMNS[f]]
            first, last = min(columns), max(columns)
        self.dataChanged.emit(self.index(row, first), self.index(row, last))

    def remove_kernel(self, kernel_id: str) -> None:
        row = self.row_of(kernel_id)
        if row < 0:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._ids[row]
        if self._bridge is None:
            self._store.pop(kernel_id)
        self.endRemoveRows()

    def refresh_times(self) -> None:
        """The time columns change with the clock: repaint them (not the whole table)."""
        if not self._ids:
            return
        last = len(self._ids) - 1
        for column in (Column.LAST_ACTIVITY, Column.CULL_ETA):
            self.dataChanged.emit(
                self.index(0, column),
                self.index(last, column),
                [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole],
            )

    # -- reading ----------------------------------------------------------------------------

    def kernel_ids(self) -> list[str]:
        return list(self._ids)

    def kernel_model(self, kernel_id: str) -> dict[str, Any] | None:
        return self._store.get(kernel_id) if kernel_id in self._ids else None

    def row_of(self, kernel_id: str) -> int:
        """The kernel's row, or -1 (one scan of the rows, not a membership test and a second)."""
        try:
            return self._ids.index(kernel_id)
        except ValueError:
            return -1

    def _spec(self, name: str) -> dict[str, Any] | None:
        if name not in self._specs and not self._specs_loaded and self._bridge is not None:
            self._specs_loaded = True
            try:
                self._specs = self._bridge.kernel_specs()
            except Exception:
                logger.exception("Could not list kernel specs")
        return self._specs.get(name)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def _age(self, model: dict[str, Any]) -> float | None:
        when = parse_time(model.get("last_activity"))
        if when is None:
            return None
        return max(0.0, (self._now() - when).total_seconds())

    def _eta(self, kernel_id: str) -> float | None:
        return None if self._bridge is None else self._bridge.cull_eta(kernel_id)

    def history(self, kernel_id: str) -> Any:
        """The core's ``KernelHistory`` of a kernel (None without one)."""
        return None if self._bridge is None else self._bridge.history(kernel_id)

    def _sparkline(self, kernel_id: str) -> tuple[list[float], list[float], list[float]] | None:
        history = self.history(kernel_id)
        if history is None:
            return None
        cpu, rss, rate = history.cpu.values(), history.rss.values(), history.messages.values()
        return (cpu, rss, rate) if cpu or rss or rate else None

    # -- Qt model interface -----------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        title, tip = HEADERS[Column(section)]
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._ids):
            return None
        if not 0 <= index.column() < len(Column):
            return None
        kid = self._ids[index.row()]
        model = self._store.get(kid) or {}
        column = Column(index.column())
        if role == KERNEL_ID_ROLE:
            return kid
        if role == Qt.ItemDataRole.DisplayRole:
            return display_text(kid, model, column, self._age, self._eta)
        if role == SORT_ROLE:
            return sort_key(kid, model, column, self._age, self._eta)
        if role == Qt.ItemDataRole.ToolTipRole:
            return tooltip_text(kid, model, column, self._eta)
        if role == HISTORY_ROLE:
            return self._sparkline(kid) if column == Column.USAGE else None
        if role == Qt.ItemDataRole.DecorationRole:
            if column == Column.ORIGIN:
                return origin_icon(origin_of(model))
            if column == Column.STATE:
                return state_icon(str(model.get("execution_state", "unknown")))
            if column == Column.KERNEL:
                spec = self._spec(str(model.get("name") or ""))
                return kernel_icon(spec.get("resource_dir") if spec else None)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == Column.STATE:
                state = str(model.get("execution_state"))
                return STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
            return MUTED if origin_of(model) != "owned" else None
        if role == Qt.ItemDataRole.FontRole and origin_of(model) != "owned":
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMBER_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class KernelSortProxy(QSortFilterProxyModel):
    """Sorts the table by each column's natural value and keeps sorting as rows change."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: ModelIndex, right: ModelIndex) -> bool:
        a = left.data(SORT_ROLE)
        b = right.data(SORT_ROLE)
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)
