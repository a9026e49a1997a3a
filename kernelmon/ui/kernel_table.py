"""The kernel table: a ``QAbstractTableModel`` adapter over the core's kernel models.

Rows are inserted and removed as kernels come and go and each kernel's row is refreshed with
``dataChanged`` when the bridge reports a change; the model is never reset while running.
The time columns ("last activity", "culled in") are refreshed once a second. What a cell
shows is computed by small pure functions (``relative_time``, ``format_eta``...).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QColor, QFont

from .bridge import KernelBridge
from .figures import (
    ORIGINS,
    format_bytes,
    format_cpu,
    format_rate,
    memory_tooltip,
    origin_of,
    origin_tooltip,
    owner_text,
)
from .icons import origin_icon, spec_logo, state_icon
from .sparkline import HISTORY_ROLE
from .store import KernelStore

logger = logging.getLogger(__name__)

#: Role with a value that sorts the column naturally (numbers as numbers).
SORT_ROLE = Qt.ItemDataRole.UserRole
#: Role with the kernel's full id, in every column.
KERNEL_ID_ROLE = Qt.ItemDataRole.UserRole + 1

ModelIndex = QModelIndex | QPersistentModelIndex


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
    Column.KERNEL: ("Kernel", "The kernel spec the kernel was started from"),
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
        "CPU (blue), memory (purple) and IOPub messages per second (orange) over the last minutes",
    ),
    Column.LAST_ACTIVITY: ("Last activity", "When the kernel last did or sent something"),
    Column.CONNECTIONS: ("Connections", "Frontends (consoles, notebooks) attached"),
    Column.CWD: ("Working folder", "The folder the kernel runs in"),
    Column.PID: ("PID", "The kernel's process id"),
    Column.BUFFERED: ("Buffered", "Messages kept for a frontend that disconnected"),
    Column.CULL_ETA: ("Culled in", "When the idle culler will shut this kernel down"),
}

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
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


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


def format_duration(seconds: float) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 5 min``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        m, s = divmod(seconds, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, rest = divmod(seconds, 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


def format_eta(eta: float | None) -> str:
    """What the "Culled in" column shows for ``KernelMap.cull_eta``."""
    if eta is None:
        return "never"
    if eta <= 0:
        return "next pass"
    return format_duration(eta)


def short_id(kernel_id: str) -> str:
    return kernel_id[:8]


class KernelTableModel(QAbstractTableModel):
    """One row per kernel of a bridge's ``KernelStore`` (or of what ``add_kernel`` is given,
    when not attached to a bridge)."""

    def __init__(
        self,
        bridge: KernelBridge | None = None,
        parent: QObject | None = None,
        *,
        refresh_ms: int = 1000,
    ) -> None:
        super().__init__(parent)
        self._bridge: KernelBridge | None = None
        #: Where the models are read: the bridge's store once attached, else one of its own.
        self._store = KernelStore(self)
        self._ids: list[str] = []
        self._specs: dict[str, dict[str, Any]] = {}
        self._specs_loaded = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_times)
        if refresh_ms > 0:
            self._timer.start(refresh_ms)
        if bridge is not None:
            self.attach(bridge)

    # -- feeding ----------------------------------------------------------------------------

    def attach(self, bridge: KernelBridge) -> None:
        """Show the kernels of ``bridge``'s store, and follow its signals."""
        self._bridge = bridge
        self._store = bridge.store
        for kid in bridge.store.ids():
            if kid not in self._ids:
                self.beginInsertRows(QModelIndex(), len(self._ids), len(self._ids))
                self._ids.append(kid)
                self.endInsertRows()
        bridge.kernel_added.connect(self.on_bridge_kernel_added)
        bridge.kernel_changed.connect(self.on_bridge_kernel_changed)
        bridge.kernel_removed.connect(self.on_bridge_kernel_removed)
        bridge.usage_sampled.connect(self.on_bridge_usage_sampled)

    def on_bridge_kernel_added(self, kernel_id: str, model: dict[str, Any]) -> None:
        self.add_kernel(kernel_id, model)

    def on_bridge_kernel_changed(self, kernel_id: str, model: dict[str, Any], fields: Any) -> None:
        self.update_kernel(kernel_id, model, fields)

    def on_bridge_kernel_removed(self, kernel_id: str, _reason: str) -> None:
        self.remove_kernel(kernel_id)

    def on_bridge_usage_sampled(self, _total_cpu: Any, _total_rss: Any) -> None:
        """A sample tick: the sparklines move on even for kernels whose figures did not
        change (and so sent no change)."""
        if self._ids:
            self.dataChanged.emit(
                self.index(0, Column.USAGE),
                self.index(len(self._ids) - 1, Column.USAGE),
                [HISTORY_ROLE, Qt.ItemDataRole.ToolTipRole],
            )

    def _keep(self, kernel_id: str, model: dict[str, Any]) -> None:
        """Without a bridge, the table keeps the models it is given (with one, the bridge
        has put them in its store already)."""
        if self._bridge is None:
            self._store.put(kernel_id, dict(model))

    def add_kernel(self, kernel_id: str, model: dict[str, Any]) -> None:
        if kernel_id in self._ids:
            self.update_kernel(kernel_id, model)
            return
        row = len(self._ids)
        self.beginInsertRows(QModelIndex(), row, row)
        self._ids.append(kernel_id)
        self._keep(kernel_id, model)
        self.endInsertRows()

    def update_kernel(self, kernel_id: str, model: dict[str, Any], fields: Any = None) -> None:
        """A kernel's model changed (``fields``, if given, names what changed: only the
        columns that show those are repainted)."""
        if kernel_id not in self._ids:
            return  # a late change for a kernel already removed
        self._keep(kernel_id, model)
        row = self._ids.index(kernel_id)
        first, last = 0, len(Column) - 1
        if fields and all(f in FIELD_COLUMNS for f in fields):
            columns = [c for f in fields for c in FIELD_COLUMNS[f]]
            first, last = min(columns), max(columns)
        self.dataChanged.emit(self.index(row, first), self.index(row, last))

    def remove_kernel(self, kernel_id: str) -> None:
        if kernel_id not in self._ids:
            return
        row = self._ids.index(kernel_id)
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._ids[row]
        if self._bridge is None:
            self._store.pop(kernel_id)
        self.endRemoveRows()

    def refresh_times(self) -> None:
        """The time columns change with the clock: repaint them (not the whole table)."""
        if not self._ids:
            return
        last = len(self._ids) - 1
        for column in (Column.LAST_ACTIVITY, Column.CULL_ETA):
            self.dataChanged.emit(
                self.index(0, column),
                self.index(last, column),
                [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole],
            )

    # -- reading ----------------------------------------------------------------------------

    def kernel_ids(self) -> list[str]:
        return list(self._ids)

    def kernel_model(self, kernel_id: str) -> dict[str, Any] | None:
        return self._store.get(kernel_id) if kernel_id in self._ids else None

    def row_of(self, kernel_id: str) -> int:
        return self._ids.index(kernel_id) if kernel_id in self._ids else -1

    def _spec(self, name: str) -> dict[str, Any] | None:
        if name not in self._specs and not self._specs_loaded and self._bridge is not None:
            self._specs_loaded = True
            try:
                self._specs = self._bridge.kernel_specs()
            except Exception:
                logger.exception("Could not list kernel specs")
        return self._specs.get(name)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def _age(self, model: dict[str, Any]) -> float | None:
        when = parse_time(model.get("last_activity"))
        if when is None:
            return None
        return max(0.0, (self._now() - when).total_seconds())

    def _eta(self, kernel_id: str) -> float | None:
        return None if self._bridge is None else self._bridge.cull_eta(kernel_id)

    def history(self, kernel_id: str) -> Any:
        """The core's ``KernelHistory`` of a kernel (None without one)."""
        return None if self._bridge is None else self._bridge.history(kernel_id)

    def _sparkline(self, kernel_id: str) -> tuple[list[float], list[float], list[float]] | None:
        history = self.history(kernel_id)
        if history is None:
            return None
        cpu, rss, rate = history.cpu.values(), history.rss.values(), history.messages.values()
        return (cpu, rss, rate) if cpu or rss or rate else None

    # -- Qt model interface -----------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        title, tip = HEADERS[Column(section)]
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._ids):
            return None
        if not 0 <= index.column() < len(Column):
            return None
        kid = self._ids[index.row()]
        model = self._store.get(kid) or {}
        column = Column(index.column())
        if role == KERNEL_ID_ROLE:
            return kid
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(kid, model, column)
        if role == SORT_ROLE:
            return self._sort_key(kid, model, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(kid, model, column)
        if role == HISTORY_ROLE:
            return self._sparkline(kid) if column == Column.USAGE else None
        if role == Qt.ItemDataRole.DecorationRole:
            if column == Column.ORIGIN:
                return origin_icon(origin_of(model))
            if column == Column.STATE:
                return state_icon(str(model.get("execution_state", "unknown")))
            if column == Column.KERNEL:
                spec = self._spec(str(model.get("name", "")))
                return spec_logo(spec["resource_dir"]) if spec else None
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == Column.STATE:
                state = str(model.get("execution_state"))
                return STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
            return MUTED if origin_of(model) != "owned" else None
        if role == Qt.ItemDataRole.FontRole and origin_of(model) != "owned":
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMBER_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, kid: str, model: dict[str, Any], column: Column) -> str:
        match column:
            case Column.KERNEL:
                return str(model.get("display_name") or model.get("name") or "")
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
                age = self._age(model)
                if age is None:  # none seen: say so rather than show a made-up time
                    return str(model.get("last_activity_note") or "")
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
                return format_eta(self._eta(kid))
        return ""

    def _sort_key(self, kid: str, model: dict[str, Any], column: Column) -> Any:
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
                eta = self._eta(kid)
                return float("inf") if eta is None else float(eta)
        return self._display(kid, model, column).lower()

    def _tooltip(self, kid: str, model: dict[str, Any], column: Column) -> str | None:
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
                cpu = format_cpu(model.get("cpu_percent")) or "not measured yet"
                rss = format_bytes(model.get("rss")) or "not measured yet"
                return f"CPU (blue) now {cpu}; memory (purple) now {rss}"
            case Column.PID:
                if origin_of(model) in ("external", "orphan"):
                    return f"Started by {owner_text(model)}"
                return None
            case Column.STATE:
                reason = model.get("reason")
                restarts = int(model.get("restarts") or 0)
                tip = str(model.get("execution_state", "unknown"))
                if restarts:
                    tip += f" (restarted {restarts} time(s))"
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
                return f"{model.get('display_name')} (kernel spec {model.get('name')!r})"
            case Column.CULL_ETA:
                eta = self._eta(kid)
                if eta is None:
                    return "The current culling rules never cull this kernel as it is now"
                return "Culled on the culler's first pass after this time, unless it is used"
        return None


class KernelSortProxy(QSortFilterProxyModel):
    """Sorts the table by each column's natural value and keeps sorting as rows change."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: ModelIndex, right: ModelIndex) -> bool:
        a = left.data(SORT_ROLE)
        b = right.data(SORT_ROLE)
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)
