"""Adopting the kernels of an earlier kernelmon run that crashed, was killed or left them."""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from typing import Any

from .errors import (
    KernelSpecNotFound,
)
from .events import (
    KernelAdded,
    KernelAdopted,
)
from .external import heartbeat
from .local import remove_connection_files
from .map_base import KERNEL_ID, Entry, MapBase
from .process import process_matches
from .records import ExecutionState, KernelRecord

logger = logging.getLogger(__name__)

#: How long restore() waits for an adopted kernel to answer before calling it unresponsive.
ADOPT_TIMEOUT = 5.0


def kernel_survives(connection_file: str, pid: int, started: object) -> bool:
    """Whether a recorded kernel's connection file and process (not a reused PID) remain."""
    return os.path.exists(connection_file) and process_matches(
        pid, connection_file, started if isinstance(started, int | float) else None
    )


class AdoptionMixin(MapBase):
    """``restore`` of ``KernelMap``."""

    async def restore(self) -> list[str]:
        """Adopt the kernels of earlier kernelmon runs that crashed or were killed.

        Kernels whose process still runs come back under their id, name and folder, watched
        again, and can be restarted, interrupted and shut down as before; one that runs but
        does not answer is listed as ``unresponsive`` (shut it down to kill it). Records of
        kernels that are gone are dropped and their connection files removed. Returns the
        adopted kernels' ids.
        """
        adopted: list[str] = []
        for path, kernels in self.state_file.others():
            for saved in kernels:
                try:
                    kid = await self._adopt(saved)
                except Exception:
                    logger.exception("Could not adopt kernel %r", saved.get("id"))
                    continue
                if kid is not None:
                    adopted.append(kid)
            self._save_state()
            with contextlib.suppress(OSError):
                path.unlink()
        if adopted:
            self._ensure_culler()
            self._ensure_state_check()
        return adopted

    async def _adopt(self, saved: dict[str, Any]) -> str | None:
        kid, name = saved.get("id"), saved.get("kernel_name")
        conn_file, pid = saved.get("connection_file"), saved.get("pid")
        if not (
            isinstance(kid, str)
            and KERNEL_ID.match(kid)
            and isinstance(name, str)
            and isinstance(conn_file, str)
            and isinstance(pid, int)
        ):
            logger.warning("Ignoring a malformed kernel record: %r", saved)
            return None
        if kid in self._kernels:
            return None
        started = saved.get("pid_started")
        if not kernel_survives(conn_file, pid, started):
            logger.info("Kernel %s of an earlier run is gone; cleaning up after it", kid)
            remove_connection_files(conn_file)
            return None
        try:
            spec = self._resolve_spec(name)
        except KernelSpecNotFound:
            logger.warning(
                "Kernel %s (pid %s) runs, but its kernel spec %r is gone; leaving it alone",
                kid,
                pid,
                name,
            )
            return None
        cwd = saved.get("cwd") if isinstance(saved.get("cwd"), str) else None
        record = KernelRecord(id=kid, name=name, display_name=spec.display_name, cwd=cwd)
        with contextlib.suppress(TypeError, ValueError):
            record.started = datetime.fromisoformat(str(saved["started"]).replace("Z", "+00:00"))
        if isinstance(saved.get("restarts"), int):
            record.restarts = saved["restarts"]
        backend = self._new_backend(record)
        entry = Entry(record, backend)
        self._kernels[kid] = entry
        self._emit(KernelAdded(kid, record.to_model()))
        timeout = min(self._settings.kernel_info_timeout, ADOPT_TIMEOUT)
        answered = await backend.adopt(saved, timeout)
        if answered:
            if record.execution_state == ExecutionState.STARTING:
                record.execution_state = ExecutionState.IDLE
        elif await heartbeat(backend.connection_info):
            # Its heartbeat thread echoes, its shell does not answer: it is running code
            # (the queued probe marks it idle once that code is done).
            answered = True
            record.execution_state = ExecutionState.BUSY
            record.reason = None
        else:
            record.execution_state = ExecutionState.UNRESPONSIVE
            record.reason = (
                f"it runs (pid {pid}) but did not answer within {timeout:g} s; "
                "shut it down to kill it"
            )
        self._changed(record, {"execution_state", "reason"}, None)
        logger.info("Adopted kernel %s (%s, pid %s) from an earlier run", kid, name, pid)
        self._emit(KernelAdopted(kid, answered=answered))
        return kid
