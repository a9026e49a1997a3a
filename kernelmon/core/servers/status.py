"""What became of a request to a server: a status and one sentence for the user."""

from __future__ import annotations

import json
from enum import StrEnum

from kernelmon.core.errors import KernelmonError


class ServerStatus(StrEnum):
    """A server's status, and the kind of every ``ServerError``."""

    REACHABLE = "reachable"
    #: not asked yet (a server kept from an earlier launch, a local server just found)
    CHECKING = "checking"
    #: the token (or headers) were refused: 401, or 403 from a Jupyter Server
    AUTH_REFUSED = "auth_refused"
    #: an Enterprise Gateway without EG_LIST_KERNELS: 403 on GET /api/kernels
    LISTING_FORBIDDEN = "listing_forbidden"
    TLS_PROBLEM = "tls_problem"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    #: not JSON, HTML (a login page, a proxy's error page), or JSON of the wrong shape
    BAD_ANSWER = "bad_answer"
    #: the server does not know that kernel or kernel spec (the server itself is fine)
    NOT_FOUND = "not_found"
    #: the server answered and refused or failed this one request (the server is fine)
    REFUSED = "refused"
    CLOSED = "closed"


#: Errors about one request: the server answered, so it stays reachable.
REQUEST_ERRORS = frozenset({ServerStatus.NOT_FOUND, ServerStatus.REFUSED})


class ServerError(KernelmonError):
    """A request to a server failed; ``str(error)`` is one sentence for the user."""

    def __init__(self, kind: ServerStatus, sentence: str, http_status: int | None = None):
        super().__init__(sentence)
        self.kind = kind
        self.sentence = sentence
        self.http_status = http_status


def clean(text: str, limit: int = 200) -> str:
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def server_message(body: bytes) -> str:
    """What the server said went wrong (jupyter_server and EG send
    ``{"reason": ..., "message": ...}``; an EG 500 puts the exception in ``traceback``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    trace = data.get("traceback")
    if isinstance(trace, str) and (not message or message == "Unknown server error"):
        # EG sends the exception's traceback; its last line names the exception
        lines = [line for line in trace.splitlines() if line.strip()]
        message = lines[-1] if lines else message
    if not isinstance(message, str) or not message:
        message = data.get("reason") if isinstance(data.get("reason"), str) else ""
    return clean(str(message))


class UnknownServer(KernelmonError, KeyError):
    """No server of that id is in kernelmon's list."""

    def __init__(self, server_id: object) -> None:
        super().__init__(f"kernelmon knows no server {server_id!r}")
        self.server_id = server_id

    def __str__(self) -> str:
        return str(self.args[0])
