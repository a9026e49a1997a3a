"""Kernels another application started: a read-mostly ``KernelBackend`` from a connection file.

kernelmon watches such a kernel's IOPub like its own (``ActivityWatcher``) but sends it
nothing on its own initiative: no ``kernel_info_request`` probes, whose status messages would
count as activity for the application that owns the kernel (and keep its culler from
culling). So the state stays ``unknown`` until the kernel publishes a status. Liveness comes
from the process (a pidfd where the platform has one) or, without a known process, from the
heartbeat channel.

Users may still interrupt the kernel (SIGINT to its process when its interrupt mode is
``signal`` and the process is proven, at that moment, to be the kernel, else an
``interrupt_request`` on the control channel) and shut it down (``shutdown_request`` on control,
then SIGTERM, then SIGKILL, each signal only to the process proven the kernel: the one proven
earlier while its PID and start ticks are unchanged, since a kernel answering the request
closes its sockets before it exits, else after a new proof). A kernel whose process cannot be
proven is marked unverifiable (``record.identity_problem``) and is sent no signal
(docs/identity.md). It cannot be restarted: only the application that started it knows how.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import KernelmonError
from ..machine.discovery import FoundKernel, parse_connection_info, read_runtime_json
from ..machine.identity import Proof, prove_kernel
from ..machine.process import AdoptedProcess, NotTheKernel, stop_process, wait_for_exit
from ..protocol.activity import ActivityWatcher, Untracked
from ..protocol.channels import RequestChannel, heartbeat
from ..records import LOCAL, ExecutionState, KernelRecord, Origin, utcnow
from ..threads import run_in_thread
from .base import Action, KernelBackend, OnChange, foreign_restart_refusal

logger = logging.getLogger(__name__)

#: Seconds to wait for a reply on the control channel.
REPLY_TIMEOUT = 5.0
#: How often a kernel's process is checked where there is no pidfd.
PROCESS_POLL = 1.0


class ExternalKernelError(KernelmonError, RuntimeError):
    """An action on a kernel another application started failed."""


def read_connection_file(path: str) -> dict[str, Any]:
    """A connection file's contents (``ExternalKernelError`` if it cannot be used: never
    blocks on a FIFO, never accepts an address that is not on this machine)."""
    try:
        info: dict[str, Any] = read_runtime_json(path)
    except OSError as e:
        raise ExternalKernelError(
            f"The connection file {path} cannot be read: {e.strerror or e}."
        ) from e
    except ValueError as e:
        raise ExternalKernelError(f"The connection file {path} {e}.") from e
    try:
        parse_connection_info(info)
    except ValueError as e:
        raise ExternalKernelError(f"{path} is not a usable kernel connection file: {e}.") from e
    if not info.get("key"):
        raise ExternalKernelError(
            f"The kernel of {path} has no signing key; kernelmon does not talk to such kernels."
        )
    return info


def interrupt_mode_for(kernel_name: str | None) -> str:
    """The interrupt mode of an installed kernel spec ("signal" if unknown)."""
    if not kernel_name:
        return "signal"
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        mode = KernelSpecManager().get_kernel_spec(kernel_name).interrupt_mode
    except Exception:
        return "signal"
    return "message" if mode == "message" else "signal"


class ExternalKernel(KernelBackend):
    """A kernel on this machine that another application started (or left behind)."""

    def __init__(
        self,
        record: KernelRecord,
        connection_file: str,
        *,
        on_change: OnChange,
        on_exit: Callable[[ExternalKernel], None] | None = None,
        interrupt_mode: str | None = None,
        shutdown_wait: float = 5.0,
        reply_timeout: float = REPLY_TIMEOUT,
        untracked: Untracked | None = None,
        started_ticks: int | None = None,
        info: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
        parent_refusal: Callable[[KernelRecord], str | None] | None = None,
    ) -> None:
        """``info``: the connection file's contents, as ``read_connection_file`` returns
        them; without it the file is read here, which blocks (it checks the file's address,
        which may resolve a host name): inside the loop, read it in a worker thread.
        ``parent_refusal(record)``: why a shutdown is refused because the kernel's parent is
        a live local Jupyter server kernelmon cannot ask (``servers.parents``)."""
        super().__init__(record)
        self._parent_refusal = parent_refusal
        self._untracked = untracked
        #: what "now" is for the activity it records (the map's clock)
        self._clock = clock
        self.connection_file = connection_file
        self._info = info if info is not None else read_connection_file(connection_file)
        self._on_change = on_change
        self._on_exit = on_exit
        self.interrupt_mode = interrupt_mode
        self.shutdown_wait = shutdown_wait
        self.reply_timeout = reply_timeout
        #: kernelmon's own session: IOPub messages caused by its requests are not activity
        self.session_id = f"kernelmon-external-{uuid.uuid4()}"
        self.watcher: ActivityWatcher | None = None
        self._control: RequestChannel | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._stopping = False
        #: a ``probe_state`` is waiting for its answer
        self.probing = False
        #: the process; ``started_ticks`` given: proven the kernel when it started then
        self._proc: AdoptedProcess | None = None
        if record.pid is not None:
            with contextlib.suppress(Exception):
                self._proc = AdoptedProcess(
                    record.pid, started_ticks, proven=started_ticks is not None
                )
        self.note_flags()

    @classmethod
    def from_found(
        cls,
        found: FoundKernel,
        *,
        on_change: OnChange,
        **kwargs: Any,
    ) -> ExternalKernel:
        """A backend (and its record) for a ``discovery.FoundKernel``; call ``attach()``."""
        record = KernelRecord(
            id=found.kernel_id,
            name=found.kernel_name or "",
            origin=found.origin if found.origin != Origin.OWNED else Origin.EXTERNAL,
            location=LOCAL,
            execution_state=ExecutionState.UNKNOWN,
            pid=found.pid,
            identity_problem=found.identity_problem,
        )
        # the scan's proof: the process started then is the kernel
        proven = found.identity_problem is None
        kwargs.setdefault("started_ticks", found.pid_ticks if proven else None)
        if found.pid_started:
            started = datetime.fromtimestamp(found.pid_started, UTC)
            record.started = record.last_activity = started
        return cls(record, found.connection_file, on_change=on_change, **kwargs)

    def __repr__(self) -> str:  # never the key
        return (
            f"<ExternalKernel {self.record.id} pid={self.record.pid} "
            f"origin={self.record.origin} file={self.connection_file}>"
        )

    @property
    def connection_info(self) -> dict[str, Any]:
        return dict(self._info)

    @property
    def pid(self) -> int | None:
        return self.record.pid

    @property
    def started_ticks(self) -> int | None:
        """The process's start (``identity.start_ticks``) when it was last proven the
        kernel; None if it never was."""
        return self._proc.proven_ticks if self._proc is not None else None

    @started_ticks.setter
    def started_ticks(self, ticks: int | None) -> None:
        if self._proc is not None:
            self._proc.proven_ticks = ticks

    # -- watching ---------------------------------------------------------------------------

    def attach(self) -> None:
        """Start watching IOPub and the process (inside a running loop)."""
        if self.watcher is not None:
            return
        self._stopping = False
        self.watcher = ActivityWatcher(
            self.record,
            self._info,
            self.session_id,
            self._on_change,
            untracked=self._untracked,
            clock=self._clock,
        )
        if self._proc is not None and self._exit_task is None:
            self._exit_task = asyncio.get_running_loop().create_task(self._watch_exit())

    def _control_channel(self) -> RequestChannel:
        if self._control is None:
            self._control = RequestChannel(self._info, "control", self.session_id)
        return self._control

    async def _watch_exit(self) -> None:
        proc = self._proc
        assert proc is not None
        if hasattr(os, "pidfd_open"):
            while not await wait_for_exit(proc, 3600.0):
                pass
        else:
            while True:  # no pidfd: a cheap check every PROCESS_POLL seconds
                if proc.poll() is not None:
                    break
                await asyncio.sleep(PROCESS_POLL)
        if self._stopping:
            return
        record = self.record
        record.execution_state = ExecutionState.DEAD
        record.reason = "its process exited (stopped by its application or elsewhere)"
        self._on_change(record, {"execution_state", "reason"}, None)
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                logger.exception("on_exit callback failed for kernel %s", record.id)

    async def prove(self) -> Proof:
        """Prove, now, that the recorded process is this kernel (``identity.prove_kernel``).
        When it is not, the record says why (``identity_problem``) and nothing is signalled."""
        pid = self.record.pid
        proc = self._proc
        if pid is None or proc is None:
            proof = Proof(False, None, "kernelmon does not know the kernel's process.")
        else:
            # the process watched (started then): proven, a signal to it needs no new proof
            ticks = self.started_ticks if self.started_ticks is not None else proc.ticks
            proof = await run_in_thread(prove_kernel, pid, self._info, started_ticks=ticks)
            if proof.ok:
                proc.mark_proven(ticks)
        problem = None if proof.ok or pid is None else proof.reason
        if problem != self.record.identity_problem:
            self.record.identity_problem = problem
            self._on_change(self.record, {"identity_problem"}, None)
        return proof

    def proven_by(self, found: FoundKernel) -> bool:
        """Whether a scan's finding proves the process this backend acts on to be the
        kernel: the scan's proof succeeded for its PID and the start ticks ``prove()``
        demands (a problem a proof found is cleared only by a proof of that process)."""
        proc = self._proc
        if proc is None or found.identity_problem is not None or found.pid != self.record.pid:
            return False
        ticks = self.started_ticks if self.started_ticks is not None else proc.ticks
        return ticks is not None and found.pid_ticks == ticks

    async def is_alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return await heartbeat(self._info)

    # -- actions ----------------------------------------------------------------------------

    def standing_refusal(self, action: Action) -> str | None:
        """Never a restart (only the application that started it knows how); the rest as
        the state allows. An identity problem refuses nothing up front: an interrupt then
        goes by message, and a shutdown asks by message first (a signal it would need fails
        with the reason, docs/identity.md)."""
        if action == Action.RESTART:
            return foreign_restart_refusal(self.record)
        return None

    def refusal(self, action: Action) -> str | None:
        """A shutdown is also refused while a live local server that kernelmon cannot ask
        started the kernel (its restarter would undo signals)."""
        if action == Action.SHUTDOWN and self._parent_refusal is not None:
            why = self._parent_refusal(self.record)
            if why is not None:
                return why
        return super().refusal(action)

    async def interrupt(self) -> None:
        record = self.record
        self.refuse(Action.INTERRUPT)
        if self.interrupt_mode is None:
            self.interrupt_mode = await run_in_thread(interrupt_mode_for, record.name)
        if self.interrupt_mode == "signal" and self.record.pid is not None:
            proof = await self.prove()
            if proof.ok:
                # only the proven process: its process group was not made by kernelmon
                assert proof.pid is not None  # a proof that succeeds names its process
                try:
                    os.kill(proof.pid, signal.SIGINT)
                except (ProcessLookupError, PermissionError) as e:
                    raise ExternalKernelError(
                        f"Kernel {record.id} could not be interrupted: {e}."
                    ) from e
                return
            logger.info(
                "Not signalling kernel %s (%s); asking it on the control channel",
                record.id,
                proof.reason,
            )
        reply = self._control_channel().send("interrupt_request", {})
        try:
            msg = await asyncio.wait_for(reply, self.reply_timeout)
        except TimeoutError:
            raise ExternalKernelError(
                f"Kernel {record.id} did not answer the interrupt request within "
                f"{self.reply_timeout:g} s; it may be stuck or gone."
            ) from None
        if msg["content"].get("status") != "ok":
            raise ExternalKernelError(f"Kernel {record.id} refused the interrupt request.")

    async def probe_state(self, timeout: float = 1.0) -> str:
        """Ask the kernel for ``kernel_info`` once and set its state from the answer.

        Only for orphans: their application is gone, so nobody's idea of the kernel's
        activity is disturbed. The IOPub messages it causes carry kernelmon's session and do
        not count as activity. A kernel that answers within ``timeout`` is idle; one that
        does not is busy (ipykernel answers shell requests after the running cell), and
        becomes idle when the answer comes. The state is set only while it is still unknown
        (or, for the late answer, still the busy this set); returns the state set first.
        """
        record = self.record
        channel = RequestChannel(self._info, "shell", self.session_id)
        self.probing = True
        try:
            reply = channel.send("kernel_info_request")
            try:
                await asyncio.wait_for(asyncio.shield(reply), timeout)
                first = ExecutionState.IDLE
            except TimeoutError:
                first = ExecutionState.BUSY
            if record.execution_state == ExecutionState.UNKNOWN:
                record.execution_state = first
                self._on_change(record, {"execution_state"}, None)
            if first == ExecutionState.BUSY:
                guessed_at = record.last_activity
                await reply  # after the code it runs now
                if (
                    record.execution_state == ExecutionState.BUSY
                    and record.last_activity == guessed_at
                ):
                    record.execution_state = ExecutionState.IDLE
                    self._on_change(record, {"execution_state"}, None)
            return str(first)
        finally:
            self.probing = False
            channel.close()

    async def restart(self, timeout: float) -> None:
        self.refuse(Action.RESTART)

    async def shutdown(self, now: bool = False) -> None:
        """``shutdown_request`` on control (unless ``now``), then SIGTERM, then SIGKILL, each
        after half of ``shutdown_wait``. Without a known process, success is the kernel's
        ``shutdown_reply``."""
        record = self.record
        self.refuse(Action.SHUTDOWN)  # its live server's to stop (``refusal``)
        self._stopping = True
        proc = self._proc
        try:
            if proc is None or proc.poll() is not None:
                if proc is None:
                    await self._shutdown_by_message(record)
                return

            async def ask() -> None:
                self._control_channel().send("shutdown_request", {"restart": False})

            async def send(signum: int) -> None:
                action = "terminate" if signum == signal.SIGTERM else "kill"
                await self._signal(proc, record, action, signum)

            name = f"external kernel {record.id}"
            if not await stop_process(
                proc, send, shutdown_wait=self.shutdown_wait, ask=ask, now=now, name=name
            ):
                raise ExternalKernelError(
                    f"Kernel {record.id} (process {proc.pid}) did not die after SIGKILL."
                )
        finally:
            self.close()

    async def _signal(
        self, proc: AdoptedProcess, record: KernelRecord, action: str, signum: int
    ) -> None:
        """``signum`` to the kernel's process: at once while it is the process proven the
        kernel earlier (same PID, same start ticks; after a ``shutdown_request`` its sockets
        prove nothing, it closes them before it exits), else only after a new proof."""
        reason = None
        if not proc.is_proven():
            proof = await self.prove()
            reason = None if proof.ok else proof.reason
        if reason is None:
            try:
                proc.send_signal(signum)
                return
            except NotTheKernel as e:
                if proc.poll() is not None:
                    return  # it has just exited
                reason = str(e)
        raise ExternalKernelError(
            f"Kernel {record.id} did not stop, and kernelmon will not {action} process "
            f"{proc.pid}: {reason}"
        )

    async def _shutdown_by_message(self, record: KernelRecord) -> None:
        reply = self._control_channel().send("shutdown_request", {"restart": False})
        try:
            await asyncio.wait_for(reply, self.reply_timeout)
        except TimeoutError:
            raise ExternalKernelError(
                f"Kernel {record.id} did not answer the shutdown request within "
                f"{self.reply_timeout:g} s, and kernelmon does not know its process."
            ) from None

    def close(self) -> None:
        """Stop watching (the kernel keeps running unless it was shut down)."""
        self._stopping = True
        if self._exit_task is not None:
            self._exit_task.cancel()
            self._exit_task = None
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self._control is not None:
            self._control.close()
            self._control = None
