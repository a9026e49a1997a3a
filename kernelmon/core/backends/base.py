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
from typing import TYPE_CHECKING, Any

from ..errors import ActionRefused, KernelDead, KernelmonError, NotRestartable
from ..records import ExecutionState, KernelRecord

if TYPE_CHECKING:
    from ..machine.identity import Proof
    from ..protocol.activity import ActivityWatcher
    from ..protocol.channels import Probe

#: How a backend reports a change of its record: (record, fields changed, activity time).
OnChange = Callable[[KernelRecord, set[str], datetime | None], None]


class Action(StrEnum):
    """What a user (or the culler) can ask of a kernel."""

    INTERRUPT = "interrupt"
    RESTART = "restart"
    SHUTDOWN = "shutdown"
    #: attach a frontend (kernelmon's console) to the kernel's channels
    CONNECT = "connect"


def foreign_restart_refusal(record: KernelRecord) -> str:
    """Why kernelmon cannot restart a kernel another application started."""
    if str(record.origin) == "orphan":
        return (
            "kernelmon did not start this kernel, and the application that started it is "
            "gone: nobody can start it again. Shut it down instead"
        )
    owner = record.parent_app or "another application"
    if record.parent_pid is not None:
        owner += f" (pid {record.parent_pid})"
    return (
        f"kernelmon did not start this kernel: {owner} owns it and alone can start it "
        "again. Restart it from there"
    )


def state_refusal(record: KernelRecord, action: Action) -> str | None:
    """What the kernel's state alone refuses: nothing to interrupt while it is dead,
    starting or restarting; no frontend for a dead kernel."""
    state = str(record.execution_state)
    if action == Action.INTERRUPT:
        if state == "dead":
            return "This kernel is dead: there is nothing to interrupt"
        if state in ("starting", "restarting"):
            return f"This kernel is {state}: there is nothing to interrupt yet"
    if action == Action.CONNECT and state == "dead":
        return "This kernel is dead: shut it down or restart it first"
    return None


class KernelBackend(ABC):
    """Actions on one kernel. Each method raises a ``KernelmonError`` with a clear message;
    an action the backend refuses raises its ``refusal`` sentence (``refuse``)."""

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
        says why not, written for the user: the map and the backend raise it (``refuse``),
        the UI shows it as is, from the model's ``refusals``. Cheap: no I/O, no proof.

        This default is what the kind of kernel refuses (``standing_refusal``), then what
        its state refuses; backends override either with what they know better."""
        standing = self.standing_refusal(action)
        return standing if standing is not None else state_refusal(self.record, action)

    def standing_refusal(self, action: Action) -> str | None:
        """What this kind of kernel refuses whatever its state (the record's
        ``can_restart``/``can_interrupt`` follow it). This default decides from the
        record's origin; backends override it."""
        record = self.record
        origin = str(record.origin)
        if origin == "stale":
            if action == Action.SHUTDOWN:
                return None  # shutting a stale kernel down cleans its file up
            return "This kernel has no process, only a connection file: clean it up instead"
        if action == Action.RESTART and origin in ("external", "orphan"):
            return foreign_restart_refusal(record)
        return None

    def refuse(self, action: Action) -> None:
        """Raise the ``refusal`` of ``action``, if it is refused now: ``NotRestartable`` for
        a restart, ``KernelDead`` when the kernel is dead, else ``ActionRefused``."""
        why = self.refusal(action)
        if why is None:
            return
        if action == Action.RESTART:
            raise NotRestartable(why)
        if self.record.execution_state == ExecutionState.DEAD:
            raise KernelDead(why)
        raise ActionRefused(why)

    def refusals(self) -> dict[str, str]:
        """``{action: sentence}`` for every action refused now (the kernel model's
        ``refusals``)."""
        return {a.value: why for a in Action if (why := self.refusal(a)) is not None}

    def note_flags(self) -> None:
        """The record's ``can_restart``/``can_interrupt`` (the model has them: whether
        this kind of kernel can ever be restarted, interrupted) follow
        ``standing_refusal``; each backend notes them at the end of its ``__init__``."""
        self.record.can_restart = self.standing_refusal(Action.RESTART) is None
        self.record.can_interrupt = self.standing_refusal(Action.INTERRUPT) is None

    @property
    def can_restart(self) -> bool:
        """Whether a restart can be tried now (``refusal``)."""
        return self.refusal(Action.RESTART) is None

    @property
    def can_interrupt(self) -> bool:
        """Whether an interrupt can be tried now (``refusal``)."""
        return self.refusal(Action.INTERRUPT) is None

    def server_id(self) -> str | None:
        """The id of the Jupyter server whose REST API acts on this kernel (None: kernelmon
        acts on it itself); discovery then only adds the facts of its process."""
        return None

    def release(self) -> None:  # noqa: B027 (optional hook)
        """The server whose API acted on this kernel stopped (``server_id`` is None from
        now on): the kernel is this machine's to look at again."""

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
