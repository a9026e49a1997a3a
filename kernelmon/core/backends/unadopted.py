"""A kernel of an earlier kernelmon run that runs but could not be adopted: a
``KernelBackend`` that can only kill it, after proving again that its process is the kernel
(see adoption.py for how such a kernel is found)."""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import KernelmonError
from ..machine.identity import Proof, prove_kernel
from ..machine.kernel_files import remove_kernel_files
from ..machine.process import AdoptedProcess, group_members, kill_process_group, stop_process
from ..records import KernelRecord
from ..threads import run_in_thread
from .base import Action, KernelBackend
from .launch import CONNECTION_FACTS


class UnadoptedKernel(KernelBackend):
    """A kernel of an earlier run proven to run, but that kernelmon cannot talk to (its
    connection file is damaged, its kernel spec is gone, ...). It can only be killed, after
    proving again that the process is the kernel; its record stays in the state file until
    then."""

    def __init__(
        self,
        record: KernelRecord,
        saved: dict[str, Any],
        proof_info: dict[str, Any],
        ticks: int | None,
        own_group: bool,
        shutdown_wait: float,
    ) -> None:
        super().__init__(record)
        self._saved = saved
        self._proof_info = proof_info
        self._ticks = ticks
        self._own_group = own_group
        self._shutdown_wait = shutdown_wait
        #: the process proven the kernel at adoption (gone once its start ticks differ)
        self._proc = AdoptedProcess(record.pid, ticks, self.proof_now) if record.pid else None
        self.note_flags()

    @property
    def connection_info(self) -> dict[str, Any]:
        return {k: v for k, v in self._proof_info.items() if k != "key"}

    def persisted_state(self) -> dict[str, Any]:
        """The record as read, with the proven process (kept until the kernel is killed)."""
        pid = self.record.pid
        return {
            **self._saved,
            "pid": pid,
            "pid_started_ticks": self._ticks,
            "launching": None,
            "pgid": pid if self._own_group else None,
            "connection": {k: v for k, v in self._proof_info.items() if k in CONNECTION_FACTS},
        }

    def proof_now(self) -> Proof:
        pid = self.record.pid
        assert pid is not None
        return prove_kernel(pid, self._proof_info, started_ticks=self._ticks)

    def standing_refusal(self, action: Action) -> str | None:
        if action == Action.SHUTDOWN:
            return None  # it kills the kernel, once proven
        return (
            "This kernel of an earlier run could not be adopted (its reason says why), so "
            "kernelmon can only kill it: shut it down"
        )

    async def interrupt(self) -> None:
        self.refuse(Action.INTERRUPT)

    async def restart(self, timeout: float) -> None:
        self.refuse(Action.RESTART)

    async def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def shutdown(self, now: bool = False) -> None:
        """Kill the kernel (SIGTERM, then SIGKILL) once it is proven to be the kernel; then
        its own process group's leftovers, and its files as the deletion rule allows."""
        pid = self.record.pid
        assert pid is not None
        if await self.is_alive():
            proof = await run_in_thread(self.proof_now)
            if not proof.ok:
                raise KernelmonError(
                    f"Kernel {self.record.id} was not killed: kernelmon cannot prove that "
                    f"process {pid} is the kernel ({proof.reason or 'no proof'})."
                )
            group = pid if self._own_group else None
            proc = AdoptedProcess(pid, self._ticks, self.proof_now, group=group)
            members = await run_in_thread(group_members, group) if group else []

            async def send(signum: int) -> None:
                with contextlib.suppress(ProcessLookupError):  # gone, or no longer the kernel
                    proc.send_signal(signum)

            name = f"kernel {self.record.id} (pid {pid})"
            if not await stop_process(
                proc, send, shutdown_wait=self._shutdown_wait, now=now, name=name
            ):
                raise KernelmonError(f"Kernel {self.record.id} (pid {pid}) did not die.")
            kill_process_group(group, members)
        await run_in_thread(remove_kernel_files, self._saved["connection_file"])
