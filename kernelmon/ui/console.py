"""A small console on a kernel: type code, see its output (streams, results, errors).

The console talks through ``KernelMap.connect`` with a session key that stays the same for a
kernel for the app's lifetime (``ConsoleManager`` keeps them), so output the kernel sends
while the console is closed is kept and replayed when it is opened again.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QCloseEvent, QFont, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import KernelConnection, KernelMap

logger = logging.getLogger(__name__)

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def message_text(msg: dict[str, Any]) -> str | None:
    """What a console shows for an IOPub message (None for messages it does not show)."""
    msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
    content = msg.get("content", {})
    if msg_type == "stream":
        return str(content.get("text", ""))
    if msg_type in ("execute_result", "display_data"):
        data = content.get("data", {})
        text = data.get("text/plain")
        if text is None:
            return f"[{', '.join(data) or 'empty'} output]\n"
        prefix = f"Out[{content['execution_count']}]: " if "execution_count" in content else ""
        return f"{prefix}{text}\n"
    if msg_type == "error":
        tb = content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]
        return strip_ansi("\n".join(tb)) + "\n"
    if msg_type == "execute_input":
        return f"In [{content.get('execution_count', ' ')}]: {content.get('code', '')}\n"
    return None


class ConsoleWindow(QWidget):
    """One console window on one kernel."""

    #: ``(kernel_id)``: the window closed (its connection is being closed).
    closed = Signal(str)

    def __init__(self, kernel_id: str, title: str, spawn: Spawn) -> None:
        super().__init__(None, Qt.WindowType.Window)
        self.kernel_id = kernel_id
        self.connection: KernelConnection | None = None
        self._spawn = spawn
        self.setWindowTitle(f"Console: {title}")
        self.setObjectName("console")
        self.resize(700, 450)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(20_000)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.output.setFont(font)
        self.input = QLineEdit()
        self.input.setFont(font)
        self.input.setPlaceholderText("Python code; Enter runs it")
        self.input.returnPressed.connect(self.on_input_return_pressed)
        self.input.setEnabled(False)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.on_input_return_pressed)
        self.run_button.setEnabled(False)
        self.status = QLabel("Connecting…")
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.output, 1)
        layout.addLayout(row)
        layout.addWidget(self.status)

    def text(self) -> str:
        return self.output.toPlainText()

    def append(self, text: str) -> None:
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.output.setTextCursor(cursor)
        self.output.ensureCursorVisible()

    def note(self, text: str) -> None:
        """A line from kernelmon itself (not from the kernel)."""
        if self.text() and not self.text().endswith("\n"):
            self.append("\n")
        self.append(f"── {text} ──\n")

    def on_message(self, channel: str, msg: dict[str, Any]) -> None:
        if channel != "iopub":
            return
        text = message_text(msg)
        if text:
            self.append(text)

    def attach(self, connection: KernelConnection) -> None:
        self.connection = connection
        if connection.replayed or connection.dropped:
            dropped = (
                f"; {connection.dropped} older one(s) were dropped (buffer limits)"
                if connection.dropped
                else ""
            )
            self.note(
                f"{connection.replayed} message(s) the kernel sent while this console was "
                f"closed are shown above{dropped}"
            )
        self.status.setText(f"Connected (session …{connection.session_key[-8:]})")
        self.input.setEnabled(True)
        self.run_button.setEnabled(True)
        self.input.setFocus()

    def detach(self, why: str) -> None:
        self.connection = None
        self.input.setEnabled(False)
        self.run_button.setEnabled(False)
        self.status.setText(why)
        self.note(why)

    def execute(self, code: str) -> str | None:
        if self.connection is None or self.connection.closed:
            return None
        return self.connection.execute(code)

    def on_input_return_pressed(self) -> None:
        code = self.input.text()
        if not code.strip():
            return
        try:
            self.execute(code)
        except Exception as e:
            self.note(f"Could not send the code: {e}")
            return
        self.input.clear()

    def closeEvent(self, event: QCloseEvent) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            self._spawn(conn.close(), "Closing the console's connection")
        self.closed.emit(self.kernel_id)
        super().closeEvent(event)


class ConsoleManager(QObject):
    """Opens at most one console per kernel, with one session key per kernel for the app's
    lifetime (so a reopened console gets the output it missed)."""

    def __init__(self, kernel_map: KernelMap, spawn: Spawn, parent: QObject | None = None):
        super().__init__(parent)
        self._map = kernel_map
        self._spawn = spawn
        self.session_keys: dict[str, str] = {}
        self.consoles: dict[str, ConsoleWindow] = {}

    def session_key(self, kernel_id: str) -> str:
        return self.session_keys.setdefault(kernel_id, f"kernelmon-console-{uuid.uuid4()}")

    def open(self, kernel_id: str) -> ConsoleWindow:
        existing = self.consoles.get(kernel_id)
        if existing is not None:
            existing.show()
            existing.raise_()
            existing.activateWindow()
            return existing
        model = self._map.kernel_model(kernel_id)
        title = f"{model.get('display_name')} {kernel_id[:8]}"
        console = ConsoleWindow(kernel_id, title, self._spawn)
        console.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        console.closed.connect(self.on_console_closed)
        self.consoles[kernel_id] = console
        console.show()
        self._spawn(self._connect(console), f"Opening a console on kernel {kernel_id[:8]}")
        return console

    async def _connect(self, console: ConsoleWindow) -> None:
        kid = console.kernel_id
        try:
            conn = await self._map.connect(kid, self.session_key(kid), console.on_message)
        except Exception as e:
            if self.consoles.get(kid) is console:
                console.detach(f"Could not connect: {e}")
            raise
        if self.consoles.get(kid) is not console:  # closed while connecting
            await conn.close()
            return
        console.attach(conn)

    def on_console_closed(self, kernel_id: str) -> None:
        self.consoles.pop(kernel_id, None)

    def on_kernel_removed(self, kernel_id: str, reason: str) -> None:
        self.session_keys.pop(kernel_id, None)
        console = self.consoles.get(kernel_id)
        if console is not None:
            console.detach(f"The kernel is gone ({reason or 'removed'}).")

    def on_kernel_restarted(self, kernel_id: str, _auto: bool) -> None:
        console = self.consoles.get(kernel_id)
        if console is not None:
            console.note("The kernel restarted")

    async def close_all(self) -> None:
        for console in list(self.consoles.values()):
            conn, console.connection = console.connection, None
            console.close()
            if conn is not None:
                await conn.close()
