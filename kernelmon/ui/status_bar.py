"""The main window's status bar: kernel counts, last activity, the culler's state.

It reads the bridge's store: the counts are refreshed once per burst of changes
(``kernels_changed``), the clock-bound labels (last activity, the culler's next pass) once
a second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from .bridge import KernelBridge
from .columns import parse_time, relative_time
from .figures import format_duration, origin_of, usage_text


def count_states(models: list[dict[str, Any]]) -> dict[str, int]:
    """How many kernels run, are busy, are dead; how many other applications started
    ("foreign"), and how many are stale connection files (counted in none of the others)."""
    live = [m for m in models if origin_of(m) != "stale"]
    states = [str(m.get("execution_state")) for m in live]
    return {
        "running": sum(s != "dead" for s in states),
        "busy": states.count("busy"),
        "dead": states.count("dead"),
        "unresponsive": states.count("unresponsive"),
        "foreign": sum(origin_of(m) in ("external", "orphan") for m in live),
        "stale": len(models) - len(live),
    }


def counts_text(models: list[dict[str, Any]]) -> str:
    """``2 running · 1 busy · 0 dead ...``; "No kernels" when there are none."""
    if not models:
        return "No kernels"
    c = count_states(models)
    text = f"{c['running']} running · {c['busy']} busy · {c['dead']} dead"
    if c["unresponsive"]:
        text += f" · {c['unresponsive']} unresponsive"
    if c["foreign"]:
        text += f" · {c['foreign']} of other applications"
    if c["stale"]:
        text += f" · {c['stale']} stale"
    return text


def last_activity(models: list[dict[str, Any]]) -> datetime | None:
    """The latest activity of a kernel that has done anything: not of one still starting
    (its "activity" is only its start), nor of a stale connection file (no process), nor of
    one whose activity is not known (``last_activity`` None, with a note)."""
    times = [
        when
        for m in models
        if origin_of(m) != "stale"
        and m.get("execution_state") not in ("starting", None)
        and (when := parse_time(m.get("last_activity"))) is not None
    ]
    return max(times, default=None)


def activity_text(models: list[dict[str, Any]], now: datetime) -> str:
    """What the status bar says of the kernels' latest activity ("" without kernels)."""
    if not models:
        return ""
    latest = last_activity(models)
    if latest is None:
        return "No kernel activity yet"
    return f"Last activity {relative_time(max(0.0, (now - latest).total_seconds()))}"


def culler_text(bridge: KernelBridge, paused: bool, now: datetime) -> str:
    if paused:
        return "Culling paused"
    s = bridge.settings
    if s.cull_idle_timeout <= 0:
        return "Culling off"
    text = f"Culling after {format_duration(s.cull_idle_timeout)} idle"
    next_cull = bridge.next_cull
    if bridge.culling and next_cull is not None:
        left = (next_cull - now).total_seconds()
        text += f" · next pass in {format_duration(left)}"
    return text


class KernelStatusBar(QStatusBar):
    """Permanent labels on the right; ``showMessage`` for what just happened on the left."""

    def __init__(self, bridge: KernelBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._store = bridge.store
        self.paused = False
        self.counts_label = QLabel()
        self.counts_label.setToolTip("Kernels kernelmon runs, how many are busy and dead")
        self.activity_label = QLabel()
        self.activity_label.setToolTip("The latest activity on any kernel")
        self.culler_label = QLabel()
        self.culler_label.setToolTip("The idle culler (change it in the Culler panel)")
        self.usage_label = QLabel()
        self.usage_label.setObjectName("usage_label")
        self.usage_label.setToolTip(
            "CPU and memory of all kernels together (100 % CPU is one core busy)"
        )
        self.usage_label.hide()  # until the first sample
        self.problem_label = QLabel()
        self.problem_label.setObjectName("problem_label")
        self.problem_label.setStyleSheet("color: #b35900; font-weight: bold")
        self.problem_label.hide()  # while nothing is wrong
        self.total_cpu: float | None = None
        self.total_rss = 0
        for label in (
            self.problem_label,
            self.counts_label,
            self.usage_label,
            self.activity_label,
            self.culler_label,
        ):
            self.addPermanentWidget(label)
        #: Shown while a restarted kernel has not answered yet.
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setToolTip("Waiting for a restarted kernel to answer")
        self.progress.hide()
        self.addPermanentWidget(self.progress)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_clock)
        self._timer.start(1000)
        self._store.kernels_changed.connect(self.on_store_kernels_changed)
        self._store.usage_changed.connect(self.set_usage)
        self.refresh()

    def set_problem(self, text: str) -> None:
        """A lasting problem (a warning sign with the text as its tooltip), or "" for none."""
        self.problem_label.setText("⚠ State folder problem")
        self.problem_label.setToolTip(text)
        self.problem_label.setVisible(bool(text))

    def set_usage(self, total_cpu: float | None, total_rss: int) -> None:
        """The totals of the latest resource sample."""
        self.total_cpu = total_cpu
        self.total_rss = int(total_rss or 0)
        self.usage_label.setText(usage_text(total_cpu, self.total_rss))
        self.usage_label.show()

    def on_store_kernels_changed(self, _ids: Any) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Counts and clock: everything."""
        self.counts_label.setText(counts_text(self._store.models()))
        self.refresh_clock()

    def refresh_clock(self) -> None:
        """What changes with time alone: the last activity's age, the culler's next pass."""
        now = datetime.now(UTC)
        text = activity_text(self._store.models(), now)
        self.activity_label.setText(text)
        self.activity_label.setVisible(bool(text))
        self.culler_label.setText(culler_text(self._bridge, self.paused, now))
