"""Help > About: versions, the folders kernelmon uses (each with an "Open folder" button), and
the text "Copy diagnostics" puts on the clipboard for a bug report."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import PySide6
from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import __version__, paths
from .figures import origin_of
from .icons import app_icon

#: The packages whose versions a bug report needs.
PACKAGES = ("jupyter_client", "ipykernel", "pyzmq", "qasync", "psutil", "platformdirs")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """kernelmon's, Python's, Qt's and the main libraries' versions."""
    return {
        "kernelmon": __version__,
        "Python": f"{platform.python_version()} ({sys.executable})",
        "Qt": f"{qVersion()} (PySide6 {PySide6.__version__})",
        **{name: package_version(name) for name in PACKAGES},
        "System": platform.platform(),
    }


def folders() -> dict[str, Path]:
    """The folders of kernelmon's settings, log and state."""
    return {
        "Settings": paths.config_dir(),
        "Log": paths.log_dir(),
        "State": paths.state_dir(),
    }


def docs_location() -> QUrl | None:
    """kernelmon's documentation: README.md and docs/ of a source checkout, else the
    project's URL from its metadata; None when neither is known."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if readme.is_file():
        return QUrl.fromLocalFile(str(readme))
    try:
        urls = importlib.metadata.metadata("kernelmon").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        url = entry.split(",", 1)[-1].strip()
        if url:
            return QUrl(url)
    return None


def open_url(url: QUrl) -> bool:
    """Open a folder or page with the desktop's application for it (tests replace this)."""
    return QDesktopServices.openUrl(url)


def diagnostics(settings: Any, models: Iterable[dict[str, Any]]) -> str:
    """What a bug report needs: versions, folders, the settings in use, how many kernels of
    each origin and state (no code, no output, no ids)."""
    lines = ["kernelmon diagnostics", ""]
    lines += [f"{name}: {value}" for name, value in versions().items()]
    platform_name = QGuiApplication.platformName()
    lines.append(f"Qt platform: {platform_name}")
    lines.append("")
    lines += [f"{name} folder: {folder}" for name, folder in folders().items()]
    lines.append("")
    lines.append("Settings in use:")
    for field in dataclasses.fields(settings) if settings is not None else ():
        lines.append(f"  {field.name} = {getattr(settings, field.name)!r}")
    counts = Counter((origin_of(m), str(m.get("execution_state", "unknown"))) for m in models)
    lines.append("")
    lines.append(f"Kernels: {sum(counts.values())}")
    for (origin, state), n in sorted(counts.items()):
        lines.append(f"  {origin}, {state}: {n}")
    return "\n".join(lines) + "\n"


class AboutDialog(QDialog):
    """Versions, folders with "Open folder" buttons, "Copy diagnostics"."""

    def __init__(self, copy_diagnostics: Callable[[], object], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("about_dialog")
        self.setWindowTitle("About kernelmon")
        self.setWindowIcon(app_icon())
        title = QLabel(
            f"<h2>kernelmon {__version__}</h2>A desktop monitor and manager for Jupyter kernels."
        )
        grid = QGridLayout()
        row = 0
        for name, value in versions().items():
            grid.addWidget(QLabel(f"{name}:"), row, 0)
            label = QLabel(value)
            label.setWordWrap(True)
            grid.addWidget(label, row, 1, 1, 2)
            row += 1
        self.open_buttons: dict[str, QPushButton] = {}
        for name, folder in folders().items():
            grid.addWidget(QLabel(f"{name} folder:"), row, 0)
            path = QLabel(str(folder))
            path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(path, row, 1)
            button = QPushButton("Open folder")
            button.setAutoDefault(False)  # Enter closes the dialog
            button.setObjectName(f"open_{name.lower()}")
            exists = folder.is_dir()
            button.setEnabled(exists)
            button.setToolTip(
                f"Open {folder} in the file manager" if exists else f"{folder} does not exist yet"
            )
            button.clicked.connect(lambda _c=False, f=folder: open_url(QUrl.fromLocalFile(str(f))))
            grid.addWidget(button, row, 2)
            self.open_buttons[name] = button
            row += 1
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = buttons.addButton(
            "Copy diagnostics", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.copy_button.setToolTip(
            "Copy versions, folders, settings and kernel counts for a bug report"
        )
        self.copy_button.setAutoDefault(False)
        self.copy_button.clicked.connect(copy_diagnostics)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(grid)
        layout.addWidget(buttons)
