"""How the core acts on a kernel, whatever runs it.

The ``KernelMap`` holds one ``KernelBackend`` per kernel next to its ``KernelRecord``. A
backend for kernels kernelmon starts itself (``local.LocalKernel``) is the only one today;
kernels found in the runtime folder or living on a remote server get backends of their own
with the same methods, and the map, the culler and the table stay as they are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..records import KernelRecord


class KernelBackend(ABC):
    """Actions on one kernel. Each method raises a ``KernelmonError`` with a clear message."""

    #: Whether ``restart`` may be offered (not for kernels another application owns).
    can_restart: bool = True

    def __init__(self, record: KernelRecord) -> None:
        self.record = record
        record.can_restart = self.can_restart  # what the table offers follows the backend

    @property
    @abstractmethod
    def connection_info(self) -> dict[str, Any]:
        """Connection info (transport, ip, ports, key, signature_scheme) of the kernel."""

    @abstractmethod
    async def interrupt(self) -> None: ...

    @abstractmethod
    async def restart(self, timeout: float) -> None:
        """Restart and wait for a ``kernel_info_reply`` (``RestartTimeout``/``RestartFailed``)."""

    @abstractmethod
    async def shutdown(self, now: bool = False) -> None:
        """Stop the kernel; afterwards no process of it remains."""

    @abstractmethod
    async def is_alive(self) -> bool: ...

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release sockets and timers (after shutdown, or when the map forgets the kernel)."""
