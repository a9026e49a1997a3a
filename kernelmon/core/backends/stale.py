"""A connection file left behind with no kernel process: a ``KernelBackend`` that can only
clean it up (as far as ``identity``'s deletion rule allows)."""

from __future__ import annotations

import logging
from typing import Any

from ..machine.kernel_files import remove_kernel_files
from ..records import ExecutionState, KernelRecord
from ..threads import run_in_thread
from .base import Action, KernelBackend
from .external import ExternalKernelError

logger = logging.getLogger(__name__)


class StaleKernel(KernelBackend):
    """A connection file with no kernel process: it can only be cleaned up.

    ``shutdown`` removes the file (and an IPC kernel's socket files), after checking that
    still no process names it.
    """

    def __init__(self, record: KernelRecord, connection_file: str) -> None:
        super().__init__(record)
        self.connection_file = connection_file
        record.execution_state = ExecutionState.DEAD
        record.reason = "no process runs it; only its connection file is left"
        self.note_flags()

    @property
    def connection_info(self) -> dict[str, Any]:
        return {}

    def standing_refusal(self, action: Action) -> str | None:
        if action == Action.SHUTDOWN:
            return None  # shutting a stale kernel down cleans its file up
        return "This kernel has no process, only a connection file: clean it up instead"

    async def interrupt(self) -> None:
        self.refuse(Action.INTERRUPT)

    async def restart(self, timeout: float) -> None:
        self.refuse(Action.RESTART)

    async def shutdown(self, now: bool = False) -> None:
        """Delete the connection file and its IPC socket files, only as far as
        ``kernel_files.kernel_files`` allows (``ExternalKernelError`` saying why the file stays)."""
        path = self.connection_file
        files = await run_in_thread(remove_kernel_files, path)
        if files.reason is not None:
            raise ExternalKernelError(f"kernelmon leaves {path} in place: {files.reason}.")
        for kept, why in files.kept:
            logger.info("Kept %s: %s", kept, why)
        logger.info("Removed the stale connection file %s", path)

    async def is_alive(self) -> bool:
        return False
