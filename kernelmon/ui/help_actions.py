"""What the Help menu and the desktop integration items of the File menu do: About, the
documentation, "Copy diagnostics", the applications menu entry and starting at login (see
``kernelmon.desktop``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QWidget

from .. import desktop
from . import about
from .notifier import Level, Notifier
from .store import KernelStore

logger = logging.getLogger(__name__)

#: Desktop entries and autostart are freedesktop.org (XDG) things.
HAS_XDG = sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


class HelpActions(QObject):
    """The slots of Help > About / Documentation / Copy diagnostics and File > "In the
    applications menu" / "Start kernelmon at login (in the tray)"."""

    def __init__(
        self,
        window: QWidget,
        notifier: Notifier,
        store: KernelStore,
        settings: Callable[[], Any],
    ) -> None:
        super().__init__(window)
        self._window = window
        self._notifier = notifier
        self._store = store
        self._settings = settings
        self.about_dialog: about.AboutDialog | None = None

    def show_about(self) -> about.AboutDialog:
        if self.about_dialog is None:
            dialog = about.AboutDialog(self.copy_diagnostics, self._window)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.destroyed.connect(lambda *_: setattr(self, "about_dialog", None))
            self.about_dialog = dialog
        self.about_dialog.show()
        self.about_dialog.raise_()
        self.about_dialog.activateWindow()
        return self.about_dialog

    def open_docs(self) -> None:
        url = about.docs_location()
        if url is None or not about.open_url(url):
            self._notifier.notify(
                Level.WARNING, "Documentation", "No documentation is installed with kernelmon."
            )

    def copy_diagnostics(self) -> str:
        text = about.diagnostics(self._settings(), self._store.models())
        QGuiApplication.clipboard().setText(text)
        self._notifier.status("Copied the diagnostics (versions, folders, settings) for a report")
        return text

    def prepare(self, entry: QAction, autostart: QAction) -> None:
        """Show whether the entry and the autostart are installed (disabled without XDG)."""
        for action, on in ((entry, desktop.entry_installed), (autostart, desktop.autostart_on)):
            action.setEnabled(HAS_XDG)
            action.setChecked(HAS_XDG and on())
            if not HAS_XDG:
                action.setToolTip("Only on Linux and BSD desktops (freedesktop.org)")

    def set_entry(self, action: QAction) -> None:
        on = action.isChecked()
        self._desktop(action, lambda: desktop.install_entry() if on else desktop.uninstall_entry())
        if action.isChecked() == on:
            self._notifier.status(
                "kernelmon is in your applications menu"
                if on
                else "kernelmon is no longer in your applications menu"
            )

    def set_autostart(self, action: QAction) -> None:
        on = action.isChecked()
        self._desktop(action, lambda: desktop.set_autostart(on))
        if action.isChecked() == on:
            self._notifier.status(
                "kernelmon starts at login, in the tray"
                if on
                else "kernelmon no longer starts at login"
            )

    def _desktop(self, action: QAction, do: Callable[[], object]) -> None:
        try:
            do()
        except desktop.DesktopError as e:
            action.blockSignals(True)
            action.setChecked(not action.isChecked())
            action.blockSignals(False)
            self._notifier.notify(Level.ERROR, "Desktop integration", f"{e}.", dialog=True)
