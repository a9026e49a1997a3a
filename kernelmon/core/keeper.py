"""The state keeper: this map's crash-safe record of its kernels (``state.StateFile``) and
what is wrong with it, told to subscribers as ``StateProblem`` events.

It owns the state file, the problems last told and where kernel logs go. It writes the file
when the map asks (a kernel added, removed or released) and, as a change step of the
registry, when a kernel's process changes (``pid`` or ``restarts``): every backend says what
of it is kept (``KernelBackend.persisted_state``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .errors import KernelStartFailed
from .events import KernelEvent, StateProblem
from .records import KernelRecord
from .registry import Entry
from .state import ENV_STATE_DIR, StateFile, default_state_dir
from .threads import run_in_thread

logger = logging.getLogger(__name__)

#: How long a check of the state folder may take before it is a problem (a hung network
#: folder); the check goes on in its thread and its result counts when it comes.
STATE_CHECK_TIMEOUT = 15.0
#: A change of these fields is written to the state file at once.
RECORDED_FIELDS = frozenset({"pid", "restarts"})


class KeeperRegistry(Protocol):
    """What the state keeper reads of the registry."""

    def __iter__(self) -> Iterator[Entry]: ...
    def emit(self, event: KernelEvent) -> None: ...


class StateKeeper:
    """The state file of one map, and its problems (see the module)."""

    def __init__(
        self, registry: KeeperRegistry, folder: str | os.PathLike[str] | None = None
    ) -> None:
        self._registry = registry
        self._folder = folder
        self._state: StateFile | None = None
        #: The problems last told subscribers (``StateProblem``).
        self._told_problems = ""
        #: Where kernel logs go instead of the state folder when they cannot go there
        #: (in words), or None.
        self._log_fallback: str | None = None
        #: The state folder check running now (see ``check_folder``).
        self._folder_check: asyncio.Future[None] | None = None

    @property
    def state_file(self) -> StateFile:
        """This map's record of its kernels (see ``state``)."""
        if self._state is None:
            self._state = StateFile(default_state_dir(self._folder))
        return self._state

    def records(self) -> list[dict[str, Any]]:
        """What the state file keeps now: every backend's record (a kernel being launched
        too, and one that could not be adopted)."""
        return [
            saved for e in self._registry if isinstance(saved := e.backend.persisted_state(), dict)
        ]

    def save(self, released: bool = False) -> str | None:
        """Write the state file now; returns the error if it could not be written."""
        self.state_file.save(self.records(), released=released)
        self.tell_problems()
        return self.state_file.error

    def on_change(self, record: KernelRecord, fields: frozenset[str]) -> None:
        """Change step: a kernel's process changed, so its record is written at once."""
        if not RECORDED_FIELDS.isdisjoint(fields):
            self.save()

    @property
    def problems(self) -> list[str]:
        """What is wrong with kernelmon's record of its kernels now, in sentences (empty
        when nothing is); sent as ``StateProblem`` events when it changes."""
        found = []
        state = self.state_file
        if state.error:
            found.append(
                f"{state.error}. The kernels kernelmon starts are recorded there so "
                "that a crash of kernelmon never leaves them running unmanaged, so it starts "
                "no kernels until it can write there (watching kernels goes on). Make the "
                f"folder writable, or set {ENV_STATE_DIR} to a folder you can write to and "
                "start kernelmon again."
            )
        if self._log_fallback:
            found.append(self._log_fallback)
        return found

    async def check_folder(self) -> list[str]:
        """Look at the state folder now: the records and one more are written to a probe
        file (``StateFile.check``) in a thread, so a hung folder never stops the loop; when
        that works but the last save failed, the records are saved again (only a save that
        works ends its problem). Returns ``problems``. Checks asked for while one runs share
        it; one that takes longer than ``STATE_CHECK_TIMEOUT`` is a problem itself."""
        if self._folder_check is None or self._folder_check.done():
            self._folder_check = asyncio.ensure_future(self._check_folder())
        try:
            await asyncio.wait_for(asyncio.shield(self._folder_check), STATE_CHECK_TIMEOUT)
        except TimeoutError:
            self.state_file.error = (
                f"kernelmon's state folder {self.state_file.folder} did not answer within "
                f"{STATE_CHECK_TIMEOUT:g} s"
            )
            self.tell_problems()
        return self.problems

    async def _check_folder(self) -> None:
        state = self.state_file
        problem = await run_in_thread(state.check, self.records())
        if problem is None and state.error:
            self.save()
        self.tell_problems()

    def tell_problems(self) -> None:
        text = " ".join(self.problems)
        if text != self._told_problems:
            self._told_problems = text
            self._registry.emit(StateProblem("", text=text))

    async def ensure_recordable(self) -> None:
        """``KernelStartFailed`` unless a kernel started now can be recorded."""
        if await self.check_folder() and self.state_file.error:
            raise KernelStartFailed(self.problems[0])

    def ensure_recorded(self) -> None:
        """``KernelStartFailed`` if recording a kernel just started failed."""
        if self.state_file.error:
            self.tell_problems()
            raise KernelStartFailed(self.problems[0])

    def kernel_log_dir(self, fallback: str) -> str:
        """The state folder's ``kernel-logs``, or ``fallback`` (said in ``problems``)."""
        folder = Path(self.state_file.folder) / "kernel-logs"
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
            self.tell_problems()
