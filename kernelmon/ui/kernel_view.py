"""The table view of the kernels (sortable; rows are selected, several at a time)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .kernel_table import KERNEL_ID_ROLE, Column
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
