"""The consoles of the window: at most one per kernel, each placed beside the main window,
with one session key per kernel for the app's lifetime (so a reopened console gets the
output it missed)."""

from __future__ import annotations

import uuid

from PySide6.QtCore import QObject, QRect, Qt, Signal
from PySide6.QtWidgets import QWidget

from ..core import KernelMap
from .console import ConsoleWindow, Spawn
from .figures import kernel_label

#: Consoles opened one after another are offset by this much [px], not stacked exactly.
CASCADE = 28
#: The narrowest a console is made to fit beside the main window [px].
MIN_WIDTH = 380
#: A console's width where it cannot fit beside the main window (it covers part of it) [px].
FALLBACK_WIDTH = 520


def beside(window: QRect, size: tuple[int, int], screen: QRect, nth: int = 0) -> QRect:
    """Where a console of ``size`` goes: right of the ``window`` (its frame), else left of
    it, narrowed to fit (down to ``MIN_WIDTH``); only where neither side has room, over the
    window's edge on the roomier side, at most ``FALLBACK_WIDTH`` wide. ``nth`` consoles
    already open are cascaded."""
    width, height = size
    shift = CASCADE * nth
    y = max(screen.top(), min(window.top() + shift, screen.bottom() + 1 - height))
    right_room = screen.right() - window.right()
    left_room = window.left() - screen.left()
    if right_room >= MIN_WIDTH:
        w = min(width, right_room)
        return QRect(min(window.right() + 1 + shift, screen.right() + 1 - w), y, w, height)
    if left_room >= MIN_WIDTH:
        w = min(width, left_room)
        return QRect(max(screen.left(), window.left() - w - shift), y, w, height)
    # no room on either side: narrower, at the screen's edge on the roomier side, so that it
    # covers as little of the window as a readable console can
    w = min(width, max(FALLBACK_WIDTH, right_room, left_room))
    if right_room >= left_room:
        return QRect(max(screen.left(), screen.right() + 1 - w - shift), y, w, height)
    return QRect(min(screen.left() + shift, screen.right() + 1 - w), y, w, height)


class ConsoleManager(QObject):
    """Opens at most one console per kernel, with one session key per kernel for the app's
    lifetime (so a reopened console gets the output it missed)."""

    #: ``(kernel_id)``: a console's Interrupt / Restart (the window's commands act).
    interrupt_requested = Signal(str)
    restart_requested = Signal(str)

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
        title = kernel_label(kernel_id, model)  # as the table names it
        scrollback = self._map.settings.console_scrollback_lines
        console = ConsoleWindow(kernel_id, title, self._spawn, scrollback)
        console.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        console.closed.connect(self.on_console_closed)
        console.interrupt_requested.connect(self.interrupt_requested)
        console.restart_requested.connect(self.restart_requested)
        self.place(console)
        self.consoles[kernel_id] = console
        console.show()
        self._spawn(self._connect(console), f"Opening a console on kernel {kernel_id[:8]}")
        return console

    def place(self, console: ConsoleWindow) -> None:
        """Put the console beside the main window (the manager's parent), not on it."""
        window = self.parent()
        if not isinstance(window, QWidget) or not window.isVisible():
            return
        screen = window.screen().availableGeometry()
        frame = window.frameGeometry()
        rect = beside(frame, (console.width(), console.height()), screen, len(self.consoles))
        console.resize(rect.size())
        console.move(rect.topLeft())

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
