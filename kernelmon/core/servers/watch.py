"""One server kernelmon watches: its configuration, its client, its status and its polls.

A ``ServerWatch`` owns the state of one Jupyter Server or Enterprise Gateway: the
``ServerClient`` (one request at a time), the status shown for it, the kernel specs it offers.
A poll (``poll_once``) lists the server's kernels and sessions (or, on a gateway that forbids
listing, asks for each kernel kernelmon started there by id) and hands what it saw, a
``Snapshot`` or None after a failure, to ``on_poll``. When it is polled is the servers' one
``PollClock``'s (polling.py), which ``poll_soon`` asks. Nothing here touches the kernel map:
the ``Servers`` part (part.py) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kernelmon.core.servers.client import ServerClient
from kernelmon.core.servers.config import Applied, OnPoll, ServerConfig, Snapshot
from kernelmon.core.servers.model import (
    KernelSpecs,
    Listing,
    RemoteKernel,
    RemoteKernelSpec,
    RemoteSession,
    replaced_at,
    session_paths,
)
from kernelmon.core.servers.status import ServerError, ServerStatus

if TYPE_CHECKING:
    from kernelmon.core.registry import Entry

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ServerWatch:
    """One server's state and its poll (see the module)."""

    def __init__(
        self,
        config: ServerConfig,
        token: str | None,
        *,
        timeout: float,
        on_poll: OnPoll,
        client: ServerClient | None = None,
    ) -> None:
        self.config = config
        self.client = client or ServerClient(
            config.url, token, config.headers, config.verify_tls, timeout
        )
        config.url = self.client.url
        self.on_poll = on_poll
        self.version: str | None = None
        self.specs: dict[str, RemoteKernelSpec] | None = None
        self.default_spec: str | None = None
        #: whether a poll asked for the kernel specs (one poll does, the first that lists)
        self.specs_asked = False
        self.status = ServerStatus.CHECKING
        self.error: str | None = None
        self.status_since = datetime.now(UTC)
        self.failures = 0
        #: the (status, error) last told to subscribers
        self.announced: tuple[ServerStatus, str | None] | None = None
        #: polls begun; kernels added to the map during poll n are not judged by it
        self.polls = 0
        self.last_poll: datetime | None = None
        #: when the clock polls it next (``PollClock``), None while it is not on the clock
        self.next_poll: datetime | None = None
        #: asks the clock for a poll now (``PollClock.soon``, set by the servers part)
        self.ask_soon: Callable[[ServerWatch], None] | None = None
        #: kernel id -> the poll number when kernelmon added it (a start, a join)
        self.born: dict[str, int] = {}
        #: the map's rows of this server: kernel id -> what the server said of it when last
        #: applied (its model and notebook path), with the map's entry it was applied to
        #: (None: apply the next answer whatever it is)
        self.rows: dict[str, tuple[RemoteKernel, str | None, Entry] | None] = {}
        #: the last poll applied whole, while every kernel it listed is a row of this server
        #: as it said and the map's entries are as they were (``join.apply_snapshot``)
        self.applied: Applied | None = None
        #: kernel id -> the poll number when kernelmon shut it down: a poll begun before
        #: then may still list it, and must not bring it back
        self.ended: dict[str, int] = {}
        #: ids of kernels kernelmon is starting there (their POST not answered yet)
        self.starting: set[str] = set()
        #: started ids the server did not have, since when (``kernel_starts.forget_never_seen``)
        self.unseen_since: dict[str, datetime] = {}
        self._last_listings: tuple[object, object] | None = None
        #: the listings last read into a snapshot's kernels and paths, with them (a listing
        #: the client kept, the server having answered 304, is not read again)
        self._read: dict[str, tuple[Listing[Any], dict[str, Any]]] = {}
        #: set once the first poll is done (``Servers.settle``)
        self.polled = asyncio.Event()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def kind(self) -> str | None:
        return str(self.client.kind) if self.client.kind is not None else None

    # -- status -----------------------------------------------------------------------------

    def set_status(self, status: ServerStatus, error: str | None) -> bool:
        """Note the server's status; True when it changed."""
        changed = status != self.status
        if changed:
            self.status_since = datetime.now(UTC)
        self.status = status
        self.error = error
        return changed

    def status_text(self) -> str:
        """The status in words (``unreachable since 10:42:07 UTC: ...``)."""
        words = str(self.status).replace("_", " ")
        if self.status in (ServerStatus.REACHABLE, ServerStatus.CHECKING):
            return words
        since = self.status_since.strftime("%H:%M:%S UTC")
        return f"{words} since {since}" + (f": {self.error}" if self.error else "")

    # -- polling ----------------------------------------------------------------------------

    def fetches_ahead(self) -> bool:
        """Whether a poll begins with ``ServerClient.fetch_listings`` and then asks nothing
        else (the server identified, its kernel specs asked, its listing not forbidden)."""
        return (
            self.client.kind is not None
            and self.specs_asked
            and self.status != ServerStatus.LISTING_FORBIDDEN
        )

    async def poll_once(self, fetched: bool = False) -> Snapshot | None:
        """One poll: list the kernels and sessions, update the status, hand the result to
        ``on_poll``; returns it (None after a failure). Never raises a ``ServerError``.
        ``fetched``: the listings were fetched for it already (``fetch_listings_of``)."""
        self.polls += 1
        number = self.polls
        try:
            snapshot = await self._look(number, fetched)
        except ServerError as error:
            self.failures += 1
            self.set_status(error.kind, error.sentence)
            snapshot = None
        except Exception as error:  # a bug must not stop the clock or the loop
            logger.exception("Polling %s failed", self.config.url)
            self.failures += 1
            self.set_status(ServerStatus.BAD_ANSWER, f"kernelmon failed reading it: {error}")
            snapshot = None
        else:
            self.failures = 0
        if snapshot is None:
            self._last_listings = None  # the next answer is news, changed or not
        self.last_poll = datetime.now(UTC)
        try:
            self.on_poll(self, snapshot)
        except Exception:
            logger.exception("Applying a poll of %s failed", self.config.url)
        self.polled.set()
        return snapshot

    async def _look(self, number: int, fetched: bool) -> Snapshot:
        client = self.client
        if client.kind is None:
            info = await client.identify()
            self.version = info.gateway_version or info.version
        if not fetched and self.status != ServerStatus.LISTING_FORBIDDEN:  # (refused anyway)
            await client.fetch_listings()  # both at once, read by the listings below
        try:
            return await self._listed(number)
        finally:
            client.forget_fetched()

    async def _listed(self, number: int) -> Snapshot:
        client = self.client
        forbidden: str | None = None
        missing: set[str] = set()
        listing: object = None
        try:
            listing = await client.list_kernels()
            kernels = self._once("kernels", listing, _by_id)
        except ServerError as error:
            if error.kind != ServerStatus.LISTING_FORBIDDEN:
                raise
            forbidden = error.sentence
            kernels = {}
            for kid in list(self.config.started):
                try:
                    kernels[kid] = await client.get_kernel(kid)
                except ServerError as one:
                    if one.kind != ServerStatus.NOT_FOUND:
                        raise
                    missing.add(kid)
        sessions: object = None
        try:
            sessions = await client.list_sessions()
            paths = self._once("paths", sessions, _paths)
        except ServerError as error:
            if error.kind not in (ServerStatus.REFUSED, ServerStatus.NOT_FOUND):
                raise
            paths = {}  # a server without sessions (a refused listing) still has kernels
        if self.specs is None and not self.specs_asked:
            # once, for the kernels' display names: a server that cannot answer is asked
            # again only when the user starts a kernel there or lists its specs
            self.specs_asked = True
            with contextlib.suppress(ServerError):
                await self.load_specs()
        if forbidden is not None:
            self.set_status(ServerStatus.LISTING_FORBIDDEN, forbidden)
        else:
            self.set_status(ServerStatus.REACHABLE, None)
        # the client hands back the very listings it kept when the server answered 304 (not
        # modified): then nothing changed since the last poll (``Snapshot.unchanged``)
        unchanged = listing is not None and (listing, sessions) == self._last_listings
        self._last_listings = (listing, sessions)
        return Snapshot(
            kernels, paths, forbidden is None, frozenset(missing), number, unchanged=unchanged
        )

    def _once(
        self,
        what: str,
        listing: Listing[Any],
        read: Callable[[Listing[Any], Listing[Any] | None, dict[str, Any] | None], dict[str, T]],
    ) -> dict[str, T]:
        """``read(listing, last listing, what it gave)``, or what it gave for the very same
        ``listing`` last time (never changed by anyone: snapshots are read only)."""
        last = self._read.get(what)
        if last is not None and last[0] is listing:
            return cast(dict[str, T], last[1])
        value = read(listing, *(last or (None, None)))
        self._read[what] = (listing, value)
        return value

    async def load_specs(self) -> KernelSpecs:
        """Ask the server for its kernel specs and keep them (display names, the default)."""
        specs = await self.client.kernelspecs()
        self.specs = {s.name: s for s in specs.specs.items}
        self.default_spec = specs.default
        return specs

    def display_name(self, kernel_name: str) -> str:
        spec = (self.specs or {}).get(kernel_name)
        return spec.display_name if spec is not None else kernel_name

    def row_is_news(self, kernel_id: str) -> None:
        """What the server says next of the kernel is applied, changed or not."""
        self.rows[kernel_id] = None
        self.applied = None

    def poll_soon(self) -> None:
        """Poll now instead of at the next cycle (after an action)."""
        if self.ask_soon is not None:
            self.ask_soon(self)

    async def close(self) -> None:
        """Close the client (a poll under way ends with it)."""
        self.ask_soon = None
        await self.client.close()


