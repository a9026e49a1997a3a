"""The side panel: the docks beside the table (details, settings panels, servers) as one.

``SidePanel.action`` (Ctrl+D, checkable) hides the whole panel, remembering which of its
docks were open, and shows them again; it is checked while any dock is open. Each dock's own
checkable toggle (``views``) goes in the View menu, so the menu says what is shown.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea, QWidget


class SidePanel(QObject):
    """Shows and hides the window's docks together."""

    def __init__(self, window: QMainWindow, shortcut: str) -> None:
        super().__init__(window)
        self._window = window
        self.docks: list[QDockWidget] = []
        #: The docks open when the panel was hidden (shown again with it).
        self._open: list[QDockWidget] = []
        self.action = QAction("Side &panel", window)
        self.action.setObjectName("side_panel")
        self.action.setCheckable(True)
        self.action.setShortcut(QKeySequence(shortcut))
        self.action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = self.action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        tip = f"Show or hide the side panel: kernel details and settings ({keys})"
        self.action.setToolTip(tip)
        self.action.setStatusTip(tip)
        self.action.triggered.connect(self.set_visible)
        window.addAction(self.action)

    def make_dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        """A dock of the panel holding ``widget`` (scrolled), on the window's right, as a tab
        beside the docks made before it."""
        scroll = QScrollArea()
        scroll.setWidget(widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        dock = QDockWidget(title, self._window)
        dock.setObjectName(name)
        dock.setWidget(scroll)
        self._window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if self.docks:
            self._window.tabifyDockWidget(self.docks[-1], dock)
        self.add(dock)
        return dock

    def add(self, dock: QDockWidget) -> None:
        """A dock that is part of the panel (its View menu toggle: ``dock.toggleViewAction``)."""
        self.docks.append(dock)
        dock.toggleViewAction().toggled.connect(lambda _on: self.sync())
        self.sync()

    @property
    def views(self) -> list[QAction]:
        return [d.toggleViewAction() for d in self.docks]

    def open_docks(self) -> list[QDockWidget]:
        return [d for d in self.docks if d.toggleViewAction().isChecked()]

    def is_visible(self) -> bool:
        return bool(self.open_docks())

    def set_visible(self, visible: bool) -> None:
        """Show the docks open before the panel was hidden (all of them if none), or hide
        every dock."""
        if not visible:
            self._open = self.open_docks() or self._open
            for dock in self._open:
                dock.hide()
        else:
            for dock in self._open or self.docks:
                dock.show()
        self.sync()

    def show_dock(self, dock: QDockWidget) -> None:
        """Open the panel at this dock's tab."""
        dock.show()
        dock.raise_()
        self.sync()

    def sync(self) -> None:
        self.action.blockSignals(True)
        self.action.setChecked(self.is_visible())
        self.action.blockSignals(False)
