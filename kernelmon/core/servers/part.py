"""The map's part for Jupyter Servers and Enterprise Gateways (``KernelMap.add_server`` ...).

``Servers`` owns the servers kernelmon knows, each a ``ServerWatch`` (watch.py) by id, and the
file that keeps the servers the user added (``servers.json`` in the state folder: url, name,
headers, TLS verification, the culling opt-in, the kernels kernelmon started there; never a
token: tokens go to the keyring through ``TokenStore``). Local servers (a live
``jpserver-*.json``/``nbserver-*.json`` found by discovery) are added and removed by
``sync_local`` and never saved. When each server is polled is the ``PollClock``'s
(polling.py); servers polled in one turn are asked at once (``poll_together``). Each poll
is applied to the map by ``join.apply_snapshot``.
Starting kernels on a server (and following the ids of those kernelmon started) is
``KernelStarts`` (kernel_starts.py); writing the servers file is ``ServerSaves`` (saving.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from ..backends.factory import BackendFactory
from ..events import ServerChanged, ServerRemoved
from ..records import isoformat
from .config import CULLS_UNKNOWN, ServerConfig, Snapshot, sendable
from .join import JoinRegistry, apply_snapshot, entries_of, set_culling
from .kernel_starts import START_GRACE as START_GRACE
from .kernel_starts import KernelStarts, forget_never_seen
from .polling import PollClock
from .saving import ServerSaves
from .status import ServerError, ServerStatus, UnknownServer

if TYPE_CHECKING:
    from ..machine.discovery import FoundServer
    from .book import ServerBook
    from .watch import ServerWatch

logger = logging.getLogger(__name__)


class Servers:
    """The servers kernelmon knows and their kernels in the map (see the module)."""

    def __init__(
        self,
        registry: JoinRegistry,
        backends: BackendFactory,
        *,
        folder: Callable[[], Path],
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._folder = folder
        self._book: ServerBook | None = None
        self.watches: dict[str, ServerWatch] = {}
        self._started = False
        #: runtime files of local servers the user removed (not added again this run)
        self._dismissed: set[str] = set()
        self._closing: set[asyncio.Task[Any]] = set()
        self._saves = ServerSaves(self.watches, lambda: self.book, self._announce, self._background)
        self._starts = KernelStarts(registry, backends, self.watches, self._saves)
        self.clock = PollClock(
            lambda: self._registry.settings.server_poll_interval,
            self.poll_together,
            ready=lambda watch: watch.fetches_ahead() and watch.client.poll_ready(),
        )

    @property
    def book(self) -> ServerBook:
        """The servers file and the tokens (imported when first used: keyring is slow to
        import, and a map that never meets a server never needs it)."""
        if self._book is None:
            from .book import ServerBook

            self._book = ServerBook(self._folder, self._token_file_allowed)
        return self._book

    def _token_file_allowed(self) -> bool:
        return self._registry.settings.server_token_file

    # -- reading ----------------------------------------------------------------------------

    def watch(self, server_id: str) -> ServerWatch:
        try:
            return self.watches[server_id]
        except (KeyError, TypeError):
            raise UnknownServer(server_id) from None

    def describe(self, watch: ServerWatch) -> dict[str, Any]:
        """A server's ``KernelMap.list_servers`` entry. Keys: ``id``, ``url``, ``name``,
        ``kind`` ("jupyter_server", "enterprise_gateway", None until known), ``version``,
        ``status`` (a ``ServerStatus``: "checking" until first asked, "reachable",
        "auth_refused", "listing_forbidden",
        "tls_problem", "unreachable", "timeout", "bad_answer", "refused"), ``error`` (a
        sentence, or None), ``status_text`` ("unreachable since 10:42:07 UTC: ..."),
        ``status_since`` (ISO UTC), ``local``, ``pid`` and ``root_dir`` (local servers),
        ``headers`` (their names only), ``verify_tls``, ``kernels`` (its rows in the map),
        ``lists_kernels`` (False: a gateway without EG_LIST_KERNELS, whose kernels kernelmon
        did not start are not seen), ``server_culls`` ("unknown": neither server's REST API
        tells its cull settings), ``cull_settings`` (None, for the same reason),
        ``kernelmon_culling`` (whether kernelmon's culler may act on its kernels:
        ``KernelMap.set_server_culling``), ``last_poll``, ``next_poll`` (ISO UTC or None)."""
        config = watch.config
        return {
            "id": config.id,
            "url": config.url,
            "name": config.name,
            "kind": watch.kind,
            "version": watch.version,
            "status": str(watch.status),
            "error": watch.error or self._saves.unsaved(config.id),
            "status_text": watch.status_text(),
            "status_since": isoformat(watch.status_since),
            "local": config.local,
            "pid": config.pid,
            "root_dir": config.root_dir,
            "headers": sorted(config.headers),
            "verify_tls": config.verify_tls,
            "kernels": len(entries_of(self._registry, watch)),
            "lists_kernels": watch.status != ServerStatus.LISTING_FORBIDDEN,
            "server_culls": CULLS_UNKNOWN,
            "cull_settings": None,
            "kernelmon_culling": config.kernelmon_culling,
            "last_poll": isoformat(watch.last_poll),
            "next_poll": isoformat(watch.next_poll),
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(w) for w in self.watches.values()]

    # -- turning it on and off --------------------------------------------------------------

    async def start(self) -> None:
        """Load the servers the user added and put every server on the clock (inside the loop)."""
        if self._started:
            return
        self._started = True
        for config in await self.book.load():
            if config.id in self.watches:
                continue
            token = await self.book.token(config.id)
            try:
                self._add_watch(config, token)
            except ValueError as error:  # a token or header value the store gave back
                # that cannot be sent (a line break in it): watched without them, said
                self.book.problems.append(
                    f"Server {config.name} ({config.url}) is watched without its token "
                    f"and unusable headers: {error}"
                )
                config.headers = {k: v for k, v in config.headers.items() if sendable(v)}
                self._add_watch(config, None)
        for problem in self.book.problems:
            logger.warning("%s", problem)
        for watch in self.watches.values():
            self._on_clock(watch)

    async def stop(self) -> None:
        """Stop polling; the servers' kernels leave the map (and keep running)."""
        self._started = False
        await self.clock.close()
        for server_id in list(self.watches):
            await self._drop(server_id, "kernelmon stopped watching its server")
        await self.clock.close()  # (a server whose adding ended meanwhile put it back on)
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the first poll of every local server: until
        then its kernels are rows of other applications' kernels, which a shutdown would
        signal (and the server's restarter undo)."""
        waits = [
            asyncio.ensure_future(w.polled.wait()) for w in self.watches.values() if w.config.local
        ]
        if waits:
            try:
                await asyncio.wait(waits, timeout=timeout)
            finally:
                for wait in waits:  # (those not done: nothing is left waiting)
                    wait.cancel()

    def settings_changed(self) -> None:
        """A new ``server_timeout`` holds for the next request to every server, a new poll
        interval from now (``PollClock.interval_changed``)."""
        for watch in self.watches.values():
            watch.client.timeout = self._registry.settings.server_timeout
        self.clock.interval_changed()

    async def poll_all(self) -> None:
        """One poll of every server now (``PollClock.poll_now``: one turn, and the turns
        under way of the others waited for)."""
        await self.clock.poll_now(list(self.watches.values()))

    async def poll_together(self, watches: list[ServerWatch]) -> None:
        """One poll of each of ``watches`` now (each applies itself to the map): their
        listings are asked at once (``fetch_listings_of``: the loop woken once when all
        answered); a server whose answers are then in hand is read and applied at once, the
        others (to identify, a connection to open, a request of theirs under way, answers to
        ask again through aiohttp) poll concurrently."""
        from .client import fetch_listings_of

        ahead = [w for w in watches if w.fetches_ahead()]
        begun = await fetch_listings_of([w.client for w in ahead])
        fetched = {id(w) for w in ahead if id(w.client) in begun}
        ready = {id(w) for w in ahead if id(w) in fetched and w.client.fetched_all()}
        rest = [w.poll_once(id(w) in fetched) for w in watches if id(w) not in ready]
        others = asyncio.gather(*rest) if rest else None
        try:
            for watch in watches:
                if id(watch) in ready:
                    await watch.poll_once(fetched=True)  # (nothing to wait for)
        except BaseException:  # cancelled: the others too
            if others is not None:
                others.cancel()
            raise
        if others is not None:
            await others

    # -- servers the user adds --------------------------------------------------------------

    async def add(
        self,
        url: str,
        token: str | None = None,
        *,
        name: str | None = None,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
    ) -> str:
        """Test the connection, then keep the server (token in the keyring) and poll it."""
        from .client import ServerClient

        settings = self._registry.settings
        client = ServerClient(url, token, headers, verify_tls, settings.server_timeout)
        for watch in self.watches.values():
            # a live local server's address is that server (watched already, from its file)
            if watch.config.url == client.url:
                await client.close()
                return watch.id
        try:
            info = await client.check()
        except BaseException:
            await client.close()
            raise
        server_id = uuid.uuid4().hex[:12]
        kind = "Enterprise Gateway" if info.gateway_version else "Jupyter Server"
        address = URL(client.url)
        host = f"{address.host}:{address.port}"
        config = ServerConfig(
            id=server_id,
            url=client.url,
            name=(name or "").strip() or f"{kind} at {host}",
            headers=dict(headers or {}),
            verify_tls=verify_tls,
        )
        kept = False
        try:
            if token:
                await self.book.keep_token(server_id, token)
                kept = True
            if headers:  # secrets too: beside the token, never in the servers file
                kept = True
                await self.book.keep_headers(server_id, dict(headers))
            self.watches[server_id] = self._new_watch(config, token, client)
            await self._saves.save()
        except BaseException:
            self.watches.pop(server_id, None)
            await client.close()
            if kept:  # nothing is kept of a server that could not be added
                await self.book.forget_token(server_id)
            raise
        added = self.watches.get(server_id)
        if added is None:  # removed, or kernelmon stopped watching servers, while it was saved
            raise ServerError(
                ServerStatus.CLOSED,
                f"The server {config.name} ({config.url}) was removed, or kernelmon stopped "
                "watching servers, while it was being added.",
            )
        added.version = info.gateway_version or info.version
        added.set_status(client.status, client.error)  # what the check found
        self._announce(added, f"Server {config.name} added ({config.url})")
        self._on_clock(added)
        return server_id

    async def remove(self, server_id: str) -> None:
        """Forget a server: its kernels leave the map (they keep running on the server)."""
        watch = self.watch(server_id)
        if watch.config.local and watch.config.runtime_file:
            self._dismissed.add(watch.config.runtime_file)
        await self._drop(server_id, "its server was removed from kernelmon")
        if not watch.config.local:
            what = f"the server {watch.config.name} comes back at the next launch"
            await self._saves.saved(what=what)
            await self.book.forget_token(server_id)

    def set_culling(self, server_id: str, allowed: bool) -> None:
        """Whether kernelmon's culler may shut the server's kernels down."""
        if not isinstance(allowed, bool):
            raise TypeError("set_server_culling needs True or False")
        watch = self.watch(server_id)
        watch.config.kernelmon_culling = allowed
        set_culling(self._registry, watch)
        if not watch.config.local:
            self._background(self._save_culling(watch, allowed))
        self._announce(watch)

    async def _save_culling(self, watch: ServerWatch, allowed: bool) -> None:
        """Keep the culling opt-in; when the file cannot be written, the server's flag goes
        back to what the file says (the map shows what was kept, and says why)."""
        state = "allowed" if allowed else "not allowed"
        what = f"kernelmon's culling of its kernels stays as it was, not {state}"
        if await self._saves.saved(watch, what):
            return
        if watch.config.kernelmon_culling is allowed:
            watch.config.kernelmon_culling = not allowed
            set_culling(self._registry, watch)
            self._announce(watch, self._saves.unsaved(watch.id) or "")

    # -- local servers ----------------------------------------------------------------------

    def sync_local(self, found: list[FoundServer]) -> None:
        """Make the local servers those a scan found alive (called by discovery)."""
        alive: dict[str, FoundServer] = {}
        for server in found:
            if server.alive and server.url and server.path not in self._dismissed:
                alive[_local_id(server)] = server
        for server_id, watch in list(self.watches.items()):
            if watch.config.local and server_id not in alive:
                stopped = self._detach(server_id, "its server stopped", release=True)
                if stopped is not None:
                    self._background(stopped.close())
        for server_id, server in alive.items():
            if server_id in self.watches:
                continue
            assert server.url is not None
            root = os.path.basename((server.root_dir or "").rstrip("/")) or server.root_dir
            config = ServerConfig(
                id=server_id,
                url=server.url,
                name=f"Jupyter Server :{server.port}" + (f" ({root})" if root else ""),
                local=True,
                pid=server.pid,
                root_dir=server.root_dir,
                runtime_file=server.path,
            )
            try:
                watch = self._add_watch(config, server.token or None)
            except ValueError as error:
                logger.warning("Local server %s cannot be watched: %s", server.path, error)
                continue
            self._announce(watch, f"Local server {config.name} found ({config.url})")
            if self._started:
                self._on_clock(watch)

    # -- kernels ----------------------------------------------------------------------------

    async def start_kernel(
        self,
        server_id: str,
        kernel_name: str | None,
        path: str | None,
        env: dict[str, str] | None,
    ) -> str:
        """Start a kernel on the server: ``KernelStarts.start_kernel`` (kernel_starts.py)."""
        watch = self.watch(server_id)
        return await self._starts.start_kernel(watch, kernel_name, path, env)

    async def kernel_specs(self, server_id: str) -> dict[str, dict[str, Any]]:
        """The server's kernel specs: name -> display_name, language, default."""
        return await self._starts.kernel_specs(self.watch(server_id))

    # -- plumbing ---------------------------------------------------------------------------

    def _new_watch(self, config: ServerConfig, token: str | None, client: Any = None) -> Any:
        from .watch import ServerWatch

        settings = self._registry.settings
        return ServerWatch(
            config,
            token,
            timeout=settings.server_timeout,
            on_poll=self._on_poll,
            client=client,
        )

    def _on_clock(self, watch: ServerWatch) -> None:
        """Poll the server now, then at every cycle (inside the loop)."""
        watch.ask_soon = self.clock.soon
        self.clock.add(watch)

    def _add_watch(self, config: ServerConfig, token: str | None) -> ServerWatch:
        watch: ServerWatch = self._new_watch(config, token)
        self.watches[config.id] = watch
        return watch

    def _on_poll(self, watch: ServerWatch, snapshot: Snapshot | None) -> None:
        if self.watches.get(watch.id) is not watch:
            return  # removed while it polled
        before = watch.announced
        started = len(watch.config.started)
        now = self._registry.now()
        apply_snapshot(self._registry, self._backends, watch, snapshot, now)
        if snapshot is not None:
            forget_never_seen(watch, snapshot, now)
        if len(watch.config.started) != started and not watch.config.local:
            self._saves.save_soon(watch)  # a kernel kernelmon started there is gone: not followed
        if (watch.status, watch.error) != before:
            text = f"Server {watch.config.name}: {watch.status_text()}"
            log = logger.info if watch.status == ServerStatus.REACHABLE else logger.warning
            log("%s", text)
            self._announce(watch, text)

    def _announce(self, watch: ServerWatch, text: str = "") -> None:
        watch.announced = (watch.status, watch.error)
        server = self.describe(watch)
        self._registry.emit(ServerChanged("", server_id=watch.id, server=server, text=text))

    async def _drop(self, server_id: str, reason: str) -> None:
        watch = self._detach(server_id, reason)
        if watch is not None:
            await watch.close()

    def _detach(self, server_id: str, reason: str, release: bool = False) -> ServerWatch | None:
        """Stop watching a server now: its kernels leave the map (with ``release``, those with
        a process on this machine are handed back to discovery); closing its client is the
        caller's (``ServerWatch.close``)."""
        watch = self.watches.pop(server_id, None)
        if watch is None:
            return None
        self.clock.remove(watch)
        for entry in entries_of(self._registry, watch):
            if release and entry.record.pid is not None:
                # its process may outlive the server: discovery takes the kernel back
                entry.backend.release()
                entry.record.reason = reason
                self._registry.changed(entry.record, {"reason"}, None)
                continue
            entry.backend.close()
            self._registry.remove(entry, reason)
        logger.info("Server %s (%s): %s", watch.config.name, watch.config.url, reason)
        self._registry.emit(ServerRemoved("", server_id=server_id, reason=reason))
        return watch

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _local_id(server: FoundServer) -> str:
    digest = hashlib.sha1(server.path.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"local-{digest}"
