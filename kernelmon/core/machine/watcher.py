"""``RuntimeWatcher``: the runtime folders scanned again and again, the last scan kept.

Each ``rescan`` runs ``discovery.scan_runtime`` in a worker thread (with the process table
it is given, e.g. the sampler's tick's, or else the machine's), keeps the scan and hands it
to ``on_scanned``; new problems (a file that cannot be read) are logged once each and kept
in ``problems``. Who rescans when is its owner's business (the core's ``Discovery``: on
each sampler tick at most every ``interval`` seconds, and on demand).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from ..threads import run_in_thread
from .discovery import Scan, scan_runtime
from .process_table import ProcessFacts
from .runtime_files import ScanProblem, default_folders

logger = logging.getLogger(__name__)


class RuntimeWatcher:
    """Scans ``folders`` on ``rescan`` (see the module). ``owned`` is asked before every
    scan for the kernel ids / connection files kernelmon owns; ``prepare(scan)`` is called
    in the scan's worker thread (for blocking work on what was found, such as reading
    connection files), ``on_scanned(scan)`` on the loop's thread afterwards."""

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]] | None = None,
        *,
        interval: float = 2.0,
        owned: Callable[[], Collection[str]] = frozenset,
        on_scanned: Callable[[Scan], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        self.folders = [Path(f) for f in folders] if folders is not None else default_folders()
        #: the least time between two scans of the owner's periodic work, in seconds
        self.interval = interval
        self._owned = owned
        self.on_scanned = on_scanned
        self.prepare: Callable[[Scan], None] | None = None
        self.scan = Scan()
        self.problems: dict[tuple[str, str], ScanProblem] = {}
        #: when (monotonic seconds) the last scan started, or None before the first
        self.scanned_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def due(self) -> bool:
        """Whether ``interval`` seconds passed since the last scan started."""
        return self.scanned_at is None or time.monotonic() - self.scanned_at >= self.interval

    async def rescan(self, table: Mapping[int, ProcessFacts] | None = None) -> Scan:
        """Scan now (in a worker thread; with ``table`` as the process table if given, else
        reading it after the folders), keep the scan, report it and return it."""
        async with self._lock:
            self.scanned_at = time.monotonic()
            owned = frozenset(self._owned())
            new = await run_in_thread(self._scan, owned, table)
            self.scan = new
            self._report_problems(new.problems)
            if self.on_scanned is not None:
                try:
                    self.on_scanned(new)
                except Exception:
                    logger.exception("A runtime watcher callback failed")
            return new

    def _scan(self, owned: Collection[str], table: Mapping[int, ProcessFacts] | None) -> Scan:
        scan = scan_runtime(self.folders, owned, self.scan, table)
        if self.prepare is not None:
            self.prepare(scan)
        return scan

    def _report_problems(self, problems: list[ScanProblem]) -> None:
        current = {(p.path, p.message): p for p in problems}
        for key, problem in current.items():
            if key not in self.problems:
                logger.info("Runtime file %s %s", problem.path, problem.message)
        self.problems = current
