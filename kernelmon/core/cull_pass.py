"""The periodic cull pass of the kernel map (the decisions are in culler.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from .culler import cull_reason
from .errors import (
    KernelNotFound,
)
from .events import (
    ActionFailed,
    KernelCulled,
)
from .map_base import MapBase
from .records import utcnow

logger = logging.getLogger(__name__)


class CullingMixin(MapBase):
    """The cull pass and its periodic task of ``KernelMap``."""

    def _ensure_culler(self) -> None:
        if self._settings.cull_idle_timeout <= 0 or self._culler_task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside a loop yet: the first start_kernel starts it
        self._culler_task = loop.create_task(self._cull_periodically(self._settings.cull_interval))

    def _stop_culler(self) -> None:
        if self._culler_task is not None:
            self._culler_task.cancel()
            self._culler_task = None
        self.next_cull = None

    @property
    def culling(self) -> bool:
        """Whether the periodic cull pass is running."""
        return self._culler_task is not None

    async def _cull_periodically(self, interval: float) -> None:
        logger.info(
            "Culling kernels idle for more than %g s, every %g s",
            self._settings.cull_idle_timeout,
            interval,
        )
        loop = asyncio.get_running_loop()
        passes: set[asyncio.Task[dict[str, str]]] = set()
        due = loop.time() + interval
        try:
            while True:
                wait = max(0.0, due - loop.time())
                self.next_cull = utcnow() + timedelta(seconds=wait)
                await asyncio.sleep(wait)
                # A fixed cadence: a pass busy shutting kernels down never delays the next.
                due = max(due + interval, loop.time())
                task = loop.create_task(self.cull_kernels())
                passes.add(task)
                task.add_done_callback(self._cull_pass_done(passes))
        finally:
            for task in passes:
                task.cancel()

    @staticmethod
    def _cull_pass_done(
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
        now = self._clock()
        victims = {
            kid: reason
            for kid, entry in list(self._kernels.items())
            if entry.shutdown_task is None
            # a kernel whose process is not proven is never acted on (docs/identity.md)
            and entry.record.identity_problem is None
            and (reason := cull_reason(entry.record, self._settings, now)) is not None
        }
        if not victims:
            return {}
        results = await asyncio.gather(
            *(self._cull_one(kid, reason) for kid, reason in victims.items()),
            return_exceptions=True,
        )
        return {kid: victims[kid] for kid, ok in zip(victims, results, strict=True) if ok is True}

    async def _cull_one(self, kernel_id: str, reason: str) -> bool:
        entry = self._kernels.get(kernel_id)
        prove = getattr(entry.backend, "prove", None) if entry is not None else None
        if prove is not None:  # another application's kernel: proven at this moment, or left
            proof = await prove()
            if not proof.ok:
                logger.warning("Not culling kernel %s: %s", kernel_id, proof.reason)
                return False
        logger.warning("Culling kernel %s: %s", kernel_id, reason)
        try:
            await self.shutdown_kernel(kernel_id)
        except KernelNotFound:
            return False
        except Exception as e:
            logger.exception("Culling kernel %s failed", kernel_id)
            self._emit(ActionFailed(kernel_id, action="cull", message=str(e)))
            return False
        self._emit(KernelCulled(kernel_id, reason=reason))
        return True
