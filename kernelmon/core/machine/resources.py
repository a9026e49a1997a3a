"""CPU and memory of kernel processes and their children, with a short history for sparklines.

``ResourceSampler.sample`` measures every tracked kernel in one batch, in a worker thread
(psutil reads ``/proc``; the loop never waits for it), when its owner asks (the core's
``sampling.Sampler``, once per tick, with the tick's process table): the kernel process and all its
descendants, summed. It keeps a bounded history per kernel (CPU %, RSS, and the IOPub
message rate from a counter the caller passes in, e.g. ``KernelRecord.messages``).

CPU % is the CPU time the tree used between two ticks over the wall time between them (100 %
is one core busy), the way ``top`` counts. CPU time includes the children a process already
waited for (``children_user``/``children_system``), so a short-lived helper process is
counted too. RSS counts shared pages once per process (it overstates a tree's memory); PSS
(shared pages divided among their users) and USS (pages only this process has) come from
``memory_full_info`` where the platform offers it and permissions allow; else they are None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import psutil

from ..threads import run_in_thread
from .process_table import ProcessFacts

logger = logging.getLogger(__name__)

#: Seconds of history kept.
SPAN = 600.0


# -- figures ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process's figures at one moment."""

    pid: int
    cpu_seconds: float  #: user + system, including waited-for children
    rss: int
    pss: int | None = None
    uss: int | None = None
    name: str = ""
    ppid: int | None = None


@dataclass(frozen=True, slots=True)
class TreeUsage:
    """A kernel process and its descendants, summed, at ``at`` (``time.monotonic()``)."""

    pid: int
    started: float | None  #: the kernel process's create time (tells a reused PID apart)
    at: float
    cpu_seconds: float
    rss: int
    pss: int | None
    uss: int | None
    processes: int
    #: each process of the tree (the kernel first), for showing the tree
    members: tuple[ProcessUsage, ...] = ()


#: The record fields a ``KernelUsage`` fills in (the sampler and the command line copy them).
USAGE_FIELDS = frozenset({"cpu_percent", "rss", "pss", "uss", "processes", "message_rate"})


@dataclass(frozen=True, slots=True)
class KernelUsage:
    """What the table shows for one kernel: the latest figures."""

    kernel_id: str
    pid: int
    cpu_percent: float | None  #: None until two samples were taken
    rss: int
    pss: int | None
    uss: int | None
    processes: int
    message_rate: float | None  #: IOPub messages per second, None without a counter
    #: each process of the tree (the kernel first): pid, parent, name, CPU time, memory
    members: tuple[ProcessUsage, ...] = ()


def tree_usage(
    pid: int, at: float, processes: Sequence[ProcessUsage], started: float | None = None
) -> TreeUsage:
    """The sum of a process tree's figures. PSS/USS are None unless known for every process."""
    pss = [p.pss for p in processes]
    uss = [p.uss for p in processes]
    return TreeUsage(
        pid=pid,
        started=started,
        at=at,
        cpu_seconds=math.fsum(p.cpu_seconds for p in processes),
        rss=sum(p.rss for p in processes),
        pss=sum(v for v in pss if v is not None) if None not in pss and pss else None,
        uss=sum(v for v in uss if v is not None) if None not in uss and uss else None,
        processes=len(processes),
        members=tuple(processes),
    )


def cpu_percent(previous: TreeUsage | None, current: TreeUsage) -> float | None:
    """CPU % of a tree between two samples (100 = one core), or None if they do not
    belong together (first sample, another process, no time passed)."""
    if previous is None or (previous.pid, previous.started) != (current.pid, current.started):
        return None
    elapsed = current.at - previous.at
    if elapsed <= 0:
        return None
    # A child that exited without being waited for takes its CPU time with it: never < 0.
    return max(0.0, 100.0 * (current.cpu_seconds - previous.cpu_seconds) / elapsed)


def rate(previous: tuple[float, int] | None, current: tuple[float, int]) -> float | None:
    """Events per second between two (time, count) readings; None if not computable."""
    if previous is None:
        return None
    elapsed = current[0] - previous[0]
    if elapsed <= 0 or current[1] < previous[1]:
        return None
    return (current[1] - previous[1]) / elapsed


class Series:
    """A bounded time series: (time, value) pairs no older than ``span`` seconds before the
    newest, and at most ``maxlen`` of them."""

    __slots__ = ("_points", "span")

    def __init__(self, span: float = SPAN, maxlen: int = 2048) -> None:
        if span <= 0 or maxlen <= 0:
            raise ValueError("a series needs a positive span and length")
        self.span = span
        self._points: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def append(self, at: float, value: float) -> None:
        points = self._points
        if points and at < points[-1][0]:
            raise ValueError("time series points must come in time order")
        points.append((at, value))
        horizon = at - self.span
        while points and points[0][0] < horizon:
            points.popleft()

    def values(self) -> list[float]:
        return [v for _t, v in self._points]

    def points(self) -> list[tuple[float, float]]:
        return list(self._points)

    @property
    def latest(self) -> float | None:
        return self._points[-1][1] if self._points else None

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return iter(self._points)


@dataclass(slots=True)
class KernelHistory:
    """The recent figures of one kernel, for sparklines."""

    cpu: Series
    rss: Series
    messages: Series  #: IOPub messages per second
    last: TreeUsage | None = None
    last_count: tuple[float, int] | None = None
    latest: KernelUsage | None = None

    @classmethod
    def new(cls, span: float) -> KernelHistory:
        return cls(Series(span), Series(span), Series(span))


