"""How the core acts on a kernel, whatever runs it.

The ``KernelMap`` holds one ``KernelBackend`` per kernel next to its ``KernelRecord``. Each
kind of kernel has a backend of its own (``local.LocalKernel`` for kernels kernelmon starts
or adopts, ``external.ExternalKernel`` for other applications' kernels, ``StaleKernel`` for a
connection file left behind, ``UnadoptedKernel`` for an earlier run's kernel that could not be
adopted; later remote servers). A backend **owns its capabilities**: the map, the culler and
the UI never ask what type a backend is, they ask it (``refusal``, ``persisted_state``,
``confirm_idle_soon``, ...). Only the backend factory names the classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..records import KernelRecord

#: How a backend reports a change of its record: (record, fields changed, activity time).
OnChange = Callable[[KernelRecord, set[str], datetime | None], None]


class Action(StrEnum):
    """What a user (or the culler) can ask of a kernel."""

    INTERRUPT = "interrupt"
    RESTART = "restart"
    SHUTDOWN = "shutdown"
    #: attach a frontend (kernelmon's console) to the kernel's channels
    CONNECT = "connect"


class KernelBackend(ABC):
    """Actions on one kernel. Each method raises a ``KernelmonError`` with a clear message."""

    #: Whether ``restart`` may be offered (not for kernels another application owns).
    can_restart: bool = True

    def __init__(self, record: KernelRecord) -> None:
        self.record = record
        record.can_restart = self.can_restart  # what the table offers follows the backend
        record.refusals_of = self.refusals  # the model's "refusals" ask the backend

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

    # -- capabilities: what the map, the culler and the UI ask instead of the type ----------

    def refusal(self, action: Action) -> str | None:
        """None when ``action`` can be tried on this kernel now; otherwise the sentence that
        says why not, written for the user (the map raises it in the matching
        ``KernelmonError``; the UI shows it as is, from the model's ``refusals``).

        This default decides from the record (who owns the kernel, its state); backends
        override it with what they know better."""
        record = self.record
        origin = str(record.origin)
        state = str(record.execution_state)
        if origin == "stale":
            if action == Action.SHUTDOWN:
                return None  # shutting a stale kernel down cleans its file up
            return "This kernel has no process, only a connection file: clean it up instead"
        if action == Action.RESTART:
            if origin == "external":
                owner = record.parent_app or "another application"
                if record.parent_pid is not None:
                    owner += f" (pid {record.parent_pid})"
                return (
                    f"kernelmon did not start this kernel: {owner} owns it and alone can "
                    "start it again. Restart it from there"
                )
            if origin == "orphan":
                return (
                    "kernelmon did not start this kernel, and the application that started "
                    "it is gone: nobody can start it again. Shut it down instead"
                )
            if not self.can_restart:
                return "This kernel cannot be restarted now"
            return None
        if action == Action.INTERRUPT:
            if not record.can_interrupt:
                why = record.identity_problem or record.reason
                return "kernelmon cannot interrupt this kernel" + (f": {why}" if why else "")
            if state == "dead":
                return "This kernel is dead: there is nothing to interrupt"
            if state in ("starting", "restarting"):
                return f"This kernel is {state}: there is nothing to interrupt yet"
            return None
        if action == Action.CONNECT and state == "dead":
            return "This kernel is dead: shut it down or restart it first"
        return None

    def refusals(self) -> dict[str, str]:
        """``{action: sentence}`` for every action refused now (the kernel model's
        ``refusals``)."""
        return {a.value: why for a in Action if (why := self.refusal(a)) is not None}

    def persisted_state(self) -> dict[str, Any] | None:
        """What the crash-safe state file keeps for this kernel (None: nothing, it is not
        kernelmon's to keep)."""
        return None

    def confirm_idle_soon(self) -> None:  # noqa: B027 (optional hook)
        """Check soon that a kernel shown busy still is (kernelmon's own kernels only)."""

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release sockets and timers (after shutdown, or when the map forgets the kernel)."""
