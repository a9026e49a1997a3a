"""Kernels kernelmon starts itself: a ``KernelBackend`` over jupyter_client's async manager.

Start and restart are confirmed by a ``kernel_info_reply`` from kernelmon's own probe
session, racing the kernel's process: a kernel that exits fails at once, one that never
answers fails after the timeout. jupyter_client's auto-restarter brings back kernels whose
process dies; kernelmon is told before it restarts, when it gives up, and (through the
restarter subclass below) when a restart it made is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jupyter_client.ioloop.manager import AsyncIOLoopKernelManager
from jupyter_client.ioloop.restarter import AsyncIOLoopKernelRestarter
from traitlets.config import Config

from .activity import ActivityWatcher
from .backend import KernelBackend
from .channels import Probe
from .errors import (
    KernelDead,
    KernelStartFailed,
    KernelStartTimeout,
    RestartFailed,
    RestartTimeout,
)
from .events import KernelDied, KernelEvent, KernelRestarted
from .records import ExecutionState, KernelRecord

logger = logging.getLogger(__name__)

#: How often an unanswered kernel_info_request is sent again while waiting.
PROBE_RESEND = 2.0
#: How often the wait for an answer checks whether the process still runs.
PROCESS_CHECK = 0.05

OnChange = Callable[[KernelRecord, set[str], datetime | None], None]


def describe_exit(code: int | None) -> str:
    """An exit status in words."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class _Restarter(AsyncIOLoopKernelRestarter):
    """jupyter_client's auto-restarter, which also says when a restart it made is done."""

    after_restart: Callable[[], None] | None = None

    async def poll(self) -> None:  # type: ignore[override]
        restarts_before = self._restart_count
        restarting_before = self._restarting
        await super().poll()
        restarted = self._restarting and (
            not restarting_before or self._restart_count != restarts_before
        )
        if restarted and self.after_restart is not None:
            self.after_restart()


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
    ) -> None:
        super().__init__(record)
        config = Config()
        config.KernelRestarter.time_to_dead = restart_poll
        config.KernelRestarter.restart_limit = restart_limit
        self.km = AsyncIOLoopKernelManager(
            kernel_name=record.name,
            kernel_spec_manager=kernel_spec_manager,
            connection_file=os.path.join(connection_dir, f"kernel-{record.id}.json"),
            autorestart=True,
            restarter_class=_Restarter,
            config=config,
            shutdown_wait_time=shutdown_wait,
        )
        self._on_change = on_change
        self._emit = emit
        self._kernel_info_timeout = kernel_info_timeout
        self.watcher: ActivityWatcher | None = None
        self.probe: Probe | None = None
        self._op = asyncio.Lock()
        self._abort = False
        self._confirm_task: asyncio.Task[None] | None = None

    # -- facts ------------------------------------------------------------------------------

    @property
    def connection_info(self) -> dict[str, Any]:
        return dict(self.km.get_connection_info(session=False))

    @property
    def connection_file(self) -> str:
        return str(self.km.connection_file)

    def _process(self) -> Any:
        return getattr(self.km.provisioner, "process", None)

    def exit_code(self) -> int | None:
        """The exit status of the kernel process if it has exited, else None."""
        proc = self._process()
        if proc is None:
            return None
        return proc.poll()  # type: ignore[no-any-return]

    async def is_alive(self) -> bool:
        return bool(await self.km.is_alive())

    # -- sockets ----------------------------------------------------------------------------

    def _attach(self) -> None:
        self._detach()
        info = self.connection_info
        self.probe = Probe(info)
        self.watcher = ActivityWatcher(self.record, info, self.probe.session_id, self._on_change)
        pid = getattr(self.km.provisioner, "pid", None)
        if pid != self.record.pid:
            self.record.pid = pid
            self._on_change(self.record, {"pid"}, None)

    def _detach(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def close(self) -> None:
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        self._detach()

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
                        return fut.result()
                code = self.exit_code()
                if code is not None:
                    raise on_exit(f"its process {describe_exit(code)}")
        finally:
            for fut in pending:
                fut.cancel()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, cwd: str, timeout: float) -> None:
        """Launch the kernel and wait until it answers (or fail, leaving no process)."""
        name = self.record.name
        try:
            await self.km.start_kernel(kernel_id=self.record.id, cwd=cwd)
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
            lambda why: KernelStartFailed(f"Kernel {name!r} failed to start: {why}."),
        )
        self._install_restarter_hooks()

    def _install_restarter_hooks(self) -> None:
        self.km.start_restarter()
        restarter = self.km._restarter
        if isinstance(restarter, _Restarter) and restarter.after_restart is None:
            restarter.after_restart = self._on_auto_restarted
            self.km.add_restart_callback(self._on_auto_restart, "restart")
            self.km.add_restart_callback(self._on_gave_up, "dead")

    async def interrupt(self) -> None:
        if self.record.execution_state == ExecutionState.DEAD:
            raise KernelDead(f"Kernel {self.record.id} is dead and cannot be interrupted.")
        try:
            await self.km.interrupt_kernel()
        except RuntimeError as e:
            raise KernelDead(f"Kernel {self.record.id} could not be interrupted: {e}") from e

    async def restart(self, timeout: float) -> None:
        kid = self.record.id
        async with self._op:
            self._detach()
            try:
                await self.km.restart_kernel(now=False)
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
                    "new one; if it keeps failing, check its kernel spec."
                ),
            )
            self.km.start_restarter()

    async def shutdown(self, now: bool = False) -> None:
        self._abort = True
        if self._confirm_task is not None:
            self._confirm_task.cancel()
        async with self._op:
            self._detach()
            if self.km.has_kernel:
                await self.km.shutdown_kernel(now=now)
            else:
                await self.km.cleanup_resources()

    # -- the auto-restarter's news ----------------------------------------------------------

    def _on_auto_restart(self) -> None:
        """The process died and jupyter_client's restarter is about to start a new one."""
        self._detach()
        why = f"the kernel process {describe_exit(self.exit_code())}"
        record = self.record
        record.execution_state = ExecutionState.RESTARTING
        record.reason = f"{why}; restarting it"
        self._on_change(record, {"execution_state", "reason"}, None)
        self._emit(KernelDied(record.id, reason=why, will_restart=True))

    def _on_gave_up(self) -> None:
        """The restarter gave up: the kernel stays dead until shut down (or culled)."""
        self._detach()
        record = self.record
        limit = self.km._restarter.restart_limit if self.km._restarter else 0
        why = f"the kernel process {describe_exit(self.exit_code())}"
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
