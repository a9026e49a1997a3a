"""A kernel found on this machine whose process a live local Jupyter server started: the
server's to stop, never kernelmon's signals (the server's restarter would start it again, a
new process, its state lost).

Such a kernel is shown as another application's kernel until its server's next poll lists it
(a notebook opened since the last poll), or for good when kernelmon cannot ask the server (a
password-protected JupyterLab writes no token in its runtime file; the user removed the
server from kernelmon; the server does not answer). ``LocalParents`` decides, before a
shutdown: it polls the watch of the kernel's server at once, so that the row joins the server
and the shutdown goes through its REST API (``hand_over``); when the server cannot be asked,
kernelmon refuses, saying why and what to do, and does nothing to the process. Signals are
sent only once the server is gone. ``refusal`` says the same, without I/O, for the kernel
model's ``refusals`` (the table shows it before anyone clicks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import ActionRefused
from ..found import descends_from
from ..records import KernelRecord
from ..registry import Entry, Membership
from ..threads import run_in_thread
from .status import ServerStatus

if TYPE_CHECKING:
    from ..machine.discovery import FoundServer
    from .config import Snapshot
    from .watch import ServerWatch

logger = logging.getLogger(__name__)

#: Statuses in which a server will not be asked again before the user does something
#: (another poll would be refused the same way).
_NOT_ASKABLE = frozenset({ServerStatus.AUTH_REFUSED, ServerStatus.TLS_PROBLEM})
_WHAT_TO_DO = "Stop it from the server's own page, or stop the server"


class LocalParents:
    """Which found kernels are a live local server's, and handing them over (see the module).

    ``watches``: the servers kernelmon watches, by id; ``found()``: the servers the last scan
    of the runtime folders found; ``timeout()``: how long one look at a server may take."""

    def __init__(
        self,
        registry: Membership,
        watches: Mapping[str, ServerWatch],
        found: Callable[[], list[FoundServer]],
        timeout: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._watches = watches
        self._found = found
        self._timeout = timeout
        self._polls: set[asyncio.Task[Snapshot | None]] = set()

    def _live_servers(self, pids: set[int]) -> list[FoundServer]:
        return [s for s in self._found() if s.alive and s.pid is not None and s.pid in pids]

    def _watches_of(self, servers: list[FoundServer]) -> list[ServerWatch]:
        pids = {s.pid for s in servers}
        return [w for w in self._watches.values() if w.config.local and w.config.pid in pids]

    def refusal(self, record: KernelRecord) -> str | None:
        """Why a shutdown of this found kernel is refused now, from what is known (no I/O):
        its parent is a live local server kernelmon does not watch, or cannot ask."""
        if not record.parent_alive or record.parent_pid is None or record.pid is None:
            return None
        servers = self._live_servers({record.parent_pid})
        if not servers:
            return None
        watches = self._watches_of(servers)
        if not watches:
            return _unwatched(servers[0])
        if all(w.status in _NOT_ASKABLE for w in watches):
            return _cannot_ask(watches[0])
        return None

    async def hand_over(self, entry: Entry) -> Entry:
        """The entry a shutdown acts on: ``entry`` itself unless its process was started by
        a live local server; then the row of that server (its poll, done now, joined it),
        or ``ActionRefused`` saying why the server cannot be asked."""
        record = entry.record
        if entry.backend.server_id() is not None or record.pid is None:
            return entry
        pid, parent = record.pid, record.parent_pid
        candidates = {s.pid for s in self._found() if s.alive and s.pid is not None}
        if not candidates:
            return entry
        started_by = await run_in_thread(
            lambda: {c for c in candidates if descends_from(pid, parent, c)}
        )
        servers = self._live_servers(started_by)
        if not servers:
            return entry  # no live server runs it: signals are not undone
        watches = self._watches_of(servers)
        if not watches:
            raise ActionRefused(_unwatched(servers[0]))
        asked = [w for w in watches if w.status not in _NOT_ASKABLE]
        late = False
        if asked:
            polls = [asyncio.get_running_loop().create_task(w.poll_once()) for w in asked]
            for poll in polls:  # left to finish if they outlast the wait: they apply themselves
                self._polls.add(poll)
                poll.add_done_callback(self._polls.discard)
            timeout = self._timeout()
            _done, pending = await asyncio.wait(polls, timeout=timeout)
            late = bool(pending)
        now = self._registry.find(record.id)
        if now is not None and now.backend.server_id() is not None:
            logger.info("Kernel %s is shut down through its server", record.id)
            return now
        if late:
            raise ActionRefused(
                f"The Jupyter Server {watches[0].config.name} started this kernel and would "
                "start it again if kernelmon stopped it by signals, and it did not answer "
                f"within {timeout:g} s. Try again, or {_WHAT_TO_DO[0].lower()}{_WHAT_TO_DO[1:]}"
            )
        raise ActionRefused(_not_joined(watches[0], record))


def _unwatched(server: FoundServer) -> str:
    return (
        f"A Jupyter Server that runs ({server.url}, process {server.pid}) started this kernel "
        "and would start it again if kernelmon stopped it by signals, and kernelmon does not "
        f"watch that server (it was removed from kernelmon's list). {_WHAT_TO_DO}"
    )


def _cannot_ask(watch: ServerWatch) -> str:
    name = watch.config.name
    return (
        f"The Jupyter Server {name} started this kernel and would start it again if "
        f"kernelmon stopped it by signals, and kernelmon cannot ask that server to "
        f"({watch.status_text()}; a password-protected server gives kernelmon no token). "
        f"{_WHAT_TO_DO}"
    )


def _not_joined(watch: ServerWatch, record: KernelRecord) -> str:
    if watch.status in _NOT_ASKABLE or watch.status not in (
        ServerStatus.REACHABLE,
        ServerStatus.LISTING_FORBIDDEN,
    ):
        return _cannot_ask(watch)
    return (
        f"The Jupyter Server {watch.config.name} started this kernel and would start it "
        "again if kernelmon stopped it by signals, and it does not list kernel "
        f"{record.id} as its own. {_WHAT_TO_DO}"
    )
