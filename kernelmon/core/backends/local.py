"""Kernels kernelmon starts itself: a ``KernelBackend`` over jupyter_client's async manager.

Start and restart are confirmed by a ``kernel_info_reply`` from kernelmon's own probe
session, racing the kernel's process: a kernel that exits fails at once, one that never
answers fails after the timeout. jupyter_client's auto-restarter brings back kernels whose
process dies; kernelmon is told before it restarts, when it gives up, and when a restart it
made is done. The process itself (launching it recorded first, adopting one of an earlier
run, stopping it) is ``local_process.KernelProcess``'s; this backend owns the record, the
sockets (probe and activity watcher) and the actions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import (
    KernelDead,
    KernelStartFailed,
    KernelStartTimeout,
    RestartFailed,
    RestartRefused,
    RestartTimeout,
)
from ..events import KernelDied, KernelEvent, KernelRestarted
from ..machine.identity import Proof
from ..machine.kernel_files import make_sockets_private
from ..protocol import iopub
from ..protocol.activity import ActivityWatcher, Untracked
from ..protocol.channels import Probe, wait_for_answer
from ..records import ExecutionState, KernelRecord, isoformat, utcnow
from .base import Action, KernelBackend, OnChange
from .local_process import KernelProcess

logger = logging.getLogger(__name__)


class LocalKernel(KernelBackend):
    """A kernel process on this machine, started (or adopted) by kernelmon."""

    kill_if_shutdown_fails = True

    def __init__(
        self,
        record: KernelRecord,
        *,
        on_change: OnChange,
        emit: Callable[[KernelEvent], None],
        kernel_info_timeout: Callable[[], float] = lambda: 60.0,
        save_state: Callable[[], str | None] = lambda: None,
        untracked: Untracked | None = None,
        clock: Callable[[], datetime] = utcnow,
        **process: Any,
    ) -> None:
        """``process``: ``KernelProcess``'s options (``kernel_spec_manager``,
        ``connection_dir``, ``restart_poll``, ``restart_limit``, ``shutdown_wait``,
        ``transport``, ``log_dir``); ``clock``: what "now" is for the activity it records
        (the map's clock)."""
        super().__init__(record)
        self._untracked = untracked
        self._clock = clock
        self._save_state = save_state
        self.process = KernelProcess(
            record.id, record.name, save_state=save_state, on_pid=self._note_pid, **process
        )
        self._on_change = on_change
        self._emit = emit
        self._kernel_info_timeout = kernel_info_timeout
        self.watcher: ActivityWatcher | None = None
        self.probe: Probe | None = None
        self._op = asyncio.Lock()
        self._abort = False
        self._confirm_task: asyncio.Task[None] | None = None
        self._idle_check: asyncio.Future[dict[str, Any]] | None = None
        self.note_flags()

    # -- facts ------------------------------------------------------------------------------

    @property
    def km(self) -> Any:
        """jupyter_client's kernel manager of this kernel."""
        return self.process.km

    @property
    def connection_info(self) -> dict[str, Any]:
        return self.process.connection_info

    @property
    def connection_file(self) -> str:
        return self.process.connection_file

    @property
    def log_file(self) -> str:
        """Where the kernel process's output goes."""
        return self.process.log.path

    def remove_log(self) -> None:
        self.process.log.remove()

    def persisted_state(self) -> dict[str, Any] | None:
        """What the state file keeps about this kernel, for adoption after a crash (None
        while there is nothing to keep: no process and none being launched)."""
        r = self.record
        launching = self.process.launching
        pid = None if launching is not None else r.pid
        if pid is None and launching is None:
            return None
        return {
            "id": r.id,
            "kernel_name": r.name,
            "display_name": r.display_name,
            **self.process.state_facts(pid),
            "cwd": r.cwd,
            "started": isoformat(r.started),
            "restarts": r.restarts,
        }

    def proof_now(self) -> Proof:
        """Whether the recorded process is, now, this kernel (``identity.Proof``)."""
        return self.process.proof_now()

    async def is_alive(self) -> bool:
        return await self.process.is_alive()

    def _note_pid(self, pid: int | None) -> None:
        if pid != self.record.pid:
            self.record.pid = pid
            self._on_change(self.record, {"pid"}, None)

    # -- sockets ----------------------------------------------------------------------------

    def _attach(self) -> None:
        self._detach()
        info = self.connection_info
        self.probe = Probe(info)
        self.watcher = ActivityWatcher(
            self.record,
            info,
            self.probe.session_id,
            self._on_change,
            untracked=self._untracked,
            clock=self._clock,
        )
        self._note_pid(self.process.pid)

    def _detach(self) -> None:
        self._idle_check = None
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def close(self) -> None:
        """Let go of the kernel without stopping it: sockets, timers and files handles are
        released, the connection file stays so that a later run can adopt a kernel left
        running."""
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        self._detach()
        self.process.let_go()

    def _gone(self) -> str | None:
        """Why waiting for the kernel to answer is over (None while it may)."""
        if self._abort:
            return "it was shut down while kernelmon waited for it"
        if self.process.exit_code() is not None:
            return f"its process {self.process.exit_description()}"
        return None

    async def _wait_ready(
        self,
        timeout: float,
        on_timeout: Callable[[], Exception],
        on_exit: Callable[[str], Exception],
    ) -> dict[str, Any]:
        """Wait for a kernel_info_reply to kernelmon's probe, racing the process."""
        reply = await wait_for_answer(lambda: self.probe, timeout, self._gone, on_timeout, on_exit)
        # it answered, so its IPC socket files exist: make them private
        make_sockets_private(self.connection_info)
        return reply

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, cwd: str, timeout: float) -> None:
        """Launch the kernel and wait until it answers (or fail, leaving no process)."""
        name = self.record.name
        try:
            await self._launch(cwd)
        except Exception as e:
            raise KernelStartFailed(f"Kernel {name!r} could not be launched: {e}") from e
        await self._until_ready(
            timeout,
            lambda: KernelStartTimeout(
                f"Kernel {name!r} did not answer within {timeout:g} s "
                "(kernel_info_timeout); it was stopped. Check that the kernel works, or raise "
                "the timeout."
            ),
            lambda why: KernelStartFailed(
                f"Kernel {name!r} failed to start: {why}.{self.process.log.tail()}"
            ),
        )

    async def _until_ready(
        self,
        timeout: float,
        on_timeout: Callable[[], Exception],
        on_exit: Callable[[str], Exception],
    ) -> None:
        """A process just launched: watched until it answers (``_wait_ready``), then left to
        the restarter, which must not hide a kernel that dies while starting."""
        self.km.stop_restarter()
        self._attach()
        await self._wait_ready(timeout, on_timeout, on_exit)
        self._install_restarter_hooks()

    async def adopt(
        self, connection_file: str, info: dict[str, Any], pid: int, group: bool, timeout: float
    ) -> bool:
        """Take over a kernel of an earlier run: ``pid`` is the process proven to be the
        kernel of ``connection_file`` (whose checked content is ``info``); ``group``: its
        record says kernelmon's launch made it the leader of its own process group (then
        signals go to the group while the kernel is proven). True if it answered a
        kernel_info_request within ``timeout`` (else it is adopted as unresponsive)."""
        await self.process.adopt(connection_file, info, pid, group, self.record.cwd)
        self._note_connection()
        self._attach()
        try:
            await self._wait_ready(
                timeout,
                lambda: RestartTimeout("no answer"),
                lambda why: RestartFailed(why),
            )
            answered = True
        except RestartTimeout:
            answered = False
        self._install_restarter_hooks()
        return answered

    async def _launch(self, cwd: str | None = None) -> None:
        """Start the kernel process (in ``cwd``; again where it ran without one)."""
        await self.process.launch(cwd)
        self._note_connection()

    def _note_connection(self) -> None:
        """Copy how the kernel is reached onto the record (the details the table shows)."""
        info = self.km.get_connection_info()
        record = self.record
        record.connection_file = self.km.connection_file
        record.transport = str(info.get("transport", ""))
        record.ip = str(info.get("ip", ""))
        record.ports = {k: v for k, v in info.items() if k.endswith("_port") and isinstance(v, int)}

    def _install_restarter_hooks(self) -> None:
        self.process.watch(self._on_auto_restart, self._on_gave_up, self._on_auto_restarted)

    # -- actions ----------------------------------------------------------------------------

    def refusal(self, action: Action) -> str | None:
        """Nothing but the shutdown once it is being shut down (a restart then would launch
        a kernel nobody keeps); otherwise as its state allows. An adopted process is proven
        at the moment of each signal (``AdoptedProcess``), not here: a refusal is asked at
        every model and must not read the process table."""
        if self._abort:
            if action == Action.SHUTDOWN:
                return None
            return "This kernel is being shut down"
        if action == Action.RESTART:
            return None
        return super().refusal(action)

    async def interrupt(self) -> None:
        self.refuse(Action.INTERRUPT)
        try:
            await self.km.interrupt_kernel()
        except (RuntimeError, OSError) as e:
            raise KernelDead(f"Kernel {self.record.id} could not be interrupted: {e}") from e
        if self.km.kernel_spec.interrupt_mode == "message":
            # jupyter_client's kernel manager sent an interrupt_request on control and never
            # reads the reply: a number missing from IOPub that is no lost output
            iopub.expect_unread(self.connection_info, 1)

    async def restart(self, timeout: float) -> None:
        kid = self.record.id
        self.refuse(Action.RESTART)
        async with self._op:
            self.refuse(Action.RESTART)  # shut down while it waited: nothing is launched
            # the new process must be recordable (intent first): found out before the old
            # one is stopped, so a refused restart changes nothing
            error = self._save_state()
            if error is not None:
                raise RestartRefused(
                    f"Kernel {kid} was not restarted, since the new process could not be "
                    f"recorded first: {error}. It runs on as it was."
                )
            self._detach()
            try:
                await self.process.stop(now=False, restart=True)
                await self._launch()
            except Exception as e:
                raise RestartFailed(f"Kernel {kid} could not be restarted: {e}") from e
            await self._until_ready(
                timeout,
                lambda: RestartTimeout(
                    f"Kernel {kid} did not answer within {timeout:g} s after the restart. It "
                    "may still be loading; wait, restart it again, or shut it down."
                ),
                lambda why: RestartFailed(
                    f"Kernel {kid} died during the restart: {why}. Shut it down and start a "
                    f"new one; if it keeps failing, check its kernel spec.{self.process.log.tail()}"
                ),
            )

    async def shutdown(self, now: bool = False) -> None:
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        async with self._op:
            self._detach()
            await self.process.stop(now=now, restart=False)

    # -- keeping the shown state true -------------------------------------------------------

    def confirm_idle_soon(self) -> None:
        """While the kernel is shown busy, keep one kernel_info_request queued behind its
        code: the shell channel answers only after the code before it has run, so the reply
        arrives the moment the kernel is idle, even when the IOPub stream is far behind (a
        flood) or dropped the final idle status. Probes do not count as activity."""
        watcher, probe = self.watcher, self.probe
        if (
            watcher is None
            or probe is None
            or self._idle_check is not None
            or self.record.execution_state != ExecutionState.BUSY
        ):
            return
        sent_at = time.monotonic()
        fut = probe.send_kernel_info()
        self._idle_check = fut

        def on_reply(f: asyncio.Future[dict[str, Any]]) -> None:
            self._idle_check = None
            if f.cancelled() or f.exception() is not None or self.watcher is not watcher:
                return
            if watcher.settle(sent_at):
                logger.debug("Kernel %s answered while shown busy: it is idle", self.record.id)

        fut.add_done_callback(on_reply)

    # -- the auto-restarter's news ----------------------------------------------------------

    def _on_auto_restart(self) -> None:
        """The process died and jupyter_client's restarter is about to start a new one."""
        self._detach()
        why = f"the kernel process {self.process.exit_description()}"
        record = self.record
        record.execution_state = ExecutionState.RESTARTING
        record.reason = f"{why}; restarting it"
        self._on_change(record, {"execution_state", "reason"}, None)
        self._emit(KernelDied(record.id, reason=why, will_restart=True))

    def _on_gave_up(self) -> None:
        """The restarter gave up: the kernel stays dead until shut down (or culled)."""
        self._detach()
        record = self.record
        limit = self.process.restart_limit()
        why = f"the kernel process {self.process.exit_description()}"
        record.execution_state = ExecutionState.DEAD
        times = "once" if limit == 1 else f"{limit} times"
        record.reason = f"{why} and was restarted {times} without success"
        self._on_change(record, {"execution_state", "reason"}, None)
        self._emit(KernelDied(record.id, reason=record.reason, will_restart=False))

    def _on_auto_restarted(self) -> None:
        """The restarter started a new process: watch it and confirm that it answers."""
        if self._abort:
            return
        self._attach()
        self.record.restarts += 1
        self._on_change(self.record, {"restarts"}, None)
        self._confirm_task = asyncio.get_running_loop().create_task(self._confirm_auto_restart())

    async def _confirm_auto_restart(self) -> None:
        record = self.record
        timeout = self._kernel_info_timeout()
        try:
            await self._wait_ready(
                timeout,
                lambda: RestartTimeout(f"no answer within {timeout:g} s after an auto-restart"),
                lambda why: RestartFailed(why),
            )
        except RestartTimeout as e:
            record.execution_state = ExecutionState.UNKNOWN
            record.reason = str(e)
            self._on_change(record, {"execution_state", "reason"}, None)
            return
        except RestartFailed:
            return  # the restarter sees the dead process on its next poll
        if record.execution_state in (ExecutionState.RESTARTING, ExecutionState.STARTING):
            record.execution_state = ExecutionState.IDLE
        record.reason = None
        self._on_change(record, {"execution_state", "reason"}, None)
        self._emit(KernelRestarted(record.id, auto=True))
