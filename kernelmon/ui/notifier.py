"""One way to tell the user something: ``Notifier.notify(level, title, text, kernel_id)``.

It fans out by level:

- ``STATUS``: what an action is doing or just did ("Starting python3…"): the status bar only.
- ``INFO``, ``WARNING``, ``ERROR``: the status bar, the event log (unless the core's own
  event already put it there: ``log=False``), the log file (warnings and errors), and, when
  it has a title, the tray (``notified``, shown as a message when there is a tray). ``dialog=True``
  also opens a dialog (``dialogs.show_error``) for a failure the user must not miss.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QStatusBar, QWidget

from . import dialogs
from .event_log import EventLogView

logger = logging.getLogger(__name__)

#: How long a message stays in the status bar (ms); warnings and errors twice as long.
MESSAGE_MS = 8000


class Level(StrEnum):
    STATUS = "status"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Notifier(QObject):
    """Tells the user, through the status bar, the event log, the tray and dialogs."""

    #: ``(level, title, text)``: something the tray should show (every notice with a title
    #: but status messages; without a tray nobody listens).
    notified = Signal(str, str, str)

    def __init__(
        self, window: QWidget, status: QStatusBar, event_log: EventLogView, parent: QObject
    ) -> None:
        super().__init__(parent)
        self._window = window
        self._status = status
        self._event_log = event_log

    def notify(
        self,
        level: Level | str,
        title: str,
        text: str,
        kernel_id: str | None = None,
        *,
        log: bool = True,
        dialog: bool = False,
        lasting: bool = False,
    ) -> None:
        """Tell the user ``text`` (``title`` is its subject, "" for a status message).
        ``lasting`` keeps a status message until the next one."""
        level = Level(level)
        line = f"{title}: {text}" if title else text
        long = level in (Level.WARNING, Level.ERROR)
        self._status.showMessage(line, 0 if lasting else MESSAGE_MS * (2 if long else 1))
        if level == Level.STATUS:
            return
        if long:
            logger.warning("%s", line)
        if log:
            self._event_log.add(kernel_id, line if level == Level.ERROR else text, level.value)
        if title:
            self.notified.emit(level.value, title, text)
        if dialog:
            dialogs.show_error(self._window, title, text)

    def status(self, text: str, *, lasting: bool = False) -> None:
        """A status message: ``notify(Level.STATUS, "", text)``."""
        self.notify(Level.STATUS, "", text, lasting=lasting)
