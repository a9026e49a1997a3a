"""What every part of the kernel map shares: the entries, reading, events, backends, state.

``KernelMap`` (kernel_map.py) is assembled from this base and one mixin per concern:
frontends and buffering (frontends.py), adoption after a crash (adoption.py) and the cull
pass (cull_pass.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_runtime_dir

from .backends.base import KernelBackend
from .backends.local import LocalKernel
from .culler import cull_eta
from .errors import (
    KernelNotFound,
    KernelSpecNotFound,
    KernelStartFailed,
)
from .events import (
    EventHub,
    KernelChanged,
    KernelEvent,
    StateProblem,
    Subscriber,
)
from .machine.kernel_files import make_private
from .protocol.channels import SessionChannels
from .protocol.connection import KernelConnection
from .records import KernelRecord
from .settings import Settings
from .state import ENV_STATE_DIR, StateFile, default_state_dir
from .threads import run_in_thread
from .workdir import cwd_for_path

logger = logging.getLogger(__name__)

#: Fields whose change is sent to subscribers at once; others are coalesced.
URGENT_FIELDS = frozenset({"execution_state", "connections", "reason", "pid", "restarts"})
KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(eq=False)
class Entry:
    """A kernel in the map: its facts, its backend and the map's bookkeeping for it."""

    record: KernelRecord
    backend: KernelBackend
    ready: asyncio.Future[None] | None = None
    connections: list[KernelConnection] = field(default_factory=list)
    buffered: SessionChannels | None = None
    shutdown_task: asyncio.Task[None] | None = None
    #: execute_requests sent through kernelmon's connections and not answered yet
    executing: set[str] = field(default_factory=set)


#: How long a check of the state folder may take before it is a problem (a hung network
#: folder); the check goes on in its thread and its result counts when it comes.
STATE_CHECK_TIMEOUT = 15.0


