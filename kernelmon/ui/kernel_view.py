"""The table view of the kernels (sortable; rows are selected, several at a time)."""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelection,
    QItemSelectionModel,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .columns import Column
from .kernel_table import KERNEL_ID_ROLE, KernelTableModel
from .sparkline import SparklineDelegate

COLUMN_WIDTHS = {
    Column.KERNEL: 175,
    Column.ID: 85,
    Column.ORIGIN: 90,
    Column.STATE: 105,
    Column.CPU: 65,
    Column.MEMORY: 85,
    Column.MESSAGE_RATE: 60,
    Column.USAGE: 100,
    Column.LAST_ACTIVITY: 105,
    Column.CONNECTIONS: 95,
    Column.CWD: 210,
    Column.PID: 65,
    Column.BUFFERED: 75,
}


class KernelTableView(QTableView):
    """Shows a ``KernelSortProxy``; ``selected_kernel_ids`` reads the selection."""

    def __init__(self, model: QAbstractItemModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kernel_table")
        self.setModel(model)
        self.setSortingEnabled(True)
        self.sortByColumn(Column.KERNEL, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in COLUMN_WIDTHS.items():
            self.setColumnWidth(column, width)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.sparklines = SparklineDelegate(self)
        self.setItemDelegateForColumn(Column.USAGE, self.sparklines)

    def selected_kernel_ids(self) -> list[str]:
        """The selected kernels' ids, in the order the table shows them."""
        rows = sorted(self.selectionModel().selectedRows(), key=lambda i: i.row())
        return [str(i.data(KERNEL_ID_ROLE)) for i in rows]

    def selected_kernel_id(self) -> str | None:
        """The first selected kernel's id (None without a selection)."""
        ids = self.selected_kernel_ids()
        return ids[0] if ids else None

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
