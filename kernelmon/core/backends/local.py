"""Kernels kernelmon starts itself: a ``KernelBackend`` over jupyter_client's async manager.

Start and restart are confirmed by a ``kernel_info_reply`` from kernelmon's own probe
session, racing the kernel's process: a kernel that exits fails at once, one that never
answers fails after the timeout. jupyter_client's auto-restarter brings back kernels whose
process dies; kernelmon is told before it restarts, when it gives up, and (through the
restarter subclass below) when a restart it made is done.

Every launch (start, restart, auto-restart) goes through ``_Manager._async_launch_kernel``:
the kernel's record is saved in the state file *before* the process is launched (the
intent: its connection file, no PID yet) and confirmed with the PID and its start ticks
right after, so a kernel never runs without a record, whatever instant kernelmon is
killed at (see adoption.py for how an unconfirmed record is resolved).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from traitlets.config import Config

from ..errors import (
    KernelDead,
    KernelStartFailed,
    KernelStartTimeout,
    RestartFailed,
    RestartRefused,
    RestartTimeout,
)
from ..events import KernelDied, KernelEvent, KernelRestarted
from ..machine.identity import Proof, prove_kernel, start_ticks
from ..machine.kernel_files import make_sockets_private
from ..machine.process import (
    AdoptedProcess,
    create_time,
    group_members,
    kill_process_group,
    stop_process,
)
from ..protocol.activity import ActivityWatcher, Untracked
from ..protocol.channels import Probe
from ..records import ExecutionState, KernelRecord, isoformat, utcnow
from ..threads import run_in_thread
from . import jupyter_client_private as jc
from .base import Action, KernelBackend, OnChange, state_refusal
from .launch import CONNECTION_FACTS, KernelLog, boot_ticks_now, choose_transport, describe_exit

logger = logging.getLogger(__name__)

#: How often an unanswered kernel_info_request is sent again while waiting.
PROBE_RESEND = 2.0
#: How often the wait for an answer checks whether the process still runs.
PROCESS_CHECK = 0.05


class LocalKernel(KernelBackend):
    """A kernel process on this machine, started by kernelmon."""

    can_restart = True

    def __init__(
        self,
        record: KernelRecord,
        *,
        kernel_spec_manager: Any,
        connection_dir: str,
        on_change: OnChange,
        emit: Callable[[KernelEvent], None],
        restart_poll: float = 3.0,
        restart_limit: int = 5,
        shutdown_wait: float = 5.0,
        kernel_info_timeout: Callable[[], float] = lambda: 60.0,
        transport: str | None = None,
        log_dir: str | None = None,
        save_state: Callable[[], str | None] = lambda: None,
        untracked: Untracked | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``clock``: what "now" is for the activity it records (the map's clock)."""
        super().__init__(record)
        self._untracked = untracked
        self._clock = clock
        #: The kernel process's stdout and stderr go here (it may outlive kernelmon).
        self.log = KernelLog(os.path.join(log_dir or connection_dir, f"kernel-{record.id}.log"))
        connection_file = os.path.join(connection_dir, f"kernel-{record.id}.json")
        transport, ip = choose_transport(connection_file, transport)
        config = Config()
        config.KernelRestarter.time_to_dead = restart_poll
        config.KernelRestarter.restart_limit = restart_limit
        self.km = jc.Manager(
            kernel_name=record.name,
            kernel_spec_manager=kernel_spec_manager,
            connection_file=connection_file,
            transport=transport,
            ip=ip,
            autorestart=True,
            restarter_class=jc.Restarter,
            config=config,
            shutdown_wait_time=shutdown_wait,
        )
        self.km.before_launch = self._record_intent
        self.km.after_launch = self._confirm_launch
        self._save_state = save_state
        #: boot ticks when a launch was recorded and its PID is not yet (None otherwise)
        self._launching: int | None = None
        #: start ticks of the kernel process (None before the first launch)
        self._pid_ticks: int | None = None
        self._on_change = on_change
        self._emit = emit
        self._kernel_info_timeout = kernel_info_timeout
        self.watcher: ActivityWatcher | None = None
        self.probe: Probe | None = None
        self._op = asyncio.Lock()
        self._abort = False
        self._confirm_task: asyncio.Task[None] | None = None
        #: the process of an earlier run adopted, until a launch replaces it (signalled only
        #: while proven: ``AdoptedProcess``)
        self._adopted: AdoptedProcess | None = None
        self._start_args: dict[str, Any] = {"kernel_id": record.id, "independent": True}
        self._idle_check: asyncio.Future[dict[str, Any]] | None = None
        self.note_flags()

    # -- facts ------------------------------------------------------------------------------

    @property
    def connection_info(self) -> dict[str, Any]:
        return dict(self.km.get_connection_info(session=False))

    @property
    def connection_file(self) -> str:
        return str(self.km.connection_file)

    @property
    def log_file(self) -> str:
        """Where the kernel process's output goes."""
        return self.log.path

    def _process(self) -> Any:
        return jc.provisioner_fact(self.km, "process")

    def exit_code(self) -> int | None:
        """The exit status of the kernel process if it has exited, else None."""
        proc = self._process()
        if proc is None:
            return None
        return proc.poll()  # type: ignore[no-any-return]

    def exit_description(self) -> str:
        proc = self._process()
        if proc is not None and not getattr(proc, "exit_known", True):
            return "exited"
        return describe_exit(self.exit_code())

    @property
    def pgid(self) -> int | None:
        """The kernel's own process group (created by kernelmon's launch), or None."""
        if self._adopted is not None:
            return self._adopted.group
        pgid = jc.provisioner_fact(self.km, "pgid")
        return pgid if isinstance(pgid, int) else None

    def persisted_state(self) -> dict[str, Any] | None:
        """What the state file keeps about this kernel, for adoption after a crash (None
        while there is nothing to keep: no process and none being launched)."""
        r = self.record
        pid = None if self._launching is not None else r.pid
        if pid is None and self._launching is None:
            return None
        info: dict[str, Any] = dict(self.km.get_connection_info(session=False))
        return {
            "id": r.id,
            "kernel_name": r.name,
            "display_name": r.display_name,
            "connection_file": self.connection_file,
            "connection": {k: info[k] for k in CONNECTION_FACTS if k in info},
            "pid": pid,
            "pid_started_ticks": self._pid_ticks if pid is not None else None,
            "pid_started": create_time(pid),  # read by older kernelmons
            "launching": self._launching,
            "pgid": self.pgid if pid is not None else None,
            "cwd": r.cwd,
            "started": isoformat(r.started),
            "restarts": r.restarts,
        }

    def _record_intent(self) -> None:
        """Right before a launch: record that a process is about to be started."""
        ticks = boot_ticks_now()
        self._launching = ticks if ticks is not None else 0
        error = self._save_state()
        if error is not None:
            self._launching = None
            raise RuntimeError(f"it could not be recorded first: {error}")

    def _confirm_launch(self, launched: bool) -> None:
        """Right after a launch: record the new process (PID and start ticks); after a
        failed one, take the intent back."""
        self._launching = None
        if not launched:
            self._save_state()
            return
        self._adopted = None  # jupyter_client's own child now
        pid = jc.provisioner_fact(self.km, "pid")
        self._pid_ticks = start_ticks(pid) if pid is not None else None
        if pid != self.record.pid:
            self.record.pid = pid
            self._on_change(self.record, {"pid"}, None)
        self._save_state()

    def proof_now(self) -> Proof:
        """Whether the recorded process is, now, this kernel (``identity.Proof``)."""
        pid = self.record.pid
        if pid is None:
            return Proof(False, None, "it has no process")
        return prove_kernel(pid, self.connection_info, started_ticks=self._pid_ticks)

    async def is_alive(self) -> bool:
        return bool(await self.km.is_alive())

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
        pid = jc.provisioner_fact(self.km, "pid")
        if pid != self.record.pid:
            self.record.pid = pid
            self._on_change(self.record, {"pid"}, None)

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
        released, the connection file stays (jupyter_client's KernelManager would delete it
        when garbage-collected) so that a later run can adopt a kernel left running."""
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        self._detach()
        self.log.close()
        jc.let_go(self.km)

    async def _wait_ready(
        self,
        timeout: float,
        on_timeout: Callable[[], Exception],
        on_exit: Callable[[str], Exception],
    ) -> dict[str, Any]:
        """Wait for a kernel_info_reply to kernelmon's probe, racing the process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        assert self.probe is not None
        pending: list[asyncio.Future[dict[str, Any]]] = []
        sent_at = float("-inf")
        try:
            while True:
                now = loop.time()
                if self._abort:
                    raise on_exit("it was shut down while kernelmon waited for it")
                if now >= deadline:
                    raise on_timeout()
                if now - sent_at >= PROBE_RESEND:
                    if self.probe is None:
                        raise on_exit("its connection was closed")
                    pending.append(self.probe.send_kernel_info())
                    sent_at = now
                done, _ = await asyncio.wait(
                    pending,
                    timeout=min(PROCESS_CHECK, max(deadline - now, 0)),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for fut in done:
                    if not fut.cancelled() and fut.exception() is None:
                        # it answered, so its IPC socket files exist: make them private
                        make_sockets_private(self.connection_info)
                        return fut.result()
                if self.exit_code() is not None:
                    raise on_exit(f"its process {self.exit_description()}")
        finally:
            for fut in pending:
                fut.cancel()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, cwd: str, timeout: float) -> None:
        """Launch the kernel and wait until it answers (or fail, leaving no process)."""
        name = self.record.name
        # independent: the kernel outlives a crash of kernelmon, whose next run adopts it
        self._start_args = {"kernel_id": self.record.id, "cwd": cwd, "independent": True}
        try:
            await self._launch()
        except Exception as e:
            raise KernelStartFailed(f"Kernel {name!r} could not be launched: {e}") from e
        # The restarter must not hide a kernel that dies while starting.
        self.km.stop_restarter()
        self._attach()
        await self._wait_ready(
            timeout,
            lambda: KernelStartTimeout(
                f"Kernel {name!r} did not answer within {timeout:g} s "
                "(kernel_info_timeout); it was stopped. Check that the kernel works, or raise "
                "the timeout."
            ),
            lambda why: KernelStartFailed(
                f"Kernel {name!r} failed to start: {why}.{self.log.tail()}"
            ),
        )
        self._install_restarter_hooks()

    async def adopt(
        self, connection_file: str, info: dict[str, Any], pid: int, group: bool, timeout: float
    ) -> bool:
        """Take over a kernel of an earlier run: ``pid`` is the process proven to be the
        kernel of ``connection_file`` (whose checked content is ``info``); ``group``: its
        record says kernelmon's launch made it the leader of its own process group (then
        signals go to the group while the kernel is proven). True if it answered a
        kernel_info_request within ``timeout`` (else it is adopted as unresponsive)."""
        self._pid_ticks = start_ticks(pid)
        process = AdoptedProcess(pid, self._pid_ticks, self.proof_now, group=pid if group else None)
        self._adopted = process
        self._start_args = {
            "kernel_id": self.record.id,
            "cwd": self.record.cwd,
            "independent": True,
        }
        log = self.log.handle()
        # what jupyter_client's auto-restarter relaunches with
        relaunch = {"cwd": self.record.cwd, "independent": True, "stdout": log, "stderr": log}
        await jc.adopt_process(self.km, self.record.id, connection_file, info, process, relaunch)
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

    async def _launch(self) -> None:
        """Start the kernel process with its output going to ``log_file``."""
        log = self.log.handle()
        await self.km.start_kernel(**self._start_args, stdout=log, stderr=log)
        self._note_connection()

    def _note_connection(self) -> None:
        """Copy how the kernel is reached onto the record (the details the table shows)."""
        info = self.km.get_connection_info()
        record = self.record
        record.connection_file = self.km.connection_file
        record.transport = str(info.get("transport", ""))
        record.ip = str(info.get("ip", ""))
        record.ports = {k: v for k, v in info.items() if k.endswith("_port") and isinstance(v, int)}

    def remove_log(self) -> None:
        self.log.remove()

    def _install_restarter_hooks(self) -> None:
        if jc.hook_restarter(self.km, self._on_auto_restarted):
            self.km.add_restart_callback(self._on_auto_restart, "restart")
            self.km.add_restart_callback(self._on_gave_up, "dead")

    #: the map's state file still asks ``state()`` until it asks ``persisted_state()``
    state = persisted_state

    # -- actions ----------------------------------------------------------------------------

    def refusal(self, action: Action) -> str | None:
        """Nothing once it is being shut down (a restart then would launch a kernel nobody
        keeps); an interrupt only while its process is the kernel (an adopted process that
        failed its proof, or is gone, is sent nothing); otherwise as its state allows."""
        if self._abort:
            if action == Action.SHUTDOWN:
                return None
            return "This kernel is being shut down"
        if action == Action.RESTART:
            return None
        adopted = self._adopted
        if (
            action == Action.INTERRUPT
            and adopted is not None
            and adopted.returncode is not None  # gone, or failed its proof
            and self.record.execution_state not in (ExecutionState.DEAD, ExecutionState.RESTARTING)
        ):
            return (
                f"kernelmon cannot interrupt this kernel: process {adopted.pid} is no longer "
                "the kernel it adopted"
            )
        return state_refusal(self.record, action)

    async def interrupt(self) -> None:
        self.refuse(Action.INTERRUPT)
        try:
            await self.km.interrupt_kernel()
        except (RuntimeError, OSError) as e:
            raise KernelDead(f"Kernel {self.record.id} could not be interrupted: {e}") from e

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
                await self._stop_process(now=False, restart=True)
                await self._launch()
            except Exception as e:
                raise RestartFailed(f"Kernel {kid} could not be restarted: {e}") from e
            self.km.stop_restarter()
            self._attach()
            await self._wait_ready(
                timeout,
                lambda: RestartTimeout(
                    f"Kernel {kid} did not answer within {timeout:g} s after the restart. It "
                    "may still be loading; wait, restart it again, or shut it down."
                ),
                lambda why: RestartFailed(
                    f"Kernel {kid} died during the restart: {why}. Shut it down and start a "
                    f"new one; if it keeps failing, check its kernel spec.{self.log.tail()}"
                ),
            )
            self._install_restarter_hooks()

    async def shutdown(self, now: bool = False) -> None:
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        async with self._op:
            self._detach()
            await self._stop_process(now=now, restart=False)

    async def _stop_process(self, now: bool, restart: bool) -> None:
        """shutdown_request, then SIGTERM, then SIGKILL to the process group, each waited
        for precisely (no polling); then whatever is left of the group is killed and the
        connection file (unless restarting) and IPC sockets are removed."""
        km = self.km
        km.stop_restarter()
        proc = self._process()
        pgid = self.pgid
        members: list[tuple[int, int | None]] = []
        # only the kernel's own group, while its leader is the proven kernel (our unreaped
        # child, or an adopted process proven now)
        if (
            proc is not None
            and proc.poll() is None
            and pgid == proc.pid
            and (self._adopted is None or (await run_in_thread(self.proof_now)).ok)
        ):
            members = await run_in_thread(group_members, pgid)
        if proc is not None and proc.poll() is None:
            provisioner = km.provisioner
            assert provisioner is not None

            async def ask() -> None:
                with contextlib.suppress(Exception):
                    await km.request_shutdown(restart=restart)

            async def send(signum: int) -> None:
                if signum == signal.SIGTERM:
                    await provisioner.terminate(restart=restart)
                else:
                    await provisioner.kill(restart=restart)

            name = f"kernel {self.record.id}"
            if not await stop_process(
                proc, send, shutdown_wait=km.shutdown_wait_time, ask=ask, now=now, name=name
            ):
                logger.warning("Kernel %s (pid %s) did not die", self.record.id, proc.pid)
            await provisioner.wait()
        kill_process_group(pgid, members)
        await km.cleanup_resources(restart=restart)

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
        why = f"the kernel process {self.exit_description()}"
        record = self.record
        record.execution_state = ExecutionState.RESTARTING
        record.reason = f"{why}; restarting it"
        self._on_change(record, {"execution_state", "reason"}, None)
        self._emit(KernelDied(record.id, reason=why, will_restart=True))

    def _on_gave_up(self) -> None:
        """The restarter gave up: the kernel stays dead until shut down (or culled)."""
        self._detach()
        record = self.record
        limit = jc.restart_limit(self.km)
        why = f"the kernel process {self.exit_description()}"
        record.execution_state = ExecutionState.DEAD
        record.reason = f"{why} and was restarted {limit} time(s) without success"
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
