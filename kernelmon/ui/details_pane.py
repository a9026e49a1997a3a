"""The details of the selected kernel: who owns it, how it is reached, and three plots.

``KernelDetailsPane.show_kernel(kernel_id, model)`` shows a kernel's facts (from its model)
and its history (CPU %, memory, messages a second, from the core's ``KernelHistory``);
``update_model`` and ``refresh_plots`` keep it live as changes and sample ticks arrive.
``fact_text(name, model)`` (pure) is what each line says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from .columns import parse_time, relative_time
from .figures import (
    format_bytes,
    format_cpu,
    format_rate,
    kernel_label,
    origin_of,
    origin_tooltip,
    owner_text,
    spec_text,
    with_more,
)
from .plot import TimePlot, binary_top, nice_top
from .sparkline import CPU_COLOUR, MEMORY_COLOUR

MESSAGES_COLOUR = CPU_COLOUR.darker(130)
#: What the pane says with no kernel selected.
NOTHING_SELECTED = "Select a kernel in the table to see its details here."

#: name -> label of each fact, in the order shown.
FACTS = {
    "spec": "Kernel spec",
    "notebook_path": "Notebook",
    "cwd": "Folder",
    "state": "State",
    "origin": "Origin",
    "parent": "Started by",
    "server_url": "Jupyter server",
    "pid": "Process id",
    "processes": "Processes",
    "started": "Started",
    "restarts": "Restarts",
    "buffered": "Buffered messages",
    "connection_file": "Connection file",
    "transport": "Transport",
    "ip": "Address",
    "ports": "Ports",
}

PORT_ORDER = ("shell", "iopub", "stdin", "control", "hb")
#: Facts shown only when the model has them (a server's kernel's notebook).
OPTIONAL_FACTS = ("notebook_path", "server_url")
#: What a stale kernel's processes are.
NO_PROCESS = "none: only its connection file is left"


def _time_text(iso: Any, now: datetime) -> str | None:
    when = parse_time(iso)
    if when is None:
        return None
    age = max(0.0, (now - when).total_seconds())
    return f"{when.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({relative_time(age)})"


def _started_text(model: dict[str, Any], now: datetime) -> str:
    """When the kernel started; of a stale one (found with no process) only when it was found
    is known."""
    if origin_of(model) == "stale":
        found = _time_text(model.get("first_seen") or model.get("started"), now)
        return f"unknown (found at {found})" if found else "unknown"
    return _time_text(model.get("started"), now) or "unknown"


def ports_text(ports: Any) -> str:
    if not isinstance(ports, dict) or not ports:
        return "none"
    named = {str(k).removesuffix("_port"): v for k, v in ports.items()}
    names = sorted(named, key=lambda n: (PORT_ORDER.index(n) if n in PORT_ORDER else 99, n))
    return ", ".join(f"{name} {named[name]}" for name in names)


def fact_text(name: str, model: dict[str, Any], now: datetime | None = None) -> str:
    """What the details pane says for one fact of a kernel's model."""
    now = now or datetime.now(UTC)
    origin = origin_of(model)
    match name:
        case "spec":
            return spec_text(model)
        case "notebook_path" | "cwd":
            value = model.get(name)
            return str(value) if value else "unknown"
        case "state":
            state = str(model.get("execution_state") or "unknown")
            reason = model.get("reason")
            return f"{state}: {reason}" if reason else state
        case "origin":
            first = origin_tooltip(model).split("\n")[0]
            problem = model.get("identity_problem")
            return f"{first} (unverifiable: {problem})" if problem else first
        case "parent":
            if origin == "owned":
                return "kernelmon"
            if origin == "orphan":
                return owner_text(model)
            if model.get("parent_app") is None and model.get("parent_pid") is None:
                return "unknown"
            alive = "running" if model.get("parent_alive") else "no longer running"
            return f"{owner_text(model)}, {alive}"
        case "pid":
            pid = model.get("pid")
            return "none" if pid is None else str(pid)
        case "processes":
            if origin == "stale":
                return NO_PROCESS
            n = model.get("processes")
            return "not measured yet" if n is None else str(n)
        case "started":
            return _started_text(model, now)
        case "restarts":
            return str(int(model.get("restarts") or 0))
        case "buffered":
            n = int(model.get("buffered") or 0)
            dropped = int(model.get("buffer_dropped") or 0)
            return f"{n} (+{dropped} dropped)" if dropped else str(n)
        case "ports":
            return ports_text(model.get("ports"))
        case "server_url" | "connection_file" | "transport" | "ip":
            value = model.get(name)
            return str(value) if value else "unknown"
    return ""


