"""The "Add a server" dialog: URL, token, headers, TLS check and name; the connection is
tested before anything is kept, and the result is said in words.

Saving goes through ``save`` (the servers panel's: ``KernelMap.add_server``, which tests
again and keeps the token in the system keyring, never in the settings file). Where no
keyring backend exists the dialog says so, and the token is kept in a file only the user can
read if the user agrees to it (``ask_token_file``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.servers import ServerClient, ServerError, ServerKind, ServerStatus, TokenStoreError
from .console import Spawn

logger = logging.getLogger(__name__)

KIND_NAMES = {
    ServerKind.JUPYTER_SERVER: "Jupyter Server",
    ServerKind.ENTERPRISE_GATEWAY: "Enterprise Gateway",
}
#: How long "Test connection" waits for the server [s].
TEST_TIMEOUT = 10.0


@dataclass
class ServerInput:
    """What the user typed, checked."""

    url: str
    token: str | None = None
    name: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines skipped); ValueError naming the bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or any(c in name for c in ' \t()<>@,;\\"/[]?={}'):
            raise ValueError(f"Header line {number} is not 'Name: value': {line.strip()[:60]!r}")
        headers[name] = value
    return headers


def describe_check(info_kind: ServerKind, version: str | None, client: ServerClient) -> str:
    """The words for a passed test."""
    what = KIND_NAMES.get(info_kind, str(info_kind))
    text = f"Connected: a {what}{f' (version {version})' if version else ''} accepted the token."
    if client.status == ServerStatus.LISTING_FORBIDDEN:
        text += f" {client.error}"
    return text


class AddServerDialog(QDialog):
    """Asks for a server; ``save(values)`` is awaited on "Save" and the dialog closes when it
    returns, or shows its error and stays open."""

    def __init__(
        self,
        spawn: Spawn,
        save: Callable[[ServerInput], Awaitable[None]],
        parent: QWidget | None = None,
        *,
        keyring_note: str | None = None,
        consent: Callable[[ServerInput], bool] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a Jupyter server or gateway")
        self.setObjectName("add_server_dialog")
        self._spawn = spawn
        self._save = save
        #: Asked in the Save slot, before the save's task (see ServersPanel.consent_to_token_file)
        self._consent = consent
        self.busy = False
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://host:8888/  or  https://hub.example.org/user/ann/")
        self.url.setToolTip(
            "The server's base address, as in the browser before /lab or /tree: a Jupyter "
            "Server (JupyterLab, Notebook, a JupyterHub user's server) or an Enterprise Gateway."
        )
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional, e.g. 'GPU box'")
        self.name.setToolTip("A name shown in the table and the servers list (default: host).")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("the server's token (jupyter server list shows it)")
        self.token.setToolTip(
            "Sent as 'Authorization: token …'. Kept in the system keyring, never in the "
            "settings file."
        )
        self.show_token = QCheckBox("Show")
        self.show_token.setToolTip("Show the token as typed")
        self.show_token.toggled.connect(
            lambda on: self.token.setEchoMode(
                QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password
            )
        )
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.show_token)
        self.headers = QPlainTextEdit()
        self.headers.setPlaceholderText("optional, one per line:  Name: value")
        self.headers.setToolTip(
            "Extra HTTP headers for a proxy in front of the server (one 'Name: value' per line)."
        )
        self.headers.setMaximumHeight(70)
        self.verify_tls = QCheckBox("Check the server's TLS certificate")
        self.verify_tls.setChecked(True)
        self.verify_tls.setToolTip(
            "Off only for a server with a self-signed certificate you trust: without the "
            "check, anyone between you and the server could read the token."
        )
        form = QFormLayout()
        form.addRow("&URL:", self.url)
        form.addRow("&Name:", self.name)
        token_label = QLabel("&Token:")  # a row of a layout gets no buddy by itself
        token_label.setBuddy(self.token)
        form.addRow(token_label, token_row)
        form.addRow("&Headers:", self.headers)
        form.addRow("", self.verify_tls)
        self.keyring_note = QLabel(keyring_note or "")
        self.keyring_note.setObjectName("keyring_note")
        self.keyring_note.setWordWrap(True)
        self.keyring_note.setVisible(bool(keyring_note))
        self.test_button = QPushButton("&Test connection")
        self.test_button.setToolTip("Ask the server now, with this token (Ctrl+T)")
        self.test_button.clicked.connect(self.on_test_button_clicked)
        QShortcut(QKeySequence("Ctrl+T"), self, self.on_test_button_clicked)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: no steps to count
        self.progress.setMaximumHeight(12)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.outcome = QLabel("")
        self.outcome.setObjectName("outcome")
        self.outcome.setWordWrap(True)
        self.outcome.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setToolTip(
            "Test the connection again and keep the server (Ctrl+S); its kernels join the table"
        )
        QShortcut(QKeySequence.StandardKey.Save, self, self.on_save_clicked)
        self.buttons.accepted.connect(self.on_save_clicked)
        self.buttons.rejected.connect(self.reject)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.keyring_note)
        layout.addLayout(test_row)
        layout.addWidget(self.outcome)
        layout.addWidget(self.buttons)
        self.resize(520, 0)

    def values(self) -> ServerInput:
        """The fields, checked (ValueError saying what is wrong)."""
        url = self.url.text().strip()
        if not url:
            raise ValueError("Give the server's address (its URL).")
        return ServerInput(
            url=url,
            token=self.token.text().strip() or None,
            name=self.name.text().strip() or None,
            headers=parse_headers(self.headers.toPlainText()),
            verify_tls=self.verify_tls.isChecked(),
        )

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.busy = busy
        self.progress.setVisible(busy)
        self.test_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy)
        if text:
            self.outcome.setText(text)

    def on_test_button_clicked(self) -> None:
        if not self.busy:
            self._spawn(self.test_connection(), "Testing the connection to a server")

    def on_save_clicked(self) -> None:
        if self.busy:
            return
        if self._consent is not None:
            try:
                values = self.values()
            except ValueError as error:
                self.outcome.setText(f"Not saved: {error}")
                return
            if not self._consent(values):
                self.outcome.setText(
                    "Not saved: no keyring here, and the token file was not allowed. Add the "
                    "server without a token, or allow the file."
                )
                return
        self._spawn(self.save(), "Adding a server")

    async def test_connection(self) -> bool:
        """ "Test connection": the result in words below the fields; True if it passed."""
        try:
            values = self.values()
            client = ServerClient(
                values.url, values.token, values.headers, values.verify_tls, TEST_TIMEOUT
            )
        except ValueError as error:
            self.outcome.setText(f"Not tested: {error}")
            return False
        self._set_busy(True, f"Testing {client.url} …")
        try:
            info = await client.check()
        except ServerError as error:
            self.outcome.setText(f"Failed: {error}")
            return False
        finally:
            await client.close()
            self._set_busy(False)
        self.outcome.setText(describe_check(info.kind, info.version, client))
        return True

    async def save(self) -> None:
        try:
            values = self.values()
        except ValueError as error:
            self.outcome.setText(f"Not saved: {error}")
            return
        self._set_busy(True, f"Testing and adding {values.url} …")
        try:
            await self._save(values)
        except (ServerError, TokenStoreError, ValueError, OSError) as error:  # sentences
            self.outcome.setText(f"Not saved: {error}")
            return
        finally:
            self._set_busy(False)
        self.accept()
