"""Python's garbage collection on the GUI thread only.

The cyclic garbage collector runs in whichever thread happens to allocate when a threshold
is crossed. In kernelmon that is often a worker of ``core.threads`` (process-table scans
allocate a lot), and a Qt object in the garbage (a widget's timer, a bridge left by a closed
window) is then destroyed on that worker: Qt warns "Timers cannot be stopped from another
thread" and may crash. So while the app runs, automatic collection is off and a timer on the
GUI thread collects with the same generation thresholds (the approach of calibre's
``GarbageCollector``, which met the same crash with PyQt).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the thresholds are looked at [ms].
INTERVAL_MS = 500


class MainThreadCollector(QObject):
    """Turns automatic collection off until ``stop()`` and collects on this thread."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> int:
        """Collect the generations whose thresholds are crossed; returns what was freed."""
        return collect_due()

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


def collect_due() -> int:
    """One step of what automatic collection would have done by now."""
    t0, t1, t2 = gc.get_threshold()
    n0, n1, n2 = gc.get_count()
    freed = 0
    if n0 > t0:
        freed += gc.collect(0)
        if n1 > t1:
            freed += gc.collect(1)
            if n2 > t2:
                freed += gc.collect(2)
    return freed
