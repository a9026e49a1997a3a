"""A small console on a kernel: type code, see its output (streams, results, errors).

The console talks through ``KernelMap.connect`` with a session key that stays the same for a
kernel for the app's lifetime (``ConsoleManager`` keeps them), so output the kernel sends
while the console is closed is kept and replayed when it is opened again.

Output is appended in batches: text that arrives is collected and inserted ``FRAME_MS``
milliseconds later, at most ``FRAME_LINES`` lines per insertion (the rest after a turn of the
loop), so a kernel printing 20,000 lines a second costs under a hundred short insertions a
second, not one per message. The scrollback keeps the
last ``scrollback`` lines (the ``console_scrollback_lines`` setting) and the line being
written; the number of older lines dropped is shown above the output.

Interrupt and Restart buttons (Ctrl+I, Ctrl+R, as in the main window) ask the window's
commands (``interrupt_requested``, ``restart_requested``), with the same questions. Esc and
Ctrl+W close the console. What a kernel writes to stderr that answers no request (debugpy's
"frozen modules" warning when a restarted kernel starts up) is folded under a button that
shows it, rather than mixed into the output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFont, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import KernelConnection
from .figures import plural
from .icons import icon

logger = logging.getLogger(__name__)

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]
#: Output is inserted at most this often [ms] (about a screen frame).
FRAME_MS = 16
#: At most this many lines are inserted per frame (more wait for the next frames, unless
#: more than the scrollback is waiting: then only the tail is inserted, the rest dropped).
FRAME_LINES = 250
#: Lines a console keeps unless told otherwise (``Settings.console_scrollback_lines``).
DEFAULT_SCROLLBACK = 10_000


def dropped_text(n: int) -> str:
    """The line above a console's output once older lines were dropped."""
    return f"── {plural(n, 'older line')} dropped (scrollback: see console_scrollback_lines) ──"


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def is_startup_noise(msg: dict[str, Any]) -> bool:
    """Text on stderr that answers no request: what the kernel process wrote while starting
    (e.g. debugpy's warnings), not output of code anyone ran."""
    msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
    parent = msg.get("parent_header") or {}
    return (
        msg_type == "stream"
        and msg.get("content", {}).get("name") == "stderr"
        and not parent.get("msg_id")
    )


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
    #: ``(kernel_id)``: the user asked to interrupt / restart the kernel.
    interrupt_requested = Signal(str)
    restart_requested = Signal(str)

    def __init__(
        self, kernel_id: str, title: str, spawn: Spawn, scrollback: int = DEFAULT_SCROLLBACK
    ) -> None:
        super().__init__(None, Qt.WindowType.Window)
        self.kernel_id = kernel_id
        self.connection: KernelConnection | None = None
        self._spawn = spawn
        #: Lines kept (see ``scrollback``); ``dropped`` older ones were removed, and counted.
        self._scrollback = max(1, scrollback)
        self.dropped = 0
        #: Text waiting for the next frame, and whether the output ends with a newline.
        self._pending: list[str] = []
        self._ends_line = True
        #: Insertions made (one per frame with output).
        self.flushes = 0
        self._frame = QTimer(self)
        self._frame.setSingleShot(True)
        self._frame.setInterval(FRAME_MS)
        self._frame.timeout.connect(self._next_frame)
        self.setWindowTitle(f"Console: {title}")
        self.setObjectName("console")
        self.resize(700, 450)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setUndoRedoEnabled(False)  # read-only: an undo history only grows
        self.scrollback = self._scrollback
        self.output.setToolTip(
            f"The kernel's output; the last {self.scrollback:,} lines are kept "
            "(setting: console_scrollback_lines)"
        )
        #: Above the output once older lines were dropped: how many.
        self.dropped_label = QLabel()
        self.dropped_label.setObjectName("dropped")
        self.dropped_label.setToolTip("Older output beyond the console's scrollback")
        self.dropped_label.hide()
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
        #: Start-up noise folded away (``is_startup_noise``), shown by ``noise_button``.
        self.noise: list[str] = []
        #: Newlines in ``noise``, counted as it comes (not recounted at every piece).
        self._noise_lines = 0
        self._refusals: tuple[str | None, str | None] = (None, None)
        self.noise_button = QPushButton()
        self.noise_button.setObjectName("noise")
        self.noise_button.setFlat(True)
        self.noise_button.setCheckable(True)
        self.noise_button.setToolTip(
            "What the kernel process wrote to stderr while starting, not output of your code"
        )
        self.noise_button.toggled.connect(self._update_noise)
        self.noise_button.hide()
        self.noise_view = QPlainTextEdit()
        self.noise_view.setObjectName("noise_view")
        self.noise_view.setReadOnly(True)
        self.noise_view.setMaximumHeight(90)
        self.noise_view.setFont(font)
        self.noise_view.hide()
        self.interrupt_button = self._button(
            "Interrupt", "Ctrl+I", "Interrupt the code the kernel runs", self.interrupt_requested
        )
        self.restart_button = self._button(
            "Restart",
            "Ctrl+R",
            "Restart the kernel (its variables are lost)",
            self.restart_requested,
        )
        for keys in ("Esc", "Ctrl+W"):
            QShortcut(QKeySequence(keys), self, self.close)
        top = QHBoxLayout()
        top.addWidget(self.interrupt_button)
        top.addWidget(self.restart_button)
        top.addStretch(1)
        top.addWidget(self.noise_button)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.noise_view)
        layout.addWidget(self.dropped_label)
        layout.addWidget(self.output, 1)
        layout.addLayout(row)
        layout.addWidget(self.status)

    def _button(self, text: str, keys: str, tip: str, signal: Any) -> QPushButton:
        """A button (with its action's icon) whose shortcut works anywhere in the console."""
        button = QPushButton(icon(f"action-{text.lower()}"), text)
        button.setObjectName(text.lower())
        sequence = QKeySequence(keys)
        native = sequence.toString(QKeySequence.SequenceFormat.NativeText)
        button.setToolTip(f"{tip} ({native}; Esc or Ctrl+W closes the console)")
        button.setEnabled(False)
        button.clicked.connect(lambda: self._request(signal))
        QShortcut(sequence, self, button.click)
        return button

    def _request(self, signal: Any) -> None:
        """Ask the window's commands (their question is the main window's), then come back."""
        signal.emit(self.kernel_id)
        self.raise_()
        self.activateWindow()

    def set_refusals(self, interrupt: str | None, restart: str | None) -> None:
        """Enable the buttons the core allows (once connected); a refused one's tooltip
        gives the core's reason."""
        self._refusals = (interrupt, restart)
        connected = self.connection is not None
        for button, why in ((self.interrupt_button, interrupt), (self.restart_button, restart)):
            button.setEnabled(connected and why is None)
            if why is not None:
                button.setToolTip(f"Cannot {button.text().lower()}: {why}")

    def _update_noise(self, *_: object) -> None:
        lines = self._noise_lines
        what = f"{lines} line{'s' if lines != 1 else ''} of start-up output"
        shown = self.noise_button.isChecked()
        self.noise_view.setVisible(shown)
        self.noise_button.setText(f"{'Hide' if shown else 'Show'} {what}")
        self.noise_button.show()

    @property
    def scrollback(self) -> int:
        """Lines of output the console keeps."""
        return self._scrollback

    @scrollback.setter
    def scrollback(self, lines: int) -> None:
        self._scrollback = max(1, lines)
        # One block more than the lines kept: the (empty) one after the last newline.
        self.output.setMaximumBlockCount(self._scrollback + 1)

    def text(self) -> str:
        """Everything shown (pending output included)."""
        self.flush()
        return self.output.toPlainText()

    def append(self, text: str) -> None:
        """Show ``text`` with the next frame."""
        if not text:
            return
        self._pending.append(text)
        self._ends_line = text.endswith("\n")
        if not self._frame.isActive():
            self._frame.start(FRAME_MS)

    def _next_frame(self) -> None:
        """A frame's insertion: at most ``FRAME_LINES`` lines (the cost of an insertion grows
        faster than its size, mostly Qt dropping as many old blocks); the rest follows after
        a turn of the loop, so the window never waits for a big insertion."""
        text = "".join(self._pending)
        self._pending.clear()
        cut = -1
        for _ in range(FRAME_LINES):
            cut = text.find("\n", cut + 1)
            if cut < 0:
                break
        if cut >= 0 and cut + 1 < len(text) and text.count("\n", cut + 1) <= self.scrollback:
            self._pending.append(text[cut + 1 :])
            text = text[: cut + 1]
        self._insert(text)
        if self._pending:
            self._frame.start(0)  # the rest after a turn of the loop (input, timers, paint)

    def flush(self) -> None:
        """Insert all the pending text now."""
        self._frame.stop()
        text = "".join(self._pending)
        self._pending.clear()
        self._insert(text)

    def _insert(self, text: str) -> None:
        """Insert ``text``; the document keeps at most ``scrollback`` lines (Qt drops the
        oldest blocks as it inserts: cheaper than removing them afterwards) and the count of
        dropped lines goes to the line above the output."""
        if not text:
            return
        self.flushes += 1
        doc = self.output.document()
        before = doc.blockCount()
        # More new lines than the scrollback holds: only their tail is ever inserted (what is
        # shown now and the head of the text are dropped, and counted).
        cut = len(text)
        for _ in range(self.scrollback + 1):
            cut = text.rfind("\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:
            self.dropped += before - 1 + text.count("\n", 0, cut + 1)
            self.output.clear()
            text = text[cut + 1 :]
            before = 1
        bar = self.output.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 2
        cursor = QTextCursor(doc)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.dropped += before + text.count("\n") - doc.blockCount()
        if self.dropped:
            self.dropped_label.setText(dropped_text(self.dropped))
            self.dropped_label.show()
        if at_bottom:
            bar.setValue(bar.maximum())

    def lines(self) -> int:
        """Lines of output shown (the last one possibly partial)."""
        doc = self.output.document()
        n = doc.blockCount()
        return n - 1 if doc.lastBlock().text() == "" else n

    def note(self, text: str) -> None:
        """A line from kernelmon itself (not from the kernel)."""
        self.append(("" if self._ends_line else "\n") + f"── {text} ──\n")

    def on_output_lost(self, n: int, text: str) -> None:
        """Output the kernel published never reached kernelmon: say so where it went missing
        (``text`` says how, or that it may have been another client's input prompts)."""
        self.note(f"Output missing here: {text}")

    def on_message(self, channel: str, msg: dict[str, Any]) -> None:
        if channel != "iopub":
            return
        text = message_text(msg)
        if text and is_startup_noise(msg):
            self.noise.append(text)
            self._noise_lines += text.count("\n")
            self.noise_view.appendPlainText(text.rstrip("\n"))
            self._update_noise()
        elif text:
            self.append(text)

    def attach(self, connection: KernelConnection) -> None:
        self.connection = connection
        if connection.replayed or connection.dropped:
            dropped = (
                f"; {plural(connection.dropped, 'older one')} dropped (buffer limits)"
                if connection.dropped
                else ""
            )
            self.note(
                f"{plural(connection.replayed, 'message')} the kernel sent while this console was "
                f"closed {'is' if connection.replayed == 1 else 'are'} shown above{dropped}"
            )
        if connection.lost:
            self.note(
                f"While this console was closed, {plural(connection.lost, 'message')} of the "
                "kernel's output never reached kernelmon (the event log says how)"
            )
        connection.on_lost = self.on_output_lost
        self.status.setText(f"Connected (session …{connection.session_key[-8:]})")
        self.input.setEnabled(True)
        self.run_button.setEnabled(True)
        self.set_refusals(*self._refusals)
        self.input.setFocus()

    def detach(self, why: str) -> None:
        if self.connection is not None:
            self.connection.on_lost = None
        self.connection = None
        for widget in (self.input, self.run_button, self.interrupt_button, self.restart_button):
            widget.setEnabled(False)
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
