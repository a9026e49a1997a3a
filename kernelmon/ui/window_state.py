"""The window's geometry, docks, splitter and table columns, kept between runs (QSettings)."""

from __future__ import annotations

import logging

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter, QTableView

from .columns import Column

logger = logging.getLogger(__name__)


class WindowState:
    """Saves and restores how the window looks (not what it shows)."""

    def __init__(
        self, settings: QSettings, window: QMainWindow, splitter: QSplitter, table: QTableView
    ) -> None:
        self._settings = settings
        self._window = window
        self._splitter = splitter
        self._table = table

    def restore(self) -> None:
        ws = self._settings
        for key, restore in (
            ("geometry", self._window.restoreGeometry),
            ("window_state", self._window.restoreState),
            ("splitter", self._splitter.restoreState),
            ("table_header", self._table.horizontalHeader().restoreState),
        ):
            value = ws.value(key)
            if key == "table_header" and str(ws.value("table_columns")) != str(len(Column)):
                continue  # saved by a version with other columns
            if value is not None:
                try:
                    restore(value)
                except (TypeError, ValueError):
                    logger.info("Ignoring saved %s", key)

    def save(self) -> None:
        ws = self._settings
        ws.setValue("geometry", self._window.saveGeometry())
        ws.setValue("window_state", self._window.saveState())
        ws.setValue("splitter", self._splitter.saveState())
        ws.setValue("table_header", self._table.horizontalHeader().saveState())
        ws.setValue("table_columns", len(Column))
        ws.sync()
