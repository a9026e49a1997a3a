"""The culler: the periodic pass that shuts idle kernels down (the rules are culler.py's
pure ``cull_reason``).

The ``Culler`` owns its task and ``next_cull``. It starts itself in one place, ``_start``:
when a kernel joins the map (a ``KernelAdded`` event, inside the running loop) and when the
culling settings change; it stops when culling is turned off or the map closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Protocol

from .culler import cull_reason
from .errors import KernelNotFound
from .events import ActionFailed, KernelAdded, KernelCulled, KernelEvent, Subscriber
from .records import KernelRecord
from .registry import Announcing, Entry
from .settings import Settings

logger = logging.getLogger(__name__)

#: The facts a cull is decided on (a backend's ``prove`` may learn them afresh).
_JUDGED = ("execution_state", "last_activity", "connections", "reason")


class CullerRegistry(Announcing, Protocol):
    """What the culler reads of the registry."""

    def __iter__(self) -> Iterator[Entry]: ...
    def __contains__(self, kernel_id: object) -> bool: ...
    def subscribe(self, callback: Subscriber) -> Callable[[], None]: ...
    def changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None: ...


class Culler:
    """The periodic cull pass (see the module); ``shutdown(kernel_id)`` stops a kernel."""

    def __init__(
        self, registry: CullerRegistry, shutdown: Callable[[str], Awaitable[None]]
    ) -> None:
        self._registry = registry
        self._shutdown = shutdown
        self._task: asyncio.Task[None] | None = None
        #: When the next pass runs, or None while culling is off.
        self.next_cull: datetime | None = None
        registry.subscribe(self._on_event)

    @property
    def running(self) -> bool:
        """Whether the periodic cull pass is running."""
        return self._task is not None

    def _on_event(self, event: KernelEvent) -> None:
        if isinstance(event, KernelAdded):
            self._start()

    def _start(self) -> None:
        """Start the periodic pass if culling is on and it does not run (the one place)."""
        settings = self._registry.settings
        if settings.cull_idle_timeout <= 0 or self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside a loop yet: the first kernel added starts it
        self._task = loop.create_task(self._cull_periodically(settings.cull_interval))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.next_cull = None

    def settings_changed(self, old: Settings) -> None:
        """Apply new settings: a new timeout or interval takes effect at once."""
        new = self._registry.settings
        changed = (old.cull_idle_timeout, old.cull_interval) != (
            new.cull_idle_timeout,
            new.cull_interval,
        )
        if changed or self._task is None:
            self.stop()
            self._start()

    async def _cull_periodically(self, interval: float) -> None:
        logger.info(
            "Culling kernels idle for more than %g s, every %g s",
            self._registry.settings.cull_idle_timeout,
            interval,
        )
        loop = asyncio.get_running_loop()
        passes: set[asyncio.Task[dict[str, str]]] = set()
        due = loop.time() + interval
        try:
            while True:
                wait = max(0.0, due - loop.time())
                self.next_cull = self._registry.now() + timedelta(seconds=wait)
                await asyncio.sleep(wait)
                # A fixed cadence: a pass busy shutting kernels down never delays the next.
                due = max(due + interval, loop.time())
                task = loop.create_task(self.cull_kernels())
                passes.add(task)
                task.add_done_callback(self._pass_done(passes))
        finally:
            for task in passes:
                task.cancel()

    @staticmethod
    def _pass_done(
        passes: set[asyncio.Task[dict[str, str]]],
    ) -> Callable[[asyncio.Task[dict[str, str]]], None]:
        def done(task: asyncio.Task[dict[str, str]]) -> None:
            passes.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("A cull pass failed: %s", task.exception())

        return done

    async def cull_kernels(self) -> dict[str, str]:
        """One cull pass: shut down every kernel the rules say to, concurrently.

        Returns the culled kernels' ids with the reasons. Unverifiable kernels (whose process
        kernelmon cannot prove to be the kernel) are never culled. One kernel's failure never
        stops the pass (it is logged and reported as ``ActionFailed``).
        """
        now = self._registry.now()
        settings = self._registry.settings
        victims = {
            entry.record.id: reason
            for entry in self._registry
            if entry.shutdown_task is None
            # a kernel whose process is not proven is never acted on (docs/identity.md)
            and entry.record.identity_problem is None
            and (reason := cull_reason(entry.record, settings, now)) is not None
        }
        if not victims:
            return {}
        entries = {e.record.id: e for e in self._registry}
        results = await asyncio.gather(
            *(self._cull_one(entries[kid], reason) for kid, reason in victims.items()),
            return_exceptions=True,
        )
        return {kid: victims[kid] for kid, ok in zip(victims, results, strict=True) if ok is True}

    async def _cull_one(self, entry: Entry, reason: str) -> bool:
        record = entry.record
        kernel_id = record.id
        # another application's kernel: proven at this moment, or left alone; a server's
        # kernel: the server asked again now (its answer applied to the record)
        before = {name: getattr(record, name) for name in _JUDGED}
        proof = await entry.backend.prove()
        fresh = {name for name, value in before.items() if getattr(record, name) != value}
        if fresh:
            self._registry.changed(record, fresh, None)
        if proof is not None and not proof.ok:
            logger.warning("Not culling kernel %s: %s", kernel_id, proof.reason)
            return False
        # judged again on what was just learnt: a kernel busy or active since is spared
        reason_now = cull_reason(record, self._registry.settings, self._registry.now())
        if reason_now is None or entry.shutdown_task is not None:
            logger.info(
                "Not culling kernel %s: a fresh look shows it is no longer due (%s)",
                kernel_id,
                record.execution_state,
            )
            return False
        reason = reason_now
        logger.warning("Culling kernel %s: %s", kernel_id, reason)
        try:
            await self._shutdown(kernel_id)
        except KernelNotFound:
            return False
        except Exception as e:
            logger.exception("Culling kernel %s failed", kernel_id)
            self._registry.emit(ActionFailed(kernel_id, action="cull", message=str(e)))
            return False
        self._registry.emit(KernelCulled(kernel_id, reason=reason))
        return True