class MapBase:
    """State and helpers shared by the parts of ``KernelMap`` (set up by its __init__)."""

    #: Coalescing period for activity-only change events, in seconds.
    change_interval = 0.1
    #: How often kernels shown busy are checked (see ``LocalKernel.confirm_idle_soon``).
    state_check_interval = 0.2

    _settings: Settings
    _clock: Callable[[], datetime]
    _restart_poll: float
    _restart_limit: int
    _shutdown_wait: float
    _connection_dir: str | None
    _ksm: KernelSpecManager | None
    _transport: str | None
    _state_dir: str | os.PathLike[str] | None
    _state: StateFile | None
    _kernels: dict[str, Entry]
    _hub: EventHub
    _pending_changes: dict[str, set[str]]
    _flush_handle: asyncio.TimerHandle | None
    _culler_task: asyncio.Task[None] | None
    _state_check: asyncio.TimerHandle | None
    next_cull: datetime | None
    last_kernel_activity: datetime
    default_kernel_name: str
    #: The problems last told subscribers (``StateProblem``), and where kernel logs go
    #: instead of the state folder when they cannot go there (in words), or None.
    _told_problems: str = ""
    _log_fallback: str | None = None
    #: The state folder check running now (see ``check_state_folder``).
    _folder_check: asyncio.Future[None] | None = None

    # implemented by KernelMap and the cull pass
    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        raise NotImplementedError

    def _ensure_culler(self) -> None:
        raise NotImplementedError

    def _state_changed(self, record: KernelRecord) -> None:
        """A kernel's execution state changed (the monitoring part watches for jobs)."""

    # -- reading ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def kernel_spec_manager(self) -> KernelSpecManager:
        if self._ksm is None:
            self._ksm = KernelSpecManager()
        return self._ksm

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._kernels

    def __len__(self) -> int:
        return len(self._kernels)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._kernels))

    def _get(self, kernel_id: str) -> Entry:
        try:
            return self._kernels[kernel_id]
        except (KeyError, TypeError):
            raise KernelNotFound(str(kernel_id)) from None

    def record(self, kernel_id: str) -> KernelRecord:
        """The live record of a kernel (read it, do not change it)."""
        return self._get(kernel_id).record

    def backend(self, kernel_id: str) -> KernelBackend:
        return self._get(kernel_id).backend

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """A JSON-safe dict describing the kernel."""
        return self._get(kernel_id).record.to_model()

    def list_kernels(self) -> list[dict[str, Any]]:
        return [e.record.to_model() for e in self._kernels.values()]

    def cull_eta(self, kernel_id: str) -> float | None:
        """Seconds until the kernel becomes cullable (see ``culler.cull_eta``)."""
        return cull_eta(self._get(kernel_id).record, self._settings, self._clock())

    def kernel_specs(self) -> dict[str, dict[str, Any]]:
        """Installed kernel specs: name -> display_name, language, resource_dir."""
        specs = self.kernel_spec_manager.get_all_specs()
        return {
            name: {
                "name": name,
                "display_name": s["spec"].get("display_name", name),
                "language": s["spec"].get("language", ""),
                "resource_dir": s.get("resource_dir", ""),
            }
            for name, s in specs.items()
        }

    def cwd_for_path(self, path: str | None) -> str:
        """The working folder under ``root_dir`` for API ``path`` (``PathOutsideRoot``)."""
        return cwd_for_path(self._settings.root_dir, path)

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every ``KernelEvent``; returns an unsubscribe."""
        return self._hub.subscribe(callback)

    def _emit(self, event: KernelEvent) -> None:
        self._hub.emit(event)

    def _changed(self, record: KernelRecord, fields: set[str], now: datetime | None) -> None:
        if now is not None and now > self.last_kernel_activity:
            self.last_kernel_activity = now
        if record.id not in self._kernels:
            return
        if "pid" in fields or "restarts" in fields:
            self._save_state()
        if "execution_state" in fields:
            self._state_changed(record)
        pending = self._pending_changes.setdefault(record.id, set())
        pending.update(fields)
        if not URGENT_FIELDS.isdisjoint(fields):
            self._flush_one(record.id)
        elif self._flush_handle is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(self.change_interval, self._flush_changes)

    def _flush_one(self, kernel_id: str) -> None:
        fields = self._pending_changes.pop(kernel_id, None)
        entry = self._kernels.get(kernel_id)
        if fields and entry is not None:
            self._emit(KernelChanged(kernel_id, frozenset(fields), entry.record.to_model()))

    def _flush_changes(self) -> None:
        self._flush_handle = None
        for kernel_id in list(self._pending_changes):
            self._flush_one(kernel_id)

    # -- backends ---------------------------------------------------------------------------

    def _resolve_spec(self, kernel_name: str) -> Any:
        try:
            return self.kernel_spec_manager.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            available = list(self.kernel_spec_manager.find_kernel_specs())
            raise KernelSpecNotFound(kernel_name, available) from None

    def _new_backend(self, record: KernelRecord) -> LocalKernel:
        conn_dir = self._connection_dir or jupyter_runtime_dir()
        try:  # private even when the folder already existed with group or other access
            make_private(conn_dir)
        except OSError as e:
            raise KernelStartFailed(
                f"The connection folder {conn_dir} cannot be made private: {e.strerror or e}"
            ) from e
        return LocalKernel(
            record,
            kernel_spec_manager=self.kernel_spec_manager,
            connection_dir=conn_dir,
            on_change=self._changed,
            emit=self._emit,
            restart_poll=self._restart_poll,
            restart_limit=self._restart_limit,
            shutdown_wait=self._shutdown_wait,
            transport=self._transport,
            log_dir=self._kernel_log_dir(conn_dir),
            save_state=self._save_state,
            kernel_info_timeout=lambda: self._settings.kernel_info_timeout,
            untracked=lambda: self._settings.untracked_message_types,
        )

    # -- keeping shown states true ----------------------------------------------------------

    def _ensure_state_check(self) -> None:
        if self._state_check is None:
            loop = asyncio.get_running_loop()
            self._state_check = loop.call_later(self.state_check_interval, self._check_states)

    def _check_states(self) -> None:
        """Queue an idle check behind busy kernels' code (see LocalKernel.confirm_idle_soon)."""
        self._state_check = None
        if not self._kernels:
            return
        for entry in self._kernels.values():
            if isinstance(entry.backend, LocalKernel):
                entry.backend.confirm_idle_soon()
        self._ensure_state_check()

    # -- the crash-safe record --------------------------------------------------------------

    @property
    def state_file(self) -> StateFile:
        """This map's record of its kernels (see ``state``)."""
        if self._state is None:
            folder = Path(self._state_dir) if self._state_dir else default_state_dir()
            self._state = StateFile(folder)
        return self._state

    def _state_records(self) -> list[dict[str, Any]]:
        """What the state file keeps now: every backend's record (a kernel being launched
        too, and one that could not be adopted)."""
        records = []
        for e in self._kernels.values():
            state = getattr(e.backend, "state", None)
            saved = state() if state is not None else None
            if isinstance(saved, dict):
                records.append(saved)
        return records

    def _save_state(self, released: bool = False) -> str | None:
        """Write the state file now; returns the error if it could not be written."""
        self.state_file.save(self._state_records(), released=released)
        self._tell_problems()
        return self.state_file.error

    @property
    def problems(self) -> list[str]:
        """What is wrong with kernelmon's record of its kernels now, in sentences (empty
        when nothing is); sent as ``StateProblem`` events when it changes."""
        found = []
        if self.state_file.error:
            found.append(
                f"{self.state_file.error}. The kernels kernelmon starts are recorded there so "
                "that a crash of kernelmon never leaves them running unmanaged, so it starts "
                "no kernels until it can write there (watching kernels goes on). Make the "
                f"folder writable, or set {ENV_STATE_DIR} to a folder you can write to and "
                "start kernelmon again."
            )
        if self._log_fallback:
            found.append(self._log_fallback)
        return found

    async def check_state_folder(self) -> list[str]:
        """Look at the state folder now: the records and one more are written to a probe
        file (``StateFile.check``) in a thread, so a hung folder never stops the loop; when
        that works but the last save failed, the records are saved again (only a save that
        works ends its problem). Returns ``problems``. Checks asked for while one runs share
        it; one that takes longer than ``STATE_CHECK_TIMEOUT`` is a problem itself."""
        if self._folder_check is None or self._folder_check.done():
            self._folder_check = asyncio.ensure_future(self._check_state_folder())
        try:
            await asyncio.wait_for(asyncio.shield(self._folder_check), STATE_CHECK_TIMEOUT)
        except TimeoutError:
            self.state_file.error = (
                f"kernelmon's state folder {self.state_file.folder} did not answer within "
                f"{STATE_CHECK_TIMEOUT:g} s"
            )
            self._tell_problems()
        return self.problems

    async def _check_state_folder(self) -> None:
        state = self.state_file
        problem = await run_in_thread(state.check, self._state_records())
        if problem is None and state.error:
            self._save_state()
        self._tell_problems()

    def _tell_problems(self) -> None:
        text = " ".join(self.problems)
        if text != self._told_problems:
            self._told_problems = text
            self._emit(StateProblem("", text=text))

    async def _ensure_recordable(self) -> None:
        """``KernelStartFailed`` unless a kernel started now can be recorded."""
        if await self.check_state_folder() and self.state_file.error:
            raise KernelStartFailed(self.problems[0])

    def _ensure_recorded(self) -> None:
        """``KernelStartFailed`` if recording a kernel just started failed."""
        if self.state_file.error:
            self._tell_problems()
            raise KernelStartFailed(self.problems[0])

    def _kernel_log_dir(self, fallback: str) -> str:
        """The state folder's ``kernel-logs``, or ``fallback`` (said in ``problems``)."""
        folder = self.state_file.folder / "kernel-logs"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._log_fallback = None
            return str(folder)
        except OSError as e:
            self._log_fallback = (
                f"Kernel logs (what a kernel prints) cannot go to {folder} "
                f"({e.strerror or e}); they go to {fallback} instead."
            )
            logger.warning("%s", self._log_fallback)
            return fallback
        finally:
            self._tell_problems()
