"""The table view of the kernels (sortable, one row selected at a time)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .kernel_table import KERNEL_ID_ROLE, Column

COLUMN_WIDTHS = {
    Column.KERNEL: 175,
    Column.ID: 85,
    Column.STATE: 105,
    Column.LAST_ACTIVITY: 105,
    Column.CONNECTIONS: 95,
    Column.CWD: 210,
    Column.PID: 65,
    Column.BUFFERED: 75,
}


class KernelTableView(QTableView):
    """Shows a ``KernelSortProxy``; ``selected_kernel_id`` reads the selection."""

    def __init__(self, model: QAbstractItemModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kernel_table")
        self.setModel(model)
        self.setSortingEnabled(True)
        self.sortByColumn(Column.KERNEL, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in COLUMN_WIDTHS.items():
            self.setColumnWidth(column, width)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def selected_kernel_id(self) -> str | None:
        rows = self.selectionModel().selectedRows()
        return str(rows[0].data(KERNEL_ID_ROLE)) if rows else None
