"""The kernel table's columns: what each shows, sorts by and says in its tooltip.

Pure functions of a kernel's model (``display_text``, ``sort_key``, ``tooltip_text``), with
the clock-bound values (the age of the last activity, the culler's ETA) passed in. A new
column is added here (``Column``, ``HEADERS``, the three functions, ``FIELD_COLUMNS`` if a
model field shows in it) and given a width in ``kernel_view.COLUMN_WIDTHS``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import IntEnum
from typing import Any

from PySide6.QtGui import QColor

from ..core.records import parse_isoformat
from .figures import (
    ORIGINS,
    format_bytes,
    format_cpu,
    format_eta,
    format_rate,
    kernel_name,
    memory_tooltip,
    origin_of,
    origin_tooltip,
    owner_text,
    plural,
    spec_text,
)
from .sparkline import CPU_COLOUR, MEMORY_COLOUR, RATE_COLOUR

#: The age [s] of a model's last activity (None: none seen).
Age = Callable[[dict[str, Any]], float | None]
#: Seconds until the culler shuts a kernel down (None: never, as it is now).
Eta = Callable[[str], float | None]


class Column(IntEnum):
    KERNEL = 0
    ID = 1
    ORIGIN = 2
    STATE = 3
    CPU = 4
    MEMORY = 5
    MESSAGE_RATE = 6
    USAGE = 7
    LAST_ACTIVITY = 8
    CONNECTIONS = 9
    CWD = 10
    PID = 11
    BUFFERED = 12
    CULL_ETA = 13


HEADERS = {
    Column.KERNEL: (
        "Kernel",
        "What the kernel is for: its notebook when known, else its working folder, else the "
        "application that started it. The icon is its kernel spec (the tooltip names it)",
    ),
    Column.ID: ("Id", "The start of the kernel's id (the tooltip shows all of it)"),
    Column.ORIGIN: (
        "Origin",
        "Who owns the kernel: kernelmon (owned), another application (external), an "
        "application that is gone (orphan), or nobody: only a connection file is left (stale)",
    ),
    Column.STATE: ("State", "What the kernel is doing: starting, idle, busy, restarting, dead"),
    Column.CPU: ("CPU", "CPU use of the kernel and its child processes (100 % is one core)"),
    Column.MEMORY: ("Memory", "Resident memory of the kernel and its child processes"),
    Column.MESSAGE_RATE: ("Msg/s", "Messages the kernel sends a second (output, status)"),
    Column.USAGE: (
        "Recent use",
        "CPU (blue), memory (purple) and IOPub messages per second (orange) over the last "
        "minutes, newest on the right",
    ),
    Column.LAST_ACTIVITY: ("Last activity", "When the kernel last did or sent something"),
    Column.CONNECTIONS: ("Connections", "Frontends (consoles, notebooks) attached"),
    Column.CWD: ("Working folder", "The folder the kernel runs in"),
    Column.PID: ("PID", "The kernel's process id"),
    Column.BUFFERED: ("Buffered", "Messages kept for a frontend that disconnected"),
    Column.CULL_ETA: ("Culled in", "When the idle culler will shut this kernel down"),
}

#: Columns hidden until the user shows them (the header's context menu): the ones shown
#: fit a 1280 px wide window beside the side panel.
DEFAULT_HIDDEN = frozenset(
    {
        Column.ID,
        Column.MESSAGE_RATE,
        Column.CONNECTIONS,
        Column.CWD,
        Column.PID,
        Column.BUFFERED,
    }
)

STATE_COLOURS = {
    "starting": QColor("#1e6fd9"),
    "restarting": QColor("#1e6fd9"),
    "idle": QColor("#1a7f37"),
    "busy": QColor("#b35900"),
    "dead": QColor("#c62828"),
    "unresponsive": QColor("#c62828"),
    "problem": QColor("#c62828"),
    "unknown": QColor("#6e6e6e"),
}

#: The text colour of rows kernelmon does not own.
MUTED = QColor("#7a7a7a")
#: Columns whose numbers are right-aligned.
NUMBER_COLUMNS = (
    Column.CPU,
    Column.MEMORY,
    Column.MESSAGE_RATE,
    Column.CONNECTIONS,
    Column.PID,
    Column.BUFFERED,
)
#: What a missing number sorts as: below every real value.
LOWEST = float("-inf")
#: The columns a change of each model field shows in; a change of any other field repaints
#: the whole row. Narrow updates matter for speed: the sorting proxy re-sorts a row (a dozen
#: Python ``lessThan`` calls) only when the sort column is among the changed ones.
FIELD_COLUMNS: dict[str, tuple[Column, ...]] = {
    "messages": (Column.MESSAGE_RATE,),
    "message_rate": (Column.MESSAGE_RATE, Column.USAGE),
    "last_activity": (Column.LAST_ACTIVITY, Column.CULL_ETA),
    "cpu_percent": (Column.CPU, Column.USAGE),
    "rss": (Column.MEMORY, Column.USAGE),
    "pss": (Column.MEMORY,),
    "uss": (Column.MEMORY,),
    "processes": (Column.CPU, Column.MEMORY),
    "buffered": (Column.BUFFERED,),
    "buffer_dropped": (Column.BUFFERED,),
    "connections": (Column.CONNECTIONS, Column.CULL_ETA),
}


def number_or_lowest(value: Any) -> float:
    """A figure as a sort key; None (not measured yet) sorts below everything."""
    if value is None or isinstance(value, bool):
        return LOWEST
    try:
        return float(value)
    except (TypeError, ValueError):
        return LOWEST


def parse_time(iso: str | None) -> datetime | None:
    return parse_isoformat(iso, assume_utc=True)


def relative_time(seconds: float) -> str:
    """``12 s ago``, ``5 min ago``... for an age in seconds."""
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def short_id(kernel_id: str) -> str:
    return kernel_id[:8]


def display_text(kid: str, model: dict[str, Any], column: Column, age_of: Age, eta_of: Eta) -> str:
    """What a cell shows."""
    match column:
        case Column.KERNEL:
            return kernel_name(model)
        case Column.ID:
            return short_id(kid)
        case Column.ORIGIN:
            return origin_of(model)
        case Column.STATE:
            return str(model.get("execution_state", "unknown"))
        case Column.CPU:
            return format_cpu(model.get("cpu_percent"))
        case Column.MEMORY:
            return format_bytes(model.get("rss"))
        case Column.MESSAGE_RATE:
            return format_rate(model.get("message_rate"))
        case Column.USAGE:
            return ""
        case Column.LAST_ACTIVITY:
            age = age_of(model)
            if age is None:  # none seen: say so (the tooltip says why) rather than make one up
                return "not seen" if model.get("last_activity_note") else ""
            return relative_time(age)
        case Column.CONNECTIONS:
            return str(model.get("connections", 0))
        case Column.CWD:
            return str(model.get("cwd") or "")
        case Column.PID:
            pid = model.get("pid")
            return "" if pid is None else str(pid)
        case Column.BUFFERED:
            n = int(model.get("buffered") or 0)
            dropped = int(model.get("buffer_dropped") or 0)
            return f"{n} (+{dropped} dropped)" if dropped else str(n)
        case Column.CULL_ETA:
            return format_eta(eta_of(kid))
    return ""


def sort_key(kid: str, model: dict[str, Any], column: Column, age_of: Age, eta_of: Eta) -> Any:
    """What a cell sorts by (numbers as numbers)."""
    match column:
        case Column.ORIGIN:
            return ORIGINS.index(origin_of(model))
        case Column.CPU | Column.USAGE:
            return number_or_lowest(model.get("cpu_percent"))
        case Column.MEMORY:
            return number_or_lowest(model.get("rss"))
        case Column.MESSAGE_RATE:
            return number_or_lowest(model.get("message_rate"))
        case Column.LAST_ACTIVITY:
            return str(model.get("last_activity") or "")
        case Column.CONNECTIONS:
            return int(model.get("connections") or 0)
        case Column.PID:
            return int(model.get("pid") or -1)
        case Column.BUFFERED:
            return int(model.get("buffered") or 0)
        case Column.CULL_ETA:
            eta = eta_of(kid)
            return float("inf") if eta is None else float(eta)
    return display_text(kid, model, column, age_of, eta_of).lower()


def tooltip_text(kid: str, model: dict[str, Any], column: Column, eta_of: Eta) -> str | None:
    """What a cell's tooltip says."""
    match column:
        case Column.ID:
            return f"Kernel id {kid}"
        case Column.ORIGIN:
            return origin_tooltip(model)
        case Column.CPU:
            if model.get("cpu_percent") is None:
                return "Not measured yet"
            return "CPU use of the kernel and its child processes; 100 % is one core busy"
        case Column.MEMORY:
            return memory_tooltip(model) or "Not measured yet"
        case Column.MESSAGE_RATE:
            if model.get("message_rate") is None:
                return "Not measured yet"
            return "Messages the kernel sent a second over the last sample"
        case Column.USAGE:
            return usage_legend(model)
        case Column.PID:
            if origin_of(model) in ("external", "orphan"):
                return f"Started by {owner_text(model)}"
            return None
        case Column.STATE:
            reason = model.get("reason")
            restarts = int(model.get("restarts") or 0)
            tip = str(model.get("execution_state", "unknown"))
            if restarts:
                tip += f" (restarted {plural(restarts, 'time')})"
            return f"{tip}: {reason}" if reason else tip
        case Column.LAST_ACTIVITY:
            when = parse_time(model.get("last_activity"))
            if when is not None:
                return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            note, first = model.get("last_activity_note"), parse_time(model.get("first_seen"))
            if note and first is not None:
                since = first.astimezone().strftime("%Y-%m-%d %H:%M:%S")
                return f"{note} ({since}); its idle time counts from then"
            return str(note) if note else None
        case Column.CWD:
            cwd = model.get("cwd")
            return str(cwd) if cwd else None
        case Column.KERNEL:
            return kernel_tooltip(model)
        case Column.CULL_ETA:
            eta = eta_of(kid)
            if eta is None:
                return "The current culling rules never cull this kernel as it is now"
            return "Culled on the culler's first pass after this time, unless it is used"
    return None


