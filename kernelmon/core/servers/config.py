"""What kernelmon keeps of one server (``ServerConfig``) and what one poll of it saw
(``Snapshot``): plain data, importable without aiohttp or keyring."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from kernelmon.core.servers.model import RemoteKernel

if TYPE_CHECKING:
    from kernelmon.core.servers.watch import ServerWatch

#: What kernelmon can say of a server's own culler: jupyter_server's and the gateway's
#: REST API do not tell their cull settings (``GET /api/status`` has none).
CULLS_UNKNOWN = "unknown"


#: an HTTP header's name (RFC 9110's token)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def sendable(value: str) -> bool:
    """Whether a header value (or a token) can be sent as it is: the poll connection writes
    its requests itself, so a line break would start another header, or another request."""
    return not any(c in value for c in "\r\n\0")


def header_name_ok(name: str) -> bool:
    return bool(_HEADER_NAME.fullmatch(name))


def credentials_refusal(url: object) -> str | None:
    """The sentence refusing an address that carries a user name or password
    (``http://ann:s3cret@host/``), without repeating them; None for any other address.

    kernelmon keeps such an address nowhere: it would show the password in the servers file,
    the table, the logs and every error sentence."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        has_credentials = parts.username is not None or parts.password is not None
        host = parts.hostname or "the server"
    except ValueError:
        return None  # not an address at all: the caller says so
    if not has_credentials:
        return None
    return (
        f"The address of {host} carries a user name or password, which kernelmon does not "
        "keep or send: give the server's address without them, and its token (or an "
        "Authorization header) instead."
    )


@dataclass
class ServerConfig:
    """What kernelmon keeps of a server (the token apart: it is in the keyring)."""

    id: str
    url: str
    name: str
    #: names and values; the values are secrets, kept beside the token (``TokenStore``)
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    #: found in a runtime folder (a jpserver-/nbserver- file): not saved, token from the file
    local: bool = False
    #: whether kernelmon's culler may shut this server's kernels down (off by default)
    kernelmon_culling: bool = False
    #: kernels kernelmon started there (followed by id where the listing is forbidden)
    started: list[str] = field(default_factory=list)
    #: a local server's process and root folder, and its runtime file
    pid: int | None = None
    root_dir: str | None = None
    runtime_file: str | None = None
    #: header values that are still in the servers file (an older kernelmon wrote them
    #: there) because the token store could not take them: kept there until it can
    headers_in_file: bool = False

    def __post_init__(self) -> None:
        refusal = credentials_refusal(self.url)
        if refusal is not None:
            raise ValueError(refusal)

    def saved(self) -> dict[str, Any]:
        """What the servers file keeps: never the token, and of the headers only their
        names (but values an older kernelmon wrote there stay until they can be moved)."""
        return {
            "id": self.id,
            "url": self.url,
            "name": self.name,
            "headers": dict(self.headers) if self.headers_in_file else sorted(self.headers),
            "verify_tls": self.verify_tls,
            "kernelmon_culling": self.kernelmon_culling,
            "started": list(self.started),
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one successful poll saw."""

    #: kernels by id
    kernels: dict[str, RemoteKernel]
    #: kernel id -> the notebook (else console, else file) path of its session
    paths: dict[str, str]
    #: True when ``kernels`` is the server's whole list (else: only the kernels asked by id)
    complete: bool
    #: kernels asked by id that the server does not know (any more)
    missing: frozenset[str] = frozenset()
    #: the poll's number (``ServerWatch.polls`` when it began)
    number: int = 0
    #: the server answered both listings "not modified" (the same as the last poll's)
    unchanged: bool = False


class Applied(NamedTuple):
    """A poll applied whole, that left every kernel it listed a row of its server as it said
    (``ServerWatch.applied``, ``join.apply_snapshot``)."""

    kernels: dict[str, RemoteKernel]
    paths: dict[str, str]
    #: ``Registry.members`` then
    members: int


OnPoll = Callable[["ServerWatch", "Snapshot | None"], None]
