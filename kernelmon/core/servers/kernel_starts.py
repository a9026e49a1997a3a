"""Kernels kernelmon starts on a server (``KernelMap.start_kernel(server_id=...)``), the
server's kernel specs, and following the ids of the kernels it started there.

A start is a ``POST /api/kernels``; on an Enterprise Gateway kernelmon chooses the kernel's id
and keeps it among the server's ``started`` ids, in the servers file too, before it sends, so
that a start that got no answer, or that kernelmon was killed in, is still followed by id and
never sent again. An id the server has not had for ``START_GRACE`` is no longer asked for
(``forget_never_seen``, after each poll). The map's ``Servers`` part (part.py) owns the
servers and hands each start its ``ServerWatch``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..backends.factory import BackendFactory
from ..errors import KernelStartFailed, KernelStartTimeout
from ..events import KernelStarted
from .config import Snapshot
from .join import JoinRegistry, apply_snapshot
from .status import ServerError, ServerStatus

if TYPE_CHECKING:
    from .saving import ServerSaves
    from .watch import ServerWatch

logger = logging.getLogger(__name__)

#: How long a kernel kernelmon started on a server is followed by id while the server does
#: not have it (a start that got no answer: the launch may go on, on a cluster for minutes)
#: before kernelmon stops asking for it.
START_GRACE = timedelta(minutes=10)


class KernelStarts:
    """Starting kernels on a server and reading its kernel specs (see the module).

    ``watches``: the servers kernelmon watches, by id (a start on a server removed from it
    meanwhile adds nothing to the map); ``saves``: the servers file's writes."""

    def __init__(
        self,
        registry: JoinRegistry,
        backends: BackendFactory,
        watches: Mapping[str, ServerWatch],
        saves: ServerSaves,
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._watches = watches
        self._saves = saves

    async def start_kernel(
        self,
        watch: ServerWatch,
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
        settings = self._registry.settings
        name = kernel_name
        chosen: str | None = None
        followed = False  # the id given was followed already (a kernel started before)
        try:
            if watch.client.kind is None:
                await watch.client.identify()
            if name is None:
                if watch.specs is None:
                    await watch.load_specs()
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
            await self._saves.keep_or_log(watch)
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
        if self._watches.get(watch.id) is not watch:
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
            await self._saves.save()
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
                    self._saves.save_soon(watch)
            return
        sentence = (
            f"{error.sentence} The gateway may still be launching the kernel: kernelmon "
            f"follows it by the id it chose for it ({kernel_id}) and shows it once the "
            "gateway has it; starting again would start another kernel."
        )
        if error.kind == ServerStatus.TIMEOUT:
            raise KernelStartTimeout(sentence) from None
        raise KernelStartFailed(sentence) from None

    async def kernel_specs(self, watch: ServerWatch) -> dict[str, dict[str, Any]]:
        """The server's kernel specs: name -> display_name, language, default."""
        specs = await watch.load_specs()
        return {
            s.name: {
                "name": s.name,
                "display_name": s.display_name,
                "language": s.language or "",
                "default": s.name == specs.default,
            }
            for s in specs.specs.items
        }


def forget_never_seen(watch: ServerWatch, snapshot: Snapshot, now: datetime) -> None:
    """Kernels kernelmon started there that the server has never had since (a start that got
    no answer and whose launch failed) are followed for ``START_GRACE``, then no longer asked
    for."""
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
