"""The map's part for Jupyter Servers and Enterprise Gateways (``KernelMap.add_server`` ...).

``Servers`` owns the servers kernelmon knows, each a ``ServerWatch`` (watch.py) by id, and the
file that keeps the servers the user added (``servers.json`` in the state folder: url, name,
headers, TLS verification, the culling opt-in, the kernels kernelmon started there; never a
token: tokens go to the keyring through ``TokenStore``). Local servers (a live
``jpserver-*.json``/``nbserver-*.json`` found by discovery) are added and removed by
``sync_local`` and never saved. Each poll is applied to the map by ``join.apply_snapshot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yarl import URL

from ..backends.factory import BackendFactory
from ..errors import KernelStartFailed, KernelStartTimeout
from ..events import KernelStarted, ServerChanged, ServerRemoved
from ..records import isoformat
from ..threads import run_in_thread
from .config import CULLS_UNKNOWN, ServerConfig, Snapshot
from .join import JoinRegistry, apply_snapshot, entries_of, set_culling
from .status import ServerError, ServerStatus, UnknownServer

if TYPE_CHECKING:
    from ..machine.discovery import FoundServer
    from .book import ServerBook
    from .watch import ServerWatch

logger = logging.getLogger(__name__)

#: How long a kernel kernelmon started on a server is followed by id while the server does
#: not have it (a start that got no answer: the launch may go on, on a cluster for minutes)
#: before kernelmon stops asking for it.
START_GRACE = timedelta(minutes=10)


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
        self._writing = asyncio.Lock()
        #: server id -> why its last change is not in the servers file (a failed save)
        self._unsaved: dict[str, str] = {}

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
            "error": watch.error or self._unsaved.get(config.id),
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
        """Load the servers the user added and start every poller (inside the loop)."""
        if self._started:
            return
        self._started = True
        for config in await self.book.load():
            if config.id in self.watches:
                continue
            token = await self.book.token(config.id)
            self._add_watch(config, token)
        for problem in self.book.problems:
            logger.warning("%s", problem)
        for watch in self.watches.values():
            watch.start()

    async def stop(self) -> None:
        """Stop every poller; the servers' kernels leave the map (and keep running)."""
        self._started = False
        for server_id in list(self.watches):
            await self._drop(server_id, "kernelmon stopped watching its server")
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the first poll of every local server: until
        then its kernels are rows of other applications' kernels, which a shutdown would
        signal (and the server's restarter undo)."""
        waits = [w.polled.wait() for w in self.watches.values() if w.config.local]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout)

    def settings_changed(self) -> None:
        """A new ``server_timeout`` holds for the next request to every server (the poll
        interval is read before each wait)."""
        for watch in self.watches.values():
            watch.client.timeout = self._registry.settings.server_timeout

    async def poll_all(self) -> None:
        """One poll of every server now (each applies itself to the map)."""
        await asyncio.gather(*(w.poll_once() for w in list(self.watches.values())))

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
            await self._save()
        except BaseException:
            self.watches.pop(server_id, None)
            await client.close()
            if kept:  # nothing is kept of a server that could not be added
                await self.book.forget_token(server_id)
            raise
        watch = self.watches[server_id]
        watch.version = info.gateway_version or info.version
        watch.set_status(client.status, client.error)  # what the check found
        self._announce(watch, f"Server {config.name} added ({config.url})")
        watch.start()
        return server_id

    async def remove(self, server_id: str) -> None:
        """Forget a server: its kernels leave the map (they keep running on the server)."""
        watch = self.watch(server_id)
        if watch.config.local and watch.config.runtime_file:
            self._dismissed.add(watch.config.runtime_file)
        await self._drop(server_id, "its server was removed from kernelmon")
        if not watch.config.local:
            await self._saved(what=f"the server {watch.config.name} comes back at the next launch")
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
        if await self._saved(watch, what):
            return
        if watch.config.kernelmon_culling is allowed:
            watch.config.kernelmon_culling = not allowed
            set_culling(self._registry, watch)
            self._announce(watch, self._unsaved.get(watch.id, ""))

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
                watch.start()

    # -- kernels ----------------------------------------------------------------------------

    async def start_kernel(
        self,
        server_id: str,
        kernel_name: str | None,
        path: str | None,
        env: dict[str, str] | None,
    ) -> str:
        """Start a kernel on the server (``POST /api/kernels``); its id once the server
        answered. ``KernelStartFailed`` with the server's sentence on failure
        (``KernelStartTimeout`` when it did not answer within ``kernel_info_timeout``).

        The POST waits for the launch (an Enterprise Gateway answers once its kernel runs,
        which on a cluster takes its launch timeout): it may take ``kernel_info_timeout``,
        as a restart does. On a gateway kernelmon chooses the kernel's id
        (``env["KERNEL_ID"]``, which the gateway uses) and keeps it among the kernels it
        started, in the servers file, before sending: a start that times out, or that
        kernelmon is killed in, is still followed by id (the kernel shows when the gateway
        has it), and nothing sends the same start again."""
        watch = self.watch(server_id)
        settings = self._registry.settings
        name = kernel_name
        chosen: str | None = None
        followed = False  # the id given was followed already (a kernel started before)
        try:
            if watch.client.kind is None:
                await watch.client.identify()
            if name is None:
                if watch.specs is None:
                    specs = await watch.client.kernelspecs()
                    watch.specs = {s.name: s for s in specs.specs.items}
                    watch.default_spec = specs.default
                name = watch.default_spec or "python3"
            self._still_watched(watch, "before the kernel was started")
            if watch.kind == "enterprise_gateway":
                env = dict(env or {})
                chosen = env.get("KERNEL_ID") or str(uuid.uuid4())
                env["KERNEL_ID"] = chosen
                followed = chosen in watch.config.started
                if not followed:
                    await self._keep_started(watch, chosen)
            timeout = settings.kernel_info_timeout
            if chosen is not None:
                watch.starting.add(chosen)
            try:
                kernel = await watch.client.start_kernel(name, path, env, timeout=timeout)
            finally:
                watch.starting.discard(chosen or "")
        except ServerError as error:
            self._still_watched(watch, "while the kernel started")
            if chosen is not None and not followed:
                self._start_failed(watch, chosen, error)
            raise KernelStartFailed(error.sentence) from None
        self._still_watched(watch, f"after it started kernel {kernel.id} there")
        if kernel.id not in watch.config.started:
            if chosen in watch.config.started and not followed:
                watch.config.started.remove(chosen)  # the gateway took another id
            watch.config.started.append(kernel.id)
            await self._keep_or_log(watch)
            self._still_watched(watch, f"after it started kernel {kernel.id} there")
        watch.born[kernel.id] = watch.polls
        apply_snapshot(
            self._registry,
            self._backends,
            watch,
            Snapshot({kernel.id: kernel}, {}, complete=False, number=watch.polls),
            self._registry.now(),
            others=False,
        )
        self._registry.emit(KernelStarted(kernel.id))
        watch.poll_soon()
        return kernel.id

    def _still_watched(self, watch: ServerWatch, when: str) -> None:
        """``KernelStartFailed`` when the server was removed (or stopped) while a start on
        it waited: nothing of it may be added to the map then."""
        if self.watches.get(watch.id) is not watch:
            runs = {
                "after": "; the kernel runs on there, unwatched.",
                "while": "; if the server started it, it runs on there, unwatched.",
            }
            raise KernelStartFailed(
                f"The server {watch.config.name} was removed from kernelmon {when}"
                + runs.get(when.split()[0], ".")
            )

    async def _keep_started(self, watch: ServerWatch, kernel_id: str) -> None:
        """Keep a kernel id kernelmon is about to start among the server's, in the servers
        file too: ``KernelStartFailed`` (nothing sent) when the file cannot be written."""
        watch.config.started.append(kernel_id)
        if watch.config.local:
            return
        try:
            await self._save()
        except OSError as error:
            watch.config.started.remove(kernel_id)
            raise KernelStartFailed(
                f"No kernel was started on {watch.config.name}: the id chosen for it could "
                f"not be kept in the servers file ({error}), and a kernel kernelmon cannot "
                "find again after a restart would be left running there."
            ) from None

    def _start_failed(self, watch: ServerWatch, kernel_id: str, error: ServerError) -> None:
        """A gateway's start failed: when the gateway answered (a refusal, an error), no
        kernel of that id runs and it is no longer followed; when it did not answer (no
        answer in time, a dropped connection, an unreadable answer) the launch may go on,
        so the id stays followed and the error says so."""
        answered = error.http_status is not None and error.http_status >= 400
        if answered:
            if kernel_id in watch.config.started:
                watch.config.started.remove(kernel_id)
                if not watch.config.local:
                    self._save_soon(watch)
            return
        sentence = (
            f"{error.sentence} The gateway may still be launching the kernel: kernelmon "
            f"follows it by the id it chose for it ({kernel_id}) and shows it once the "
            "gateway has it; starting again would start another kernel."
        )
        if error.kind == ServerStatus.TIMEOUT:
            raise KernelStartTimeout(sentence) from None
        raise KernelStartFailed(sentence) from None

    async def kernel_specs(self, server_id: str) -> dict[str, dict[str, Any]]:
        """The server's kernel specs: name -> display_name, language, default."""
        watch = self.watch(server_id)
        specs = await watch.client.kernelspecs()
        watch.specs = {s.name: s for s in specs.specs.items}
        watch.default_spec = specs.default
        return {
            s.name: {
                "name": s.name,
                "display_name": s.display_name,
                "language": s.language or "",
                "default": s.name == specs.default,
            }
            for s in specs.specs.items
        }

    # -- plumbing ---------------------------------------------------------------------------

    def _new_watch(self, config: ServerConfig, token: str | None, client: Any = None) -> Any:
        from .watch import ServerWatch

        settings = self._registry.settings
        return ServerWatch(
            config,
            token,
            interval=lambda: self._registry.settings.server_poll_interval,
            timeout=settings.server_timeout,
            on_poll=self._on_poll,
            client=client,
        )

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
            self._forget_never_seen(watch, snapshot, now)
        if len(watch.config.started) != started and not watch.config.local:
            self._save_soon(watch)  # a kernel kernelmon started there is gone: not followed
        if (watch.status, watch.error) != before:
            text = f"Server {watch.config.name}: {watch.status_text()}"
            log = logger.info if watch.status == ServerStatus.REACHABLE else logger.warning
            log("%s", text)
            self._announce(watch, text)

    def _forget_never_seen(self, watch: ServerWatch, snapshot: Snapshot, now: datetime) -> None:
        """Kernels kernelmon started there that the server has never had since (a start
        that got no answer and whose launch failed) are followed for ``START_GRACE``, then
        no longer asked for."""
        unseen = watch.unseen_since
        for kid in list(watch.config.started):
            if kid in snapshot.kernels or kid in watch.rows or kid in watch.starting:
                unseen.pop(kid, None)
                continue
            if not (snapshot.complete or kid in snapshot.missing):
                continue  # not asked by this poll
            since = unseen.setdefault(kid, now)
            if now - since >= START_GRACE:
                del unseen[kid]
                watch.config.started.remove(kid)
                logger.warning(
                    "Kernel %s, started by kernelmon on %s, was never seen there since its "
                    "start got no answer; it is no longer followed",
                    kid,
                    watch.config.name,
                )

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

    async def _save(self) -> None:
        """Write the servers file (``OSError`` when it cannot be written). One write at a
        time, each of the servers as they are when its turn comes: a slow write never
        lands after a later one."""
        async with self._writing:
            configs = [w.config.saved() for w in self.watches.values() if not w.config.local]
            await run_in_thread(self.book.save, configs)
            self._unsaved.clear()

    async def _saved(self, watch: ServerWatch | None = None, what: str = "") -> bool:
        """Write the servers file; never raises: a failure is logged, kept in the book's
        ``problems`` and shown as ``watch``'s error in ``list_servers`` (``what`` says
        what was not kept) until a save succeeds."""
        try:
            await self._save()
        except Exception as error:  # a full disk, a read-only folder: said, never raised
            sentence = f"The servers file {self.book.path} could not be written ({error})"
            if what:
                sentence += f": {what}"
            logger.error("%s", sentence)
            self.book.problems.append(sentence)
            if watch is not None and self.watches.get(watch.id) is watch:
                self._unsaved[watch.id] = sentence
                self._announce(watch, sentence)
            return False
        return True

    async def _keep_or_log(self, watch: ServerWatch) -> None:
        if not watch.config.local:
            await self._saved(watch, "a kernel started there is followed only while kernelmon runs")

    def _save_soon(self, watch: ServerWatch | None = None, what: str = "") -> None:
        self._background(self._saved(watch, what))

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _local_id(server: FoundServer) -> str:
    digest = hashlib.sha1(server.path.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"local-{digest}"