# -- measuring (blocking; run in a thread) ------------------------------------------------


def _children_map(table: Mapping[int, ProcessFacts] | None) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    if table is not None:
        for pid, facts in table.items():
            if facts.ppid:
                children.setdefault(facts.ppid, []).append(pid)
        return children
    for proc in psutil.process_iter(["ppid"], ad_value=None):
        ppid = proc.info.get("ppid")
        if ppid:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _measure(pid: int, full_memory: bool) -> ProcessUsage | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            t = proc.cpu_times()
            rss = int(proc.memory_info().rss)
            name, ppid = proc.name(), proc.ppid()
        pss = uss = None
        if full_memory:
            with contextlib.suppress(psutil.AccessDenied, AttributeError, NotImplementedError):
                full = proc.memory_full_info()
                pss = getattr(full, "pss", None)
                uss = getattr(full, "uss", None)
    except psutil.Error:
        return None
    cpu = t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    return ProcessUsage(pid, float(cpu), rss, pss, uss, name, ppid)


def measure_trees(
    pids: Iterable[int],
    full_memory: bool = True,
    table: Mapping[int, ProcessFacts] | None = None,
) -> dict[int, TreeUsage | None]:
    """Each process and its descendants, summed (None for a process that is gone). The
    descendants come from ``table`` (a process table read for this tick) or, without one,
    from reading the process table once for the whole batch."""
    pids = list(pids)
    if not pids:
        return {}
    children = _children_map(table)
    result: dict[int, TreeUsage | None] = {}
    for root in pids:
        try:
            started: float | None = float(psutil.Process(root).create_time())
        except psutil.Error:
            result[root] = None
            continue
        usages: list[ProcessUsage] = []
        stack, seen = [root], {root}
        while stack:
            pid = stack.pop()
            usage = _measure(pid, full_memory)
            if usage is None:
                if pid == root:
                    break
                continue
            usages.append(usage)
            for child in children.get(pid, ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        if not usages or usages[0].pid != root:
            result[root] = None
        else:
            result[root] = tree_usage(root, time.monotonic(), usages, started)
    return result


# -- sampling -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Tracked:
    pid: int
    messages: Callable[[], int] | None
    history: KernelHistory


@dataclass(slots=True)
class ResourceSampler:
    """Samples tracked kernels when asked (``sample``); keeps ``span`` seconds of history.

    A kernel whose process is not found is left out of a sample and keeps its history
    until ``untrack``. ``full_memory`` adds PSS/USS (costlier to read).
    """

    span: float = SPAN
    full_memory: bool = True
    _tracked: dict[str, _Tracked] = field(default_factory=dict, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.span <= 0:
            raise ValueError("span must be positive")

    def track(self, kernel_id: str, pid: int, messages: Callable[[], int] | None = None) -> None:
        """Sample ``pid``'s tree for ``kernel_id`` (a new pid keeps the history)."""
        old = self._tracked.get(kernel_id)
        history = old.history if old is not None else KernelHistory.new(self.span)
        self._tracked[kernel_id] = _Tracked(pid, messages, history)

    def untrack(self, kernel_id: str) -> None:
        self._tracked.pop(kernel_id, None)

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self._tracked

    def tracked(self) -> list[str]:
        """The ids of the tracked kernels."""
        return list(self._tracked)

    def pid_of(self, kernel_id: str) -> int | None:
        """The process sampled for ``kernel_id`` (None if it is not tracked)."""
        tracked = self._tracked.get(kernel_id)
        return tracked.pid if tracked is not None else None

    def history(self, kernel_id: str) -> KernelHistory:
        """The kernel's history (``KeyError`` if it is not tracked)."""
        return self._tracked[kernel_id].history

    def latest(self, kernel_id: str) -> KernelUsage | None:
        tracked = self._tracked.get(kernel_id)
        return tracked.history.latest if tracked is not None else None

    async def sample(
        self, table: Mapping[int, ProcessFacts] | None = None
    ) -> dict[str, KernelUsage]:
        """Measure every tracked kernel now (one batch in a worker thread), the process
        trees taken from ``table`` if given. Samples taken at the same time run one after
        the other, so each history stays in time order."""
        async with self._lock:
            return await self._sample(table)

    async def _sample(self, table: Mapping[int, ProcessFacts] | None) -> dict[str, KernelUsage]:
        if not self._tracked:
            return {}
        pids = {t.pid for t in self._tracked.values()}
        trees = await run_in_thread(measure_trees, pids, self.full_memory, table)
        now = time.monotonic()
        result: dict[str, KernelUsage] = {}
        for kernel_id, tracked in list(self._tracked.items()):
            tree = trees.get(tracked.pid)
            if tree is None:
                continue
            history = tracked.history
            cpu = cpu_percent(history.last, tree)
            history.last = tree
            count = None
            msg_rate = None
            if tracked.messages is not None:
                try:
                    count = (now, int(tracked.messages()))
                except Exception:
                    logger.exception("Message counter of kernel %s failed", kernel_id)
                if count is not None:
                    msg_rate = rate(history.last_count, count)
                    history.last_count = count
            if cpu is not None:
                history.cpu.append(tree.at, cpu)
            history.rss.append(tree.at, float(tree.rss))
            if msg_rate is not None:
                history.messages.append(now, msg_rate)
            usage = KernelUsage(
                kernel_id,
                tree.pid,
                cpu,
                tree.rss,
                tree.pss,
                tree.uss,
                tree.processes,
                msg_rate,
                tree.members,
            )
            history.latest = usage
            result[kernel_id] = usage
        return result
