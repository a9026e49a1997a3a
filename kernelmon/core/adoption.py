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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psutil

from .backends.unadopted import UnadoptedKernel
from .errors import KernelSpecNotFound
from .events import ActionFailed, KernelAdded, KernelAdopted
from .machine.discovery import (
    kernel_candidates,
    parse_connection_info,
    process_table,
    read_runtime_json,
)
from .machine.identity import Proof, find_kernel_pid, prove_kernel, start_ticks
from .machine.kernel_files import remove_kernel_files
from .map_base import KERNEL_ID, Entry, MapBase
from .protocol.channels import heartbeat
from .records import ExecutionState, KernelRecord
from .threads import run_in_thread

logger = logging.getLogger(__name__)

#: How long restore() waits for an adopted kernel to answer before calling it unresponsive.
ADOPT_TIMEOUT = 5.0
#: How long restore() waits for a process that may still be starting (the recorded one, or
#: one launched after a recorded intent) to hold the kernel's sockets.
PROOF_WAIT = 10.0


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class SavedKernel:
    """A kernel record of a state file, with every optional field checked (a field of the
    wrong type counts as missing)."""

    id: str
    connection_file: str
    kernel_name: str | None = None
    display_name: str | None = None
    #: the recorded process (None while a launch was only intended)
    pid: int | None = None
    #: its start time in boot clock ticks (None in records of older kernelmons)
    ticks: int | None = None
    #: boot ticks when a launch was recorded and not confirmed (None if it was)
    launching: int | None = None
    #: kernelmon's launch made the kernel the leader of its own process group
    own_group: bool = False
    cwd: str | None = None
    started: datetime | None = None
    restarts: int = 0
    #: the record's copy of the connection file's facts (no key)
    connection: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, saved: dict[str, Any]) -> SavedKernel:
        """``ValueError`` if the record names no kernel id and connection file."""
        kid, conn_file = saved.get("id"), saved.get("connection_file")
        if not isinstance(kid, str) or not KERNEL_ID.match(kid):
            raise ValueError("it has no valid kernel id")
        if not isinstance(conn_file, str) or not os.path.isabs(conn_file) or "\0" in conn_file:
            raise ValueError("it has no valid connection file path")
        if os.path.basename(conn_file) != f"kernel-{kid}.json":
            # kernelmon names its kernels' files so; anything else is not one of its records
            raise ValueError("its connection file is not named after its kernel id")
        pid = _int(saved.get("pid"))
        pid = pid if pid is not None and pid > 0 else None
        started = None
        with contextlib.suppress(TypeError, ValueError):
            started = datetime.fromisoformat(str(saved.get("started")).replace("Z", "+00:00"))
        if started is not None and started.tzinfo is None:
            started = None
        connection = saved.get("connection")
        launching = _int(saved.get("launching"))
        restarts = _int(saved.get("restarts"))
        return cls(
            id=kid,
            connection_file=conn_file,
            kernel_name=_str(saved.get("kernel_name")),
            display_name=_str(saved.get("display_name")),
            pid=pid,
            ticks=_int(saved.get("pid_started_ticks")) if pid is not None else None,
            launching=launching if launching is not None or pid is not None else 0,
            own_group=pid is not None and _int(saved.get("pgid")) == pid,
            cwd=_str(saved.get("cwd")),
            started=started,
            restarts=max(restarts or 0, 0),
            connection=connection if isinstance(connection, dict) else None,
            raw=saved,
        )


