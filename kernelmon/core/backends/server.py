"""A kernel a Jupyter Server or Enterprise Gateway runs: every action through its REST API.

kernelmon sends such a kernel no signal and no message of its own: interrupt is
``POST /api/kernels/<id>/interrupt``, restart ``POST .../restart`` (answered once the new
kernel replied to ``kernel_info``; kernelmon's ``kernel_info_timeout`` bounds the wait),
shut down ``DELETE /api/kernels/<id>``. A signal to a live server's kernel would be undone by
the server's restarter (a new process, its state lost). Its record is kept by the server's
polls (servers/part.py); process facts of a local server's kernel (PID, CPU, memory) come from
discovery as for any kernel on this machine.

When its local server stops, the backend is *released*: discovery then takes the kernel back
as another application's kernel (whose shutdown may signal a process it proved).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import KernelmonError, RestartFailed, RestartTimeout
from ..machine.identity import Proof, refused
from ..records import ExecutionState, KernelRecord, assign
from ..servers.model import kernel_state
from ..servers.status import ServerError, ServerStatus
from .base import Action, KernelBackend, state_refusal

if TYPE_CHECKING:
    from ..servers.watch import ServerWatch

#: Statuses in which the server answers requests about its kernels.
_ANSWERING = frozenset({ServerStatus.REACHABLE, ServerStatus.LISTING_FORBIDDEN})


class ServerKernel(KernelBackend):
    """Actions on one kernel of the server that ``watch`` polls (see the module).

    ``connection_info``: the kernel's connection file's contents when it is on this
    machine (a local server's kernel found by discovery), else empty."""

    def __init__(
        self,
        record: KernelRecord,
        watch: ServerWatch,
        connection_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(record)
        self.watch = watch
        self._info = dict(connection_info or {})
        self.released = False
        self.note_flags()

    @property
    def connection_info(self) -> dict[str, Any]:
        return dict(self._info)

    def server_id(self) -> str | None:
        return None if self.released else self.watch.id

    def release(self) -> None:
        self.released = True

    def standing_refusal(self, action: Action) -> str | None:
        return None

    def refusal(self, action: Action) -> str | None:
        if self.released:
            return "Its server stopped: kernelmon is looking at the kernel again"
        watch = self.watch
        if watch.status not in _ANSWERING:
            return f"The server {watch.config.name} cannot be asked now ({watch.status_text()})"
        if self.record.execution_state == ExecutionState.DEAD:
            return state_refusal(self.record, action)
        # no "starting" refusal: a server keeps a kernel nobody opened a websocket to
        # "starting" in its model (jupyter_server 2, Enterprise Gateway 3), and answers
        return None

    async def prove(self) -> Proof | None:
        """Look again before acting on the last poll's word (the culler): ``GET
        /api/kernels/<id>`` now, its answer applied to the record (the caller announces what
        changed and judges the kernel again). None when the server answered; a refusal
        saying why when it cannot be asked or no longer knows the kernel: then nothing is
        done to it."""
        watch = self.watch
        name = watch.config.name
        if self.released:
            return refused("its server stopped, so the server cannot be asked about it")
        try:
            model = await watch.client.get_kernel(self.record.id)
        except ServerError as error:
            if error.kind == ServerStatus.NOT_FOUND:
                return refused(f"the server {name} no longer knows it")
            return refused(
                f"the server {name} could not be asked about it now: {error.sentence}",
                refuted=False,
            )
        if assign(self.record, kernel_state(model)):
            watch.row_is_news(self.record.id)
        return None

    async def interrupt(self) -> None:
        try:
            await self.watch.client.interrupt(self.record.id)
        except ServerError as error:
            raise KernelmonError(error.sentence) from None
        self.watch.poll_soon()

    async def restart(self, timeout: float) -> None:
        try:
            model = await self.watch.client.restart(self.record.id, timeout=timeout)
        except ServerError as error:
            if error.kind == ServerStatus.TIMEOUT:
                raise RestartTimeout(
                    f"Kernel {self.record.id} did not answer within {timeout:g} s of its "
                    f"restart on {self.watch.config.name}: {error.sentence}"
                ) from None
            raise RestartFailed(error.sentence) from None
        finally:
            self.watch.row_is_news(self.record.id)
            self.watch.poll_soon()
        self.record.execution_state = ExecutionState.IDLE
        if model.last_activity is not None:
            self.record.last_activity = model.last_activity

    async def shutdown(self, now: bool = False) -> None:
        try:
            await self.watch.client.shutdown(self.record.id)
        except ServerError as error:
            if error.kind != ServerStatus.NOT_FOUND:
                raise KernelmonError(error.sentence) from None
            # the server no longer knows it: gone already, which is what was asked
        self.watch.ended[self.record.id] = self.watch.polls

    async def is_alive(self) -> bool:
        return self.record.execution_state != ExecutionState.DEAD
