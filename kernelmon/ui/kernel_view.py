"""The table view of the kernels (sortable; rows are selected, several at a time).

The columns shown are the user's choice (the header's context menu), kept in the window's
state file under ``COLUMNS_KEY``; a column that means nothing now (the culler's countdown
while culling is off) is hidden whatever the choice (``set_column_available``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSettings,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QGuiApplication, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QMenu, QTableView, QWidget

from .columns import DEFAULT_HIDDEN, HEADERS, Column, parse_time
from .figures import origin_of
from .kernel_table import KERNEL_ID_ROLE, KernelTableModel
from .sparkline import SparklineDelegate

logger = logging.getLogger(__name__)

COLUMN_WIDTHS = {
    Column.KERNEL: 190,
    Column.ID: 85,
    Column.ORIGIN: 85,
    Column.STATE: 95,
    Column.CPU: 60,
    Column.MEMORY: 80,
    Column.MESSAGE_RATE: 60,
    Column.USAGE: 110,
    Column.LAST_ACTIVITY: 100,
    Column.CONNECTIONS: 95,
    Column.CWD: 210,
    Column.PID: 65,
    Column.BUFFERED: 75,
}
#: Where the columns hidden by the user are kept (names, in the window's state file).
COLUMNS_KEY = "table/hidden_columns"
#: A row's height: room for the sparklines to be read.
ROW_HEIGHT = 30
#: What an empty table says.
EMPTY_HINT = (
    "No kernels yet. Start one with Ctrl+N; kernels other applications start appear here "
    "by themselves."
)
#: A kernel kernelmon started less than this long ago [s] and still starting is one the user
#: just asked for (one taken over from an earlier run starts too, but started long ago).
JUST_STARTED = 30.0


def just_started(model: dict[str, Any], now: datetime) -> bool:
    """A kernel kernelmon is starting now (selected when it appears)."""
    if origin_of(model) != "owned" or model.get("execution_state") != "starting":
        return False
    started = parse_time(model.get("started"))
    return started is not None and 0 <= (now - started).total_seconds() < JUST_STARTED


class KernelTableView(QTableView):
    """Shows a ``KernelSortProxy``; ``selected_kernel_ids`` reads the selection."""

    def __init__(
        self,
        model: QAbstractItemModel,
        parent: QWidget | None = None,
        *,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self._settings = settings
        #: Columns the user hid; ``_unavailable``: columns hidden whatever the user chose.
        self.hidden_columns: set[Column] = set(DEFAULT_HIDDEN)
        self._unavailable: set[Column] = set()
        self.setObjectName("kernel_table")
        self.empty_hint = QLabel(EMPTY_HINT, self.viewport())
        self.empty_hint.setObjectName("empty_hint")
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setEnabled(False)  # greyed: a hint, not content
        self._removed_row: int | None = None
        # Before setModel: the selection model (made there) forgets a removed row's
        # selection in its own slot, and slots run in the order they were connected.
        model.rowsInserted.connect(self.on_model_rows_inserted)
        model.rowsAboutToBeRemoved.connect(self.on_model_rows_about_to_be_removed)
        model.rowsRemoved.connect(self.on_model_rows_removed)
        model.modelReset.connect(self.update_empty_hint)
        self.setModel(model)
        self.setSortingEnabled(True)
        self.sortByColumn(Column.KERNEL, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in COLUMN_WIDTHS.items():
            self.setColumnWidth(column, width)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.sparklines = SparklineDelegate(self)
        self.setItemDelegateForColumn(Column.USAGE, self.sparklines)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self.on_header_context_menu_requested)
        self._load_hidden_columns()
        self.apply_columns()
        self.update_empty_hint()

    # -- rows coming and going --------------------------------------------------------------

    def update_empty_hint(self) -> None:
        empty = self.model().rowCount() == 0
        self.empty_hint.setVisible(empty)
        if empty:
            self.empty_hint.setGeometry(self.viewport().rect().adjusted(20, 0, -20, 0))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.update_empty_hint()

    def on_model_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        """Select a kernel the user just started, as it appears."""
        self.update_empty_hint()
        now = datetime.now(UTC)
        for row in range(first, last + 1):
            model = self._model_of(row)
            if model is not None and just_started(model, now):
                self._select_only(row)
                self.scrollTo(self.model().index(row, 0))

    def _model_of(self, row: int) -> dict[str, Any] | None:
        kid = self.model().index(row, 0).data(KERNEL_ID_ROLE)
        source = self._source()
        return None if kid is None or source is None else source.kernel_model(str(kid))

    def on_model_rows_about_to_be_removed(
        self, _parent: QModelIndex | QPersistentModelIndex, first: int, last: int
    ) -> None:
        selection = self.selectionModel()
        rows = [r for r in range(first, last + 1) if selection.isRowSelected(r, QModelIndex())]
        remaining = len(selection.selectedRows()) - len(rows)
        self._removed_row = rows[0] if rows and remaining == 0 else None

    def on_model_rows_removed(self, _parent: QModelIndex, _first: int, _last: int) -> None:
        """The selected kernel left (shut down): its neighbour is selected instead."""
        row, self._removed_row = self._removed_row, None
        count = self.model().rowCount()
        self.update_empty_hint()
        if row is not None and count and not self.selectionModel().hasSelection():
            self._select_only(min(row, count - 1))

    def _select_only(self, row: int) -> None:
        """Select this row and no other, whatever modifier keys are held (``selectRow`` reads
        them as a click would: with Ctrl or Shift down it adds to the selection)."""
        index = self.model().index(row, 0)
        flags = QItemSelectionModel.SelectionFlag
        self.selectionModel().setCurrentIndex(index, flags.ClearAndSelect | flags.Rows)

    # -- which columns show -----------------------------------------------------------------

    def _load_hidden_columns(self) -> None:
        if self._settings is None:
            return
        saved = self._settings.value(COLUMNS_KEY)
        if saved is None:
            return
        names = [saved] if isinstance(saved, str) else list(saved or [])
        hidden = {Column[n] for n in names if isinstance(n, str) and n in Column.__members__}
        hidden.discard(Column.KERNEL)
        self.hidden_columns = hidden

    def apply_columns(self) -> None:
        """Show and hide the columns as chosen (the header's own saved state may differ)."""
        for column in Column:
            hidden = column in self.hidden_columns or column in self._unavailable
            if self.isColumnHidden(column) != hidden:
                self.setColumnHidden(column, hidden)

    def set_column_shown(self, column: Column, shown: bool) -> None:
        """The user's choice for a column (the first one always shows); remembered."""
        if column == Column.KERNEL:
            return
        (self.hidden_columns.discard if shown else self.hidden_columns.add)(column)
        self.apply_columns()
        if shown and self.columnWidth(column) < 20:
            self.setColumnWidth(column, COLUMN_WIDTHS.get(column, 90))
        if self._settings is not None:
            names = sorted(c.name for c in self.hidden_columns)
            self._settings.setValue(COLUMNS_KEY, names or "")

    def set_column_available(self, column: Column, available: bool) -> None:
        """Whether a column means anything now (hidden while not, whatever the choice)."""
        (self._unavailable.discard if available else self._unavailable.add)(column)
        self.apply_columns()

    def column_menu(self) -> QMenu:
        """The header's context menu: a checkable entry per column."""
        menu = QMenu(self)
        menu.setObjectName("column_menu")
        menu.setToolTipsVisible(True)
        for column in Column:
            title, tip = HEADERS[column]
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(column not in self.hidden_columns)
            action.setToolTip(tip)
            action.setData(int(column))
            if column == Column.KERNEL:
                action.setEnabled(False)  # without it, rows have no name
            elif column in self._unavailable:
                action.setToolTip(f"{tip} (hidden while culling is off)")
            action.toggled.connect(lambda on, c=column: self.set_column_shown(c, on))
        return menu

    def on_header_context_menu_requested(self, pos: QPoint) -> None:
        menu = self.column_menu()
        menu.exec(self.horizontalHeader().mapToGlobal(pos))
        menu.deleteLater()

    def selected_kernel_ids(self) -> list[str]:
        """The selected kernels' ids, in the order the table shows them."""
        rows = sorted(self.selectionModel().selectedRows(), key=lambda i: i.row())
        return [str(i.data(KERNEL_ID_ROLE)) for i in rows]

    def selected_kernel_id(self) -> str | None:
        """The first selected kernel's id (None without a selection)."""
        ids = self.selected_kernel_ids()
        return ids[0] if ids else None

    def _source(self) -> KernelTableModel | None:
        proxy = self.model()
        source = proxy.sourceModel() if isinstance(proxy, QSortFilterProxyModel) else proxy
        return source if isinstance(source, KernelTableModel) else None

    def select_kernels(self, kernel_ids: list[str]) -> None:
        """Select these kernels (and no others); the first becomes the current row."""
        proxy = self.model()
        assert isinstance(proxy, QSortFilterProxyModel)
        source = proxy.sourceModel()
        assert isinstance(source, KernelTableModel)
        selection = QItemSelection()
        for kid in kernel_ids:
            row = source.row_of(kid)
            if row >= 0:
                index = proxy.mapFromSource(source.index(row, 0))
                selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag
        selection_model = self.selectionModel()
        selection_model.select(selection, flags.ClearAndSelect | flags.Rows)
        if not selection.isEmpty():
            selection_model.setCurrentIndex(selection.indexes()[0], flags.NoUpdate)

    def copy_selected_ids(self) -> list[str]:
        """Copy the selected kernels' full ids to the clipboard, one a line; the ids."""
        ids = self.selected_kernel_ids()
        if ids:
            QGuiApplication.clipboard().setText("\n".join(ids))
        return ids