def read_connection_file(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """(connection info, None) if ``path`` is a connection file kernelmon can use for one of
    its own kernels, else (what could be read of it, what is wrong). Never blocks on a FIFO
    or a huge file (``discovery.read_runtime_json``)."""
    try:
        info = read_runtime_json(path)
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    except ValueError as e:
        return None, str(e)
    if not isinstance(info, dict):
        return None, "is not a JSON object"
    try:
        facts = parse_connection_info(info)
    except ValueError as e:
        return info, f"is not usable: {e}"
    if not facts.has_key:
        return info, "has an empty key (messages would not be signed)"
    if facts.transport == "ipc" and os.path.dirname(facts.ip) != os.path.dirname(path):
        return info, "names IPC sockets outside its own folder"
    if not isinstance(info.get("kernel_name", ""), str):
        return info, "has a 'kernel_name' that is not text"
    return info, None


def processes_naming(connection_file: str, since_ticks: int | None) -> list[int]:
    """PIDs of the processes whose arguments name ``connection_file`` (discovery's
    candidates), started at or after boot tick ``since_ticks`` if given: candidates, never
    a proof (blocking: run it in a thread)."""
    found = kernel_candidates(process_table().values(), [connection_file])
    pids = [p.pid for p in found.get(connection_file, [])]
    if since_ticks is None:
        return pids
    return [pid for pid in pids if (start_ticks(pid) or -1) >= since_ticks - 1]


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` runs (not a zombie), and is the process started at ``ticks``."""
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except (psutil.Error, ValueError):
        return False
    return ticks is None or start_ticks(pid) == ticks


class AdoptionMixin(MapBase):
    """``restore`` of ``KernelMap``."""

    async def restore(self) -> list[str]:
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
        state = self.state_file
        lock = state.adoption_lock()
        try:
            await lock.acquire()
        except OSError as e:
            state.error = f"Could not lock kernelmon's state folder {state.folder}: {e}"
            logger.error("%s", state.error)
            return []
        adopted: list[str] = []
        try:
            files = await run_in_thread(state.others)
            live = await run_in_thread(state.live_kernels) if files else {}
            for path, kernels in files:
                for saved in kernels:
                    kid = await self._adopt_safely(saved, live)
                    if kid is not None:
                        adopted.append(kid)
                if self._save_state() is None:  # its records are in ours now
                    with contextlib.suppress(OSError):
                        path.unlink()
        finally:
            lock.release()
        if adopted:
            self._ensure_culler()
            self._ensure_state_check()
        return adopted

    async def _adopt_safely(self, saved: dict[str, Any], live: dict[str, int]) -> str | None:
        try:
            record = SavedKernel.parse(saved)
        except ValueError as e:
            logger.warning("Ignoring a kernel record of an earlier run (%s): %r", e, saved)
            return None
        if record.id in self._kernels:
            return None
        owner = live.get(record.id) or live.get(record.connection_file)
        if owner is not None:
            logger.info("Kernel %s belongs to the kernelmon process %s", record.id, owner)
            return None
        try:
            return await self._adopt(record)
        except Exception as e:
            logger.exception("Could not adopt kernel %s", record.id)
            if record.id in self._kernels or record.pid is None:
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
            if saved.pid is not None and saved.ticks and _alive(saved.pid, saved.ticks):
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
            spec = self._resolve_spec(name)
        except KernelSpecNotFound:
            self._unadoptable(saved, pid, f"its kernel spec {name!r} is not installed", proof_info)
            return None
        record = KernelRecord(id=kid, name=name, display_name=spec.display_name, cwd=saved.cwd)
        if saved.started is not None:
            record.started = saved.started
        record.restarts = saved.restarts
        backend = self._new_backend(record)
        timeout = min(self._settings.kernel_info_timeout, ADOPT_TIMEOUT)
        own_group = saved.own_group or (saved.launching is not None and _leads_group(pid))
        try:
            answered = await backend.adopt(conn_file, info, pid, own_group, timeout)
        except Exception as e:
            logger.warning("Kernel %s (pid %s) could not be adopted: %s", kid, pid, e)
            backend.close()
            self._unadoptable(saved, pid, f"adoption failed: {e}", proof_info)
            return None
        entry = Entry(record, backend)
        self._kernels[kid] = entry
        self._emit(KernelAdded(kid, record.to_model()))
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
        self._changed(record, {"execution_state", "reason", "pid"}, None)
        logger.info("Adopted kernel %s (%s, pid %s) from an earlier run", kid, name, pid)
        self._emit(KernelAdopted(kid, answered=answered))
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
            starting = (
                saved.pid is not None and saved.ticks is not None and _alive(saved.pid, saved.ticks)
            ) or (saved.launching is not None and bool(candidates))
            if not starting or loop.time() >= deadline:
                return None, refusal
            await asyncio.sleep(0.2)

    def _unadoptable(
        self, saved: SavedKernel, pid: int, why: str, proof_info: dict[str, Any] | None
    ) -> None:
        """List a kernel that runs but cannot be adopted: state ``problem``, the reason, a
        shutdown that kills it after proving it; its record is kept."""
        kid = saved.id
        record = KernelRecord(
            id=kid,
            name=saved.kernel_name or "",
            display_name=saved.display_name or saved.kernel_name or "",
            cwd=saved.cwd,
        )
        if saved.started is not None:
            record.started = saved.started
        record.pid = pid
        record.connection_file = saved.connection_file
        record.execution_state = ExecutionState.PROBLEM
        record.reason = (
            f"kernelmon could not adopt it: {why}. It runs (pid {pid}); shut it down to kill it"
        )
        ticks = start_ticks(pid)
        own_group = saved.own_group or (saved.launching is not None and _leads_group(pid))
        backend = UnadoptedKernel(
            record, saved.raw, proof_info or {}, ticks, own_group, self._shutdown_wait
        )
        self._kernels[kid] = Entry(record, backend)
        self._emit(KernelAdded(kid, record.to_model()))
        self._save_state()
        logger.warning("Kernel %s of an earlier run %s", kid, record.reason)
        self._emit(ActionFailed(kid, action="adopt", message=record.reason))


def _leads_group(pid: int) -> bool:
    """Whether ``pid`` leads its own process group (as kernelmon's launch makes it)."""
    try:
        return hasattr(os, "getpgid") and os.getpgid(pid) == pid
    except OSError:
        return False