def kernel_tooltip(model: dict[str, Any]) -> str:
    """The first column's tooltip: the notebook's full path, the folder, the kernel spec."""
    lines = []
    notebook = model.get("notebook_path")
    if notebook:
        lines.append(f"Notebook: {notebook}")
    cwd = model.get("cwd")
    lines.append(f"Folder: {cwd}" if cwd else "Folder: unknown")
    if not notebook and not cwd and model.get("parent_app"):
        lines.append(f"Started by {owner_text(model)}")
    lines.append(f"Kernel spec: {spec_text(model).removeprefix('kernel spec ')}")
    return "\n".join(lines)


def _swatch(colour: QColor, text: str) -> str:
    return f'<span style="color:{colour.name()}">&#9632;</span>&nbsp;{text}'


def usage_legend(model: dict[str, Any]) -> str:
    """The sparkline's tooltip: a legend of its three lines, with the figures now."""
    cpu = format_cpu(model.get("cpu_percent")) or "not measured yet"
    rss = format_bytes(model.get("rss")) or "not measured yet"
    rate = format_rate(model.get("message_rate")) or "not measured yet"
    rows = (
        _swatch(CPU_COLOUR, f"CPU: {cpu} now (from 0 to at least one core)"),
        _swatch(MEMORY_COLOUR, f"Memory: {rss} now (from 0 to its highest)"),
        _swatch(RATE_COLOUR, f"Messages: {rate} now (from 0 to its highest; once any came)"),
    )
    return "<p style='white-space:pre'>" + "<br>".join(rows) + "<br>Newest on the right</p>"
