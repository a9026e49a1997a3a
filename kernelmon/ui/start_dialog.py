"""The "Start kernel" dialog: which kernel spec, in which folder under the root folder.

The folder field has the focus and Enter starts. A folder that does not exist is not
silently replaced by its nearest existing parent (the core's rule for an API path): the user
is asked to create it or to pick another.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import KernelmonError
from . import dialogs
from .bridge import KernelBridge
from .icons import spec_logo

logger = logging.getLogger(__name__)


class StartKernelDialog(QDialog):
    """Pick a kernel spec (by display name) and a working folder; ``accepted`` when valid.

    After acceptance ``kernel_name`` and ``path`` (relative to the root folder, "/"-separated,
    "" for the root) say what to start.
    """

    def __init__(self, bridge: KernelBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Start kernel")
        self.setObjectName("start_dialog")
        self.setMinimumWidth(520)
        self._bridge = bridge
        self.kernel_name = ""
        self.path = ""
        root = bridge.settings.root_dir

        self.spec_box = QComboBox()
        specs: dict[str, dict[str, Any]] = {}
        try:
            specs = bridge.kernel_specs()
        except Exception:  # a broken kernel spec folder should not stop the dialog
            logger.exception("Could not list kernel specs")
        for name, spec in sorted(specs.items(), key=lambda kv: kv[1]["display_name"].lower()):
            logo = spec_logo(spec.get("resource_dir", ""))
            if logo is not None:
                self.spec_box.addItem(logo, spec["display_name"], name)
            else:
                self.spec_box.addItem(spec["display_name"], name)
            self.spec_box.setItemData(
                self.spec_box.count() - 1,
                f"{name} ({spec.get('language', '')})",
                Qt.ItemDataRole.ToolTipRole,
            )
        default = self.spec_box.findData(bridge.default_kernel_name)
        if default >= 0:
            self.spec_box.setCurrentIndex(default)

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("(the root folder)")
        self.folder_edit.setToolTip(
            f"A folder under the root folder {root}, written relative to it (e.g. "
            "projects/demo); empty for the root folder. A folder that does not exist can be "
            "created. Enter starts the kernel."
        )
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.on_browse_clicked)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(browse)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.hide()

        form = QFormLayout()
        form.addRow("Kernel:", self.spec_box)
        form.addRow("Working folder:", folder_row)
        form.addRow("", QLabel(f"Under {root}"))

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        if self.spec_box.count() == 0:
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
            self._show_error(
                "No kernel spec is installed. Install one, e.g. "
                "`python -m ipykernel install --user`."
            )

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.folder_edit.setFocus()

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    def on_browse_clicked(self) -> None:
        root = self._bridge.settings.root_dir
        folder = QFileDialog.getExistingDirectory(self, "Working folder", root)
        if folder:
            rel = os.path.relpath(folder, root)
            self.folder_edit.setText("" if rel == "." else rel.replace(os.sep, "/"))

    def validate(self) -> str | None:
        """The reason the form cannot be used, or None (and sets kernel_name and path)."""
        name = self.spec_box.currentData()
        if not name:
            return "Pick a kernel spec."
        path = self.folder_edit.text().strip()
        try:
            self._bridge.cwd_for_path(path or None)
        except KernelmonError as e:
            return str(e)
        wanted = self.folder(path)
        if os.path.exists(wanted) and not os.path.isdir(wanted):
            return f"{wanted} is a file, not a folder."
        self.kernel_name, self.path = str(name), path
        return None

    def folder(self, path: str) -> str:
        """The folder ``path`` names under the root folder (whether it exists or not)."""
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        return os.path.join(self._bridge.settings.root_dir, *parts)

    def accept(self) -> None:
        error = self.validate()
        if error is None and not os.path.isdir(wanted := self.folder(self.path)):
            error = self.create_or_pick(wanted)
        if error is not None:
            self._show_error(error)
            return
        super().accept()

    def create_or_pick(self, folder: str) -> str | None:
        """Ask about a folder that does not exist; None once it was created."""
        if dialogs.ask_missing_folder(self, folder) != dialogs.MissingFolder.CREATE:
            self.folder_edit.setFocus()
            self.folder_edit.selectAll()
            return f"{folder} does not exist: create it, or pick another folder."
        try:
            os.makedirs(folder, exist_ok=True)
            self._bridge.cwd_for_path(self.path)  # still under the root folder
        except OSError as e:
            return f"Cannot create {folder}: {e.strerror or e}."
        except KernelmonError as e:
            return str(e)
        return None
