"""The instance socket's protocol: one JSON object per line each way.

UTF-8, at most ``MAX_LINE`` bytes a line. A request is ``{"v": 1, "op": NAME, ...}`` (``v``
defaults to 1; an ``id`` is echoed); a reply is ``{"v": 1, "ok": true, ...}`` or
``{"v": 1, "ok": false, "code": CODE, "error": SENTENCE}``. The errors both ends raise are
here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import KernelmonError

PROTOCOL_VERSION = 1
#: The longest request line the server reads (a longer one gets an error and is hung up on).
MAX_LINE = 64 * 1024

#: How much of lines too long the server skips before it hangs up on their sender.
MAX_SKIP = 16 * MAX_LINE

#: The longest reply a client reads.
MAX_REPLY = 4 * 1024 * 1024

#: A connection that sends nothing for this long is closed (it never blocks other clients).
IDLE_TIMEOUT = 30.0

#: How long a client waits for the running instance's answer.
ANSWER_TIMEOUT = 2.0

#: A running instance younger than this may still be starting up: clients wait until it is
#: this old (and at least ``ANSWER_TIMEOUT``) before they call it unresponsive.
STARTUP_GRACE = 15.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class InstanceError(KernelmonError):
    """The instance folder, lock or socket cannot be used (the message says why)."""


class NoAnswer(InstanceError):
    """The running instance did not answer in time (or nothing listens on its socket)."""


class OpError(KernelmonError):
    """An op refused or failed; its message is sent to the client as the error."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


def error_reply(code: str, text: str) -> dict[str, Any]:
    """A reply saying the request failed: ``code`` for programs, ``text`` for people."""
    return {"v": PROTOCOL_VERSION, "ok": False, "code": code, "error": text}
