"""Qt objects in Python's garbage are collected on the GUI thread, never on a worker thread
of the core (where Qt warns "Timers cannot be stopped from another thread" and may crash)."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

from PySide6.QtCore import QObject

from kernelmon.ui.collector import MainThreadCollector, collect_due


class Holder:
    """A Qt object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self
        self.qobject = QObject()


def allocate(n: int = 50_000) -> None:
    """Enough live containers to cross the young generation's threshold many times (the
    count is of containers allocated and not yet freed)."""
    kept = [[] for _ in range(n)]
    del kept


def test_garbage_qt_objects_die_on_the_gui_thread(qapp: Any) -> None:
    enabled = gc.isenabled()
    gc.enable()  # as in a fresh process (the tests' application has its own collector)
    collector = MainThreadCollector(interval_ms=10**6)  # collects only when asked here
    died_on: list[int] = []
    try:
        holder = Holder()
        weakref.finalize(holder, lambda: died_on.append(threading.get_ident()))
        del holder
        worker = threading.Thread(target=allocate)  # as the core's thread pool does
        worker.start()
        worker.join()
        assert died_on == [], "a worker thread collected the Qt object"
        for _ in range(20):
            allocate(5_000)
            collector.check()
            if died_on:
                break
        else:
            gc.collect()  # the thresholds never fired: say so below, on this thread
        assert died_on == [threading.get_ident()]
    finally:
        collector.stop()
        if not enabled:
            gc.disable()


def test_stopping_gives_collection_back(qapp: Any) -> None:
    enabled = gc.isenabled()
    gc.enable()
    try:
        collector = MainThreadCollector()
        assert not gc.isenabled()
        collector.stop()
        assert gc.isenabled()
    finally:
        if not enabled:
            gc.disable()
    assert collect_due() >= 0
