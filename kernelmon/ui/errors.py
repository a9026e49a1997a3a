"""The one place uncaught errors go: the log, then the user, in words; the app keeps running.

``ErrorReporter.excepthook`` is ``sys.excepthook`` while the app runs (Qt hands exceptions
raised in slots to it) and ``loop_exception_handler`` the qasync loop's exception handler.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from types import TracebackType
from typing import Any

logger = logging.getLogger("kernelmon.app")


class ErrorReporter:
    """The one place uncaught errors go: the log, then the user, in words."""

    def __init__(self) -> None:
        self.window: Any = None

    def report(self, text: str, exc: BaseException | None) -> None:
        if exc is not None:
            logger.error("%s", text, exc_info=(type(exc), exc, exc.__traceback__))
            detail = f"{text}\n\n{type(exc).__name__}: {exc}"
        else:
            logger.error("%s", text)
            detail = text
        window = self.window
        if window is not None:
            try:
                window.notices.show_internal_error(detail)
            except Exception:
                logger.exception("Could not show an error to the user")
        else:
            print(f"kernelmon: {detail}", file=sys.stderr)

    def excepthook(
        self, etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        if value.__traceback__ is None and tb is not None:
            value = value.with_traceback(tb)
        self.report("Something went wrong inside kernelmon; it keeps running.", value)

    def loop_exception_handler(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        exc = context.get("exception")
        message = context.get("message", "An asynchronous task failed")
        if exc is None:
            logger.error("%s", message)
            return
        self.report(f"{message}; kernelmon keeps running.", exc)
