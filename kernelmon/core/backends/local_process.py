"""The process of one of kernelmon's own kernels, through jupyter_client's async manager.

``KernelProcess`` owns the manager, the kernel's log file and what the state file keeps of
the process; ``local.LocalKernel`` owns the record and the sockets, and asks this for the
process. Every launch (start, restart, auto-restart) goes through the manager's launch
hook: the kernel's record is saved in the state file *before* the process is launched (the
intent: its connection file, no PID yet) and confirmed with the PID and its start ticks
right after, so a kernel never runs without a record, whatever instant kernelmon is killed
at (see adoption.py for how an unconfirmed record is resolved).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from traitlets.config import Config

from ..machine.identity import Proof, prove_kernel, start_ticks
from ..machine.process import (
    AdoptedProcess,
    create_time,
    group_members,
    kill_process_group,
    stop_process,
)
from ..threads import run_in_thread
from . import jupyter_client_private as jc
from .launch import CONNECTION_FACTS, KernelLog, boot_ticks_now, choose_transport, describe_exit

logger = logging.getLogger(__name__)


class KernelProcess:
    """Launching, adopting, proving and stopping one kernel process (see the module)."""

    def __init__(
        self,
        kernel_id: str,
        kernel_name: str,
        *,
        kernel_spec_manager: Any,
        connection_dir: str,
        save_state: Callable[[], str | None],
        on_pid: Callable[[int | None], None],
        restart_poll: float = 3.0,
        restart_limit: int = 5,
        shutdown_wait: float = 5.0,
        transport: str | None = None,
        log_dir: str | None = None,
    ) -> None:
        """``save_state()`` writes the state file (the error, or None); ``on_pid(pid)``
        is told the process of each launch."""
        self.kernel_id = kernel_id
        #: The kernel process's stdout and stderr go here (it may outlive kernelmon).
        self.log = KernelLog(os.path.join(log_dir or connection_dir, f"kernel-{kernel_id}.log"))
        connection_file = os.path.join(connection_dir, f"kernel-{kernel_id}.json")
        transport, ip = choose_transport(connection_file, transport)
        config = Config()
        config.KernelRestarter.time_to_dead = restart_poll
        config.KernelRestarter.restart_limit = restart_limit
        self.km = jc.Manager(
            kernel_name=kernel_name,
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
        self._on_pid = on_pid
        #: boot ticks when a launch was recorded and its PID is not yet (None otherwise)
        self.launching: int | None = None
        #: start ticks of the kernel process (None before the first launch)
        self.ticks: int | None = None
        #: the process of an earlier run adopted, until a launch replaces it (signalled only
        #: while proven: ``AdoptedProcess``)
        self.adopted: AdoptedProcess | None = None
        self._start_args: dict[str, Any] = {"kernel_id": kernel_id, "independent": True}

    # -- facts ------------------------------------------------------------------------------

    @property
    def connection_info(self) -> dict[str, Any]:
        return dict(self.km.get_connection_info(session=False))

    @property
    def connection_file(self) -> str:
        return str(self.km.connection_file)

    @property
    def pid(self) -> int | None:
        pid = jc.provisioner_fact(self.km, "pid")
        return pid if isinstance(pid, int) else None

    def popen(self) -> Any:
        """The Popen-like handle of the process (None before the first launch)."""
        return jc.provisioner_fact(self.km, "process")

    def exit_code(self) -> int | None:
        """The exit status of the kernel process if it has exited, else None."""
        proc = self.popen()
        code = None if proc is None else proc.poll()
        return code if isinstance(code, int) else None

    def exit_description(self) -> str:
        proc = self.popen()
        if proc is not None and not getattr(proc, "exit_known", True):
            return "exited"
        return describe_exit(self.exit_code())

    @property
    def pgid(self) -> int | None:
        """The kernel's own process group (created by kernelmon's launch), or None."""
        if self.adopted is not None:
            return self.adopted.group
        pgid = jc.provisioner_fact(self.km, "pgid")
        return pgid if isinstance(pgid, int) else None

    def state_facts(self, pid: int | None) -> dict[str, Any]:
        """What the state file keeps of the process and its connection (never the key)."""
        info = self.connection_info
        return {
            "connection_file": self.connection_file,
            "connection": {k: info[k] for k in CONNECTION_FACTS if k in info},
            "pid": pid,
            "pid_started_ticks": self.ticks if pid is not None else None,
            "pid_started": create_time(pid),  # read by older kernelmons
            "launching": self.launching,
            "pgid": self.pgid if pid is not None else None,
        }

    def proof_now(self) -> Proof:
        """Whether the process is, now, this kernel (``identity.Proof``)."""
        pid = self.pid
        if pid is None:
            return Proof(False, None, "it has no process")
        return prove_kernel(pid, self.connection_info, started_ticks=self.ticks)

    async def is_alive(self) -> bool:
        return bool(await self.km.is_alive())

    # -- launching --------------------------------------------------------------------------

    def _record_intent(self) -> None:
        """Right before a launch: record that a process is about to be started."""
        ticks = boot_ticks_now()
        self.launching = ticks if ticks is not None else 0
        error = self._save_state()
        if error is not None:
            self.launching = None
            raise RuntimeError(f"it could not be recorded first: {error}")

    def _confirm_launch(self, launched: bool) -> None:
        """Right after a launch: record the new process (PID and start ticks); after a
        failed one, take the intent back."""
        self.launching = None
        if not launched:
            self._save_state()
            return
        self.adopted = None  # jupyter_client's own child now
        pid = self.pid
        self.ticks = start_ticks(pid) if pid is not None else None
        self._on_pid(pid)
        self._save_state()

    async def launch(self, cwd: str | None = None) -> None:
        """Start the kernel process (in ``cwd``; again where it last ran without one), its
        output going to the log file. Independent: the kernel outlives a crash of
        kernelmon, whose next run adopts it."""
        if cwd is not None:
            self._start_args = {"kernel_id": self.kernel_id, "cwd": cwd, "independent": True}
        log = self.log.handle()
        await self.km.start_kernel(**self._start_args, stdout=log, stderr=log)

    async def adopt(
        self, connection_file: str, info: dict[str, Any], pid: int, group: bool, cwd: str | None
    ) -> None:
        """Manage a kernel of an earlier run: ``pid`` is the process proven to be the
        kernel of ``connection_file`` (whose checked content is ``info``); ``group``: its
        record says kernelmon's launch made it the leader of its own process group."""
        self.ticks = start_ticks(pid)
        self.adopted = AdoptedProcess(pid, self.ticks, self.proof_now, group=pid if group else None)
        self._start_args = {"kernel_id": self.kernel_id, "cwd": cwd, "independent": True}
        log = self.log.handle()
        # what jupyter_client's auto-restarter relaunches with
        relaunch = {"cwd": cwd, "independent": True, "stdout": log, "stderr": log}
        await jc.adopt_process(
            self.km, self.kernel_id, connection_file, info, self.adopted, relaunch
        )

    # -- the auto-restarter -----------------------------------------------------------------

    def watch(
        self,
        on_restart: Callable[[], None],
        on_gave_up: Callable[[], None],
        after_restart: Callable[[], None],
    ) -> None:
        """Start jupyter_client's auto-restarter, telling: before it restarts a process that
        died, when it gives up, when a restart it made is done."""
        if jc.hook_restarter(self.km, after_restart):
            self.km.add_restart_callback(on_restart, "restart")
            self.km.add_restart_callback(on_gave_up, "dead")

    def restart_limit(self) -> int:
        return jc.restart_limit(self.km)

    # -- stopping ---------------------------------------------------------------------------

    async def stop(self, now: bool, restart: bool) -> None:
        """``process.stop_process`` (shutdown_request, SIGTERM, SIGKILL, each waited for
        precisely); then whatever is left of the kernel's own process group is killed and
        the connection file (unless restarting) and IPC sockets are removed."""
        km = self.km
        km.stop_restarter()
        proc = self.popen()
        pgid = self.pgid
        members: list[tuple[int, int | None]] = []
        # only the kernel's own group, while its leader is the proven kernel (our unreaped
        # child, or an adopted process proven now)
        if (
            proc is not None
            and proc.poll() is None
            and pgid == proc.pid
            and (self.adopted is None or (await run_in_thread(self.proof_now)).ok)
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

            name = f"kernel {self.kernel_id}"
            if not await stop_process(
                proc, send, shutdown_wait=km.shutdown_wait_time, ask=ask, now=now, name=name
            ):
                logger.warning("Kernel %s (pid %s) did not die", self.kernel_id, proc.pid)
            await provisioner.wait()
        kill_process_group(pgid, members)
        await km.cleanup_resources(restart=restart)

    def let_go(self) -> None:
        """Release the manager and the log without stopping the kernel (its connection file
        stays, so that a later run can adopt it)."""
        self.log.close()
        jc.let_go(self.km)