def _by_id(
    listing: Listing[RemoteKernel],
    last: Listing[RemoteKernel] | None,
    kernels: dict[str, RemoteKernel] | None,
) -> dict[str, RemoteKernel]:
    """A listing's kernels by id: the last listing's dict, copied and updated where other
    kernel objects stand at the same places under the same ids (the memo hands back those
    that did not change), else read anew."""
    items = listing.items
    moved = replaced_at(items, last.items) if last is not None else None
    if moved is None or kernels is None or len(kernels) != len(items):
        return {k.id: k for k in items}
    before = last.items if last is not None else ()
    if any(items[i].id != before[i].id for i in moved):
        return {k.id: k for k in items}
    if not moved:
        return kernels  # (snapshots are read only: see ``_once``)
    now = dict(kernels)
    for i in moved:
        now[items[i].id] = items[i]
    return now


def _paths(
    listing: Listing[RemoteSession],
    last: Listing[RemoteSession] | None,
    paths: dict[str, str] | None,
) -> dict[str, str]:
    """``session_paths`` of a listing: the last one's when the sessions that changed kept
    their kernel, path and type (a kernel's activity changes its session's entry)."""
    items = listing.items
    moved = replaced_at(items, last.items) if last is not None else None
    if moved is not None and paths is not None and last is not None:
        before = last.items
        if all(
            (items[i].kernel_id, items[i].path, items[i].type)
            == (before[i].kernel_id, before[i].path, before[i].type)
            for i in moved
        ):
            return paths
    return session_paths(items)
