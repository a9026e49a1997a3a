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
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import KernelmonError
from ..records import KernelRecord

if TYPE_CHECKING:
    from ..machine.identity import Proof
    from ..protocol.activity import ActivityWatcher
    from ..protocol.channels import Probe


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
    #: Whether a shutdown that fails ends with a kill and the kernel leaving the map
    #: (kernelmon's own kernels); otherwise the kernel stays listed and watched and the
    #: error is raised (another application's kernel is never claimed gone when it is not).
    kill_if_shutdown_fails: bool = False
    #: kernelmon's own requests to the kernel (kernel_info probes), if it has such a channel
    probe: Probe | None = None
    #: what follows the kernel's activity from its IOPub stream, if kernelmon reads it
    watcher: ActivityWatcher | None = None
    #: whether a ``probe_state`` runs now
    probing: bool = False

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

    async def start(self, cwd: str, timeout: float) -> None:
        """Launch the kernel in ``cwd`` and wait until it answers (kernels kernelmon starts)."""
        raise KernelmonError(f"kernelmon cannot start kernel {self.record.id} itself.")

    async def adopt(
        self, connection_file: str, info: dict[str, Any], pid: int, group: bool, timeout: float
    ) -> bool:
        """Take over the kernel of an earlier run (kernels kernelmon starts); True if it
        answered within ``timeout``."""
        raise KernelmonError(f"kernelmon cannot adopt kernel {self.record.id}.")

    async def prove(self) -> Proof | None:
        """Prove, now, which process is the kernel before acting on it; None when there is
        nothing to prove (kernelmon launched it and holds its process)."""
        return None

    async def probe_state(self, timeout: float = 1.0) -> str | None:
        """Ask the kernel what it is doing now (for a kernel found in an unknown state);
        None when this backend has no such question."""
        return None

    def attach(self) -> None:  # noqa: B027 (optional hook)
        """(Re)connect kernelmon's watching of the kernel (after a shutdown that failed)."""

    def remove_log(self) -> None:  # noqa: B027 (optional hook)
        """Delete what kernelmon logged of the kernel's output (after it is gone)."""

    def confirm_idle_soon(self) -> None:  # noqa: B027 (optional hook)
        """Check soon that a kernel shown busy still is (kernelmon's own kernels only)."""

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release sockets and timers (after shutdown, or when the map forgets the kernel)."""