class KernelDetailsPane(QWidget):
    """Facts and plots of one kernel (the one selected in the table)."""

    def __init__(
        self, history: Callable[[str], Any] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("details_pane")
        self._history = history
        self.kernel_id: str | None = None
        self.model: dict[str, Any] = {}
        self.title = QLabel()
        self.title.setObjectName("details_title")
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.facts: dict[str, QLabel] = {}
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for name, label in FACTS.items():
            value = QLabel()
            value.setObjectName(f"fact_{name}")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            # a long path never widens the side panel (it wraps, or is cut: the tooltip
            # has all of it)
            value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.facts[name] = value
            self.form.addRow(f"{label}:", value)
        self.cpu_plot = TimePlot("CPU", format_cpu, CPU_COLOUR, top=cpu_top)
        self.memory_plot = TimePlot("Memory", format_bytes, MEMORY_COLOUR, top=binary_top)
        self.messages_plot = TimePlot("Messages/s", format_rate, MESSAGES_COLOUR)
        self.cpu_plot.setObjectName("cpu_plot")
        self.memory_plot.setObjectName("memory_plot")
        self.messages_plot.setObjectName("messages_plot")
        #: The facts and the plots: hidden while no kernel is selected.
        self.body = QWidget()
        self.body.setObjectName("details_body")
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addLayout(self.form)
        for plot in self.plots:
            body.addWidget(plot, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.body, 1)
        layout.addStretch(0)
        self.show_kernel(None, None)

    @property
    def plots(self) -> tuple[TimePlot, TimePlot, TimePlot]:
        return (self.cpu_plot, self.memory_plot, self.messages_plot)

    def show_kernel(self, kernel_id: str | None, model: dict[str, Any] | None) -> None:
        """Show this kernel (None: nothing selected)."""
        self.kernel_id = kernel_id if model is not None else None
        self.model = dict(model or {})
        if self.kernel_id is None:
            self.title.setText(NOTHING_SELECTED)
            self.title.setToolTip("")
            self.title.setEnabled(False)  # greyed: a hint, not a kernel's name
            self.body.hide()
            for label in self.facts.values():
                label.setText("")
            for plot in self.plots:
                plot.clear()
            return
        self.title.setEnabled(True)
        self.body.show()
        self.update_model(self.kernel_id, self.model)
        self.refresh_plots()

    def update_model(self, kernel_id: str, model: dict[str, Any]) -> None:
        """A change of a kernel's facts (ignored unless it is the one shown)."""
        if kernel_id != self.kernel_id:
            return
        self.model = dict(model)
        self.title.setText(kernel_label(kernel_id, model))
        self.title.setToolTip(f"Kernel id {kernel_id}")
        now = datetime.now(UTC)
        for fact, label in self.facts.items():
            text = fact_text(fact, model, now)
            label.setText(text)
            label.setToolTip(text if len(text) > 30 else "")
            if fact in OPTIONAL_FACTS:
                shown = bool(model.get(fact))
                label.setVisible(shown)
                self.form.labelForField(label).setVisible(shown)
        self.facts["origin"].setToolTip(origin_tooltip(model))
        if self._history is not None:
            self._show_process_tree(self._history(kernel_id))

    def _show_process_tree(self, history: Any) -> None:
        """The kernel's processes as a tree, from its latest sample (if there is one)."""
        if origin_of(self.model) == "stale" or self.model.get("pid") is None:
            return  # no process: an older sample's tree would contradict "Process id: none"
        members = getattr(getattr(history, "latest", None), "members", ())
        if members:
            tree = process_tree_text(members)
            self.facts["processes"].setText(f"{len(members)}\n{tree}")

    def kernel_removed(self, kernel_id: str) -> None:
        if kernel_id == self.kernel_id:
            self.show_kernel(None, None)

    def refresh_plots(self) -> None:
        """Redraw the plots from the kernel's history (on every sample tick)."""
        history = None
        if self.kernel_id is not None and self._history is not None:
            history = self._history(self.kernel_id)
        now = time.monotonic()
        if history is None:
            for plot in self.plots:
                plot.set_points([], now, plot.span)
            return
        self._show_process_tree(history)
        for plot, series in zip(
            self.plots, (history.cpu, history.rss, history.messages), strict=True
        ):
            plot.set_points(series.points(), now, float(getattr(series, "span", 600.0)))


def process_tree_text(members: Sequence[Any], limit: int = 12) -> str:
    """The kernel's processes as an indented tree, one a line: ``pid name memory``."""
    if not members:
        return ""
    by_parent: dict[int | None, list[Any]] = {}
    pids = {m.pid for m in members}
    for m in members[1:]:
        by_parent.setdefault(m.ppid if m.ppid in pids else members[0].pid, []).append(m)
    lines: list[str] = []

    def walk(member: Any, depth: int) -> None:
        if len(lines) < limit:
            indent = "  " * depth + ("└ " if depth else "")
            lines.append(f"{indent}{member.pid} {member.name or '?'} ({format_bytes(member.rss)})")
        for child in sorted(by_parent.get(member.pid, []), key=lambda m: m.pid):
            walk(child, depth + 1)

    walk(members[0], 0)
    return "\n".join(with_more(lines, len(members)))


def cpu_top(value: float) -> float:
    """The CPU plot's top: at least 100 % (one core)."""
    return nice_top(value, 100.0)
