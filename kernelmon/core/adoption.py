"""Adopting the kernels of an earlier kernelmon run that crashed, was killed or left them.

A state record is a claim, not a proof: whoever can write the state folder can write
anything there. So a record is only a hint of where to look. A kernel is adopted only when
a process is proven, at that moment, to be the kernel of the record's connection file
(``identity.prove_kernel``: it holds the kernel's listening sockets and is the root among
their holders; its start time in boot ticks is the recorded one where the record has it).
Nothing a record names is signalled or deleted on the record's word: the process group is
used only when kernelmon's own launch made the proven kernel its leader, and files are
deleted only as ``identity``'s deletion rule allows.

Adoption is all or nothing: a proven kernel is either adopted and working, or listed with
state ``problem`` and the reason (its shutdown kills it, after proving it again), and its
record stays in the state file until then. Adoption is serialized across processes by a
lock on the state folder, so two ``restore()`` calls never both adopt one kernel.

``restore`` is a function of the registry (where adopted kernels go) and the state keeper
(the state file it reads and writes); the records are parsed by saved_kernels.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any, Protocol

from .backends.base import KernelBackend
from .errors import KernelSpecNotFound
from .events import ActionFailed, KernelAdopted
from .keeper import StateKeeper
from .machine.identity import Proof, find_kernel_pid, prove_kernel, same_process, start_ticks
from .machine.kernel_files import remove_kernel_files
from .protocol.channels import heartbeat
from .records import ExecutionState, KernelRecord
from .registry import Announcing, Entry
from .saved_kernels import (
    SavedKernel,
    leads_group,
    processes_naming,
    read_connection_file,
)
from .saved_kernels import text_or_none as _str
from .threads import run_in_thread

logger = logging.getLogger(__name__)

#: How long restore() waits for an adopted kernel to answer before calling it unresponsive.
ADOPT_TIMEOUT = 5.0
#: How long restore() waits for a process that may still be starting (the recorded one, or
#: one launched after a recorded intent) to hold the kernel's sockets.
PROOF_WAIT = 10.0


class AdoptionRegistry(Announcing, Protocol):
    """What adoption reads of the registry and changes in it."""

    def new_record(
        self, kernel_id: str, name: str, display_name: str = "", cwd: str | None = None
    ) -> KernelRecord: ...
    def __contains__(self, kernel_id: object) -> bool: ...
    def add(self, entry: Entry) -> None: ...
    def changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None: ...


class Backends(Protocol):
    """How adoption makes backends and finds kernel specs (the map's)."""

    def local(self, record: KernelRecord) -> KernelBackend: ...
    def unadopted(self, record: KernelRecord, *args: Any) -> KernelBackend: ...
    def resolve_spec(self, kernel_name: str) -> Any: ...


async def restore(
    registry: AdoptionRegistry, keeper: StateKeeper, backends: Backends, shutdown_wait: float
) -> list[str]:
    """Adopt the kernels of earlier kernelmon runs that crashed or were killed.

    Kernels whose process is proven to still run come back under their id, name and
    folder, watched again, and can be restarted, interrupted and shut down as before;
    one that runs but does not answer is listed as ``unresponsive`` (shut it down to
    kill it); one that runs but cannot be adopted is listed as ``problem`` with the
    reason (shut it down to kill it). Records of kernels that are gone are dropped
    and their files removed as far as the deletion rule allows. State files of other
    kernelmons that still run are left alone, and so are unreadable ones (see
    ``state_file.problems``). Returns the adopted kernels' ids.
    """
    state = keeper.state_file
    lock = state.adoption_lock()
    try:
        await lock.acquire()
    except OSError as e:
        state.error = f"Could not lock kernelmon's state folder {state.folder}: {e}"
        logger.error("%s", state.error)
        return []
    adoption = _Adoption(registry, keeper, backends, shutdown_wait)
    adopted: list[str] = []
    try:
        files = await run_in_thread(state.others)
        live = await run_in_thread(state.live_kernels) if files else {}
        for path, kernels in files:
            for saved in kernels:
                kid = await adoption.adopt_safely(saved, live)
                if kid is not None:
                    adopted.append(kid)
            if keeper.save() is None:  # its records are in ours now
                with contextlib.suppress(OSError):
                    path.unlink()
    finally:
        lock.release()
    return adopted


class _Adoption:
    """One ``restore``: what it adopts goes into the registry, the state file is kept."""

    def __init__(
        self,
        registry: AdoptionRegistry,
        keeper: StateKeeper,
        backends: Backends,
        shutdown_wait: float,
    ) -> None:
        self._registry = registry
        self._keeper = keeper
        self._backends = backends
        self._shutdown_wait = shutdown_wait

    async def adopt_safely(self, saved: dict[str, Any], live: dict[str, int]) -> str | None:
        try:
            record = SavedKernel.parse(saved)
        except ValueError as e:
            logger.warning("Ignoring a kernel record of an earlier run (%s): %r", e, saved)
            return None
        if record.id in self._registry:
            return None
        owner = live.get(record.id) or live.get(record.connection_file)
        if owner is not None:
            logger.info("Kernel %s belongs to the kernelmon process %s", record.id, owner)
            return None
        try:
            return await self._adopt(record)
        except Exception as e:
            logger.exception("Could not adopt kernel %s", record.id)
            if record.id in self._registry or record.pid is None:
                return None
            self._unadoptable(record, record.pid, f"adoption failed: {e}", record.connection)
            return None

    async def _adopt(self, saved: SavedKernel) -> str | None:
        kid, conn_file = saved.id, saved.connection_file
        info, problem = await run_in_thread(read_connection_file, conn_file)
        proof_info = info if info is not None and problem is None else saved.connection
        if proof_info is None:
            proof_info = info
        if proof_info is not None:
            proof, refusal = await self._locate(saved, proof_info)
        else:
            proof, refusal = None, f"its connection file {problem}"
        if proof is None:
            if saved.pid is not None and same_process(saved.pid, saved.ticks):
                # the recorded process itself runs on, but nothing proves it is the kernel
                why = f"it cannot be proven to be the kernel ({refusal})"
                self._unadoptable(saved, saved.pid, why, proof_info)
                return None
            logger.info("Kernel %s of an earlier run is gone; cleaning up after it", kid)
            files = await run_in_thread(remove_kernel_files, conn_file, info)
            for path, why in files.kept:
                logger.info("Kept %s: %s", path, why)
            return None
        pid = proof.pid
        assert pid is not None
        assert proof_info is not None
        if problem is not None or info is None:
            self._unadoptable(saved, pid, f"its connection file {problem}", proof_info)
            return None
        name = saved.kernel_name or _str(info.get("kernel_name"))
        if name is None:
            self._unadoptable(saved, pid, "its kernel spec is not known", proof_info)
            return None
        try:
            spec = self._backends.resolve_spec(name)
        except KernelSpecNotFound:
            self._unadoptable(saved, pid, f"its kernel spec {name!r} is not installed", proof_info)
            return None
        record = self._registry.new_record(kid, name, spec.display_name, saved.cwd)
        if saved.started is not None:
            record.started = saved.started
        record.restarts = saved.restarts
        backend = self._backends.local(record)
        timeout = min(self._registry.settings.kernel_info_timeout, ADOPT_TIMEOUT)
        own_group = saved.own_group or (saved.launching is not None and leads_group(pid))
        try:
            answered = await backend.adopt(conn_file, info, pid, own_group, timeout)
        except Exception as e:
            logger.warning("Kernel %s (pid %s) could not be adopted: %s", kid, pid, e)
            backend.close()
            self._unadoptable(saved, pid, f"adoption failed: {e}", proof_info)
            return None
        entry = Entry(record, backend)
        self._registry.add(entry)
        if answered:
            if record.execution_state == ExecutionState.STARTING:
                record.execution_state = ExecutionState.IDLE
        elif await heartbeat(backend.connection_info):
            # Its heartbeat thread echoes, its shell does not answer: it is running code
            # (the queued probe marks it idle once that code is done).
            answered = True
            record.execution_state = ExecutionState.BUSY
            record.reason = None
        else:
            record.execution_state = ExecutionState.UNRESPONSIVE
            record.reason = (
                f"it runs (pid {pid}) but did not answer within {timeout:g} s; "
                "shut it down to kill it"
            )
        self._registry.changed(record, {"execution_state", "reason", "pid"}, None)
        logger.info("Adopted kernel %s (%s, pid %s) from an earlier run", kid, name, pid)
        self._registry.emit(KernelAdopted(kid, answered=answered))
        return kid

    async def _locate(self, saved: SavedKernel, info: dict[str, Any]) -> tuple[Proof | None, str]:
        """(the proof for the process that is the record's kernel, "") or (None, why none
        is).

        The recorded process is tried first (with its start ticks), then any process whose
        arguments name the connection file (one launched after a recorded intent, if the
        launch was not confirmed). A process that may still be starting (the recorded one,
        or one launched after the intent) is given ``PROOF_WAIT`` to bind its sockets.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROOF_WAIT
        while True:
            tried: list[int] = []
            refusal = "no process runs it"
            if saved.pid is not None and saved.launching is None:
                proof = await run_in_thread(
                    prove_kernel, saved.pid, info, started_ticks=saved.ticks
                )
                if proof.ok:
                    return proof, ""
                refusal = proof.reason or refusal
                tried.append(saved.pid)
            since = saved.launching if saved.launching else None
            candidates = await run_in_thread(processes_naming, saved.connection_file, since)
            others = [pid for pid in candidates if pid not in tried]
            if others:
                proof = await run_in_thread(find_kernel_pid, info, others)
                if proof.ok:
                    return proof, ""
            starting = (saved.pid is not None and same_process(saved.pid, saved.ticks)) or (
                saved.launching is not None and bool(candidates)
            )
            if not starting or loop.time() >= deadline:
                return None, refusal
            await asyncio.sleep(0.2)

    def _unadoptable(
        self, saved: SavedKernel, pid: int, why: str, proof_info: dict[str, Any] | None
    ) -> None:
        """List a kernel that runs but cannot be adopted: state ``problem``, the reason, a
        shutdown that kills it after proving it; its record is kept."""
        kid = saved.id
        name = saved.kernel_name or ""
        record = self._registry.new_record(kid, name, saved.display_name or name, saved.cwd)
        if saved.started is not None:
            record.started = saved.started
        record.pid = pid
        record.connection_file = saved.connection_file
        record.execution_state = ExecutionState.PROBLEM
        record.reason = (
            f"kernelmon could not adopt it: {why}. It runs (pid {pid}); shut it down to kill it"
        )
        ticks = start_ticks(pid)
        own_group = saved.own_group or (saved.launching is not None and leads_group(pid))
        backend = self._backends.unadopted(
            record, saved.raw, proof_info or {}, ticks, own_group, self._shutdown_wait
        )
        self._registry.add(Entry(record, backend))
        self._keeper.save()
        logger.warning("Kernel %s of an earlier run %s", kid, record.reason)
        self._registry.emit(ActionFailed(kid, action="adopt", message=record.reason))
