"""The discovery and resource settings form (a dock next to the culler panel).

Whether kernelmon shows kernels other applications started, which extra folders it watches
for their connection files, how often it samples CPU and memory, when it warns about memory
and when it tells about a long job that finished. Applied as soon as edited (see
``SettingsForm``); a folder that does not exist is refused with a sentence.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import Settings, SettingsError
from . import dialogs
from .settings_form import Field, SettingsForm, settings_fields

logger = logging.getLogger(__name__)

FIELDS: dict[str, Field] = {
    "discover_kernels": (
        "Show kernels other applications started",
        "",
        "flag",
        "Also list the kernels of notebook servers, editors and scripts, found through their "
        "connection files in the Jupyter runtime folder (and the folders below).",
    ),
    "sample_interval": (
        "Measure CPU and memory every",
        "s",
        "seconds",
        "How often kernelmon measures each kernel's CPU and memory (and its children's).",
    ),
    "memory_warn_kernel_mb": (
        "Warn when a kernel uses over",
        "MiB",
        "off_mib",
        "Tell me when one kernel's memory (resident, with its children) goes above this. "
        "0 turns the warning off.",
    ),
    "memory_warn_total_mb": (
        "Warn when all kernels use over",
        "MiB",
        "off_mib",
        "Tell me when all kernels together use more memory than this. 0 turns it off.",
    ),
    "notify_job_seconds": (
        "Tell me about jobs that ran over",
        "s",
        "off_seconds",
        "When a kernel that was busy at least this long becomes idle, say so (in the tray, "
        "or the status bar and the event log). 0 turns it off.",
    ),
}


def folder_problem(folder: str, known: Sequence[str]) -> str | None:
    """Why ``folder`` cannot be watched (None when it can)."""
    if not folder.strip():
        return "no folder was given"
    path = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(path):
        return f"{folder} is not an existing folder"
    if path in (os.path.abspath(os.path.expanduser(k)) for k in known):
        return f"{path} is watched already"
    return None


class MonitoringPanel(SettingsForm):
    """A form for discovery, sampling, memory warnings and job notifications."""

    #: The user asked to look for kernels now.
    rescan_requested = Signal()

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        run_folders: Sequence[str] = (),
    ) -> None:
        super().__init__(settings, FIELDS, parent)
        self.setObjectName("monitoring_panel")
        self.has_folders = "runtime_folders" in settings_fields()
        self.folder_list = QListWidget()
        self.folder_list.setObjectName("runtime_folders")
        self.folder_list.setToolTip(
            "Folders watched for kernel connection files besides Jupyter's runtime folder"
        )
        self.folder_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.folder_list.setMaximumHeight(90)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setObjectName("add_folder")
        self.add_button.clicked.connect(self.on_add_button_clicked)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("remove_folder")
        self.remove_button.clicked.connect(self.on_remove_button_clicked)
        self.folder_list.itemSelectionChanged.connect(self._update_buttons)
        self.rescan_button = QPushButton("Look for kernels now")
        self.rescan_button.setObjectName("rescan")
        self.rescan_button.setToolTip("Scan the runtime folders again at once")
        self.rescan_button.clicked.connect(self.rescan_requested)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        box = QVBoxLayout()
        box.addWidget(QLabel("Also watch these folders:"))
        box.addWidget(self.folder_list)
        box.addLayout(buttons)
        self.run_folders_label = QLabel()
        self.run_folders_label.setObjectName("run_folders")
        self.run_folders_label.setWordWrap(True)
        self.set_run_folders(run_folders)
        box.addWidget(self.run_folders_label)
        box.addWidget(self.rescan_button)
        folders = QWidget()
        folders.setLayout(box)
        box.setContentsMargins(0, 0, 0, 0)
        folders.setVisible(self.has_folders)
        self.form.addRow(folders)
        self.finish()

    @property
    def folders(self) -> list[str]:
        """The extra folders the list shows."""
        items = (self.folder_list.item(i) for i in range(self.folder_list.count()))
        return [item.text() for item in items if item is not None]

    def set_run_folders(self, run_folders: Sequence[str]) -> None:
        """The folders watched for this run only (``--runtime-dir``)."""
        self.run_folders_label.setText(
            "For this run only (--runtime-dir): " + ", ".join(run_folders)
        )
        self.run_folders_label.setVisible(bool(run_folders))

    def set_settings(self, settings: Settings) -> None:
        super().set_settings(settings)
        if not getattr(self, "has_folders", False):
            return
        self.folder_list.clear()
        self.folder_list.addItems([str(f) for f in getattr(settings, "runtime_folders", ())])
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.folder_list.selectedItems()))

    def check(self, name: str, value: Any) -> None:
        if name == "sample_interval" and isinstance(value, float) and value <= 0:
            raise SettingsError(name, value, "it must be more than 0 s")

    def on_add_button_clicked(self) -> None:
        folder = dialogs.choose_folder(self, "Watch a folder for kernel connection files")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> bool:
        """Watch ``folder`` too; False (and a sentence under the form) when it cannot be."""
        problem = folder_problem(folder, self.folders)
        if problem is None:
            path = os.path.abspath(os.path.expanduser(folder))
            problem = self._set_folders([*self.folders, path])
        if problem is not None:
            self.show_error(f"Folder not added: {problem}.")
            logger.info("Refused runtime folder %r: %s", folder, problem)
            return False
        return True

    def on_remove_button_clicked(self) -> None:
        chosen = {item.text() for item in self.folder_list.selectedItems()}
        if chosen:
            self.remove_folders(chosen)

    def remove_folders(self, folders: set[str]) -> None:
        problem = self._set_folders([f for f in self.folders if f not in folders])
        if problem is not None:
            self.show_error(f"Folder not removed: {problem}.")

    def _set_folders(self, folders: list[str]) -> str | None:
        try:
            new = dataclasses.replace(self._settings, runtime_folders=tuple(folders))
        except (SettingsError, TypeError) as e:
            return getattr(e, "why", str(e))
        self.apply(new)
        return None
