"""The table model without kernels: qtmodeltester, row updates, sorting, selection, bridge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt

from kernelmon.core.events import (
    KernelAdded,
    KernelChanged,
    KernelEvent,
    KernelRemoved,
    UsageSampled,
)
from kernelmon.ui import bridge as bridge_module
from kernelmon.ui.bridge import KernelBridge
from kernelmon.ui.columns import Column, relative_time
from kernelmon.ui.figures import format_eta
from kernelmon.ui.kernel_table import KERNEL_ID_ROLE, KernelSortProxy, KernelTableModel


def iso(seconds_ago: float) -> str:
    when = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return when.isoformat().replace("+00:00", "Z")


def model_for(kid: str, state: str = "idle", ago: float = 5, **extra: Any) -> dict[str, Any]:
    m = {
        "id": kid,
        "name": "python3",
        "display_name": f"Python {kid}",
        "execution_state": state,
        "last_activity": iso(ago),
        "connections": 0,
        "pid": 1000 + len(kid),
        "cwd": f"/somewhere/{kid}",
        "reason": None,
        "restarts": 0,
        "buffered": 0,
        "buffer_dropped": 0,
    }
    m.update(extra)
    return m


class Recorder:
    """Counts the model's structural signals (a reset is a failure)."""

    def __init__(self, model: KernelTableModel) -> None:
        self.resets = 0
        self.changed: list[tuple[int, int, int, int]] = []
        model.modelReset.connect(self._reset)
        model.dataChanged.connect(
            lambda a, b, roles=(): self.changed.append((a.row(), a.column(), b.row(), b.column()))
        )

    def _reset(self) -> None:
        self.resets += 1


def test_model_passes_qtmodeltester(qtmodeltester: Any) -> None:
    model = KernelTableModel(refresh_ms=0)
    model.add_kernel("a", model_for("a"))
    model.add_kernel("b", model_for("b", "busy", ago=100, connections=2, buffered=3))
    model.add_kernel("c", model_for("c", "dead", pid=None, reason="killed"))
    qtmodeltester.check(model)
    proxy = KernelSortProxy()
    proxy.setSourceModel(model)
    proxy.sort(Column.LAST_ACTIVITY)
    qtmodeltester.check(proxy)


def test_rows_are_inserted_changed_and_removed_without_reset() -> None:
    model = KernelTableModel(refresh_ms=0)
    rec = Recorder(model)
    model.add_kernel("a", model_for("a"))
    model.add_kernel("b", model_for("b"))
    assert model.rowCount() == 2
    model.update_kernel("b", model_for("b", "busy"))
    assert rec.changed[-1] == (1, 0, 1, len(Column) - 1)
    assert model.index(1, Column.STATE).data() == "busy"
    model.remove_kernel("a")
    assert model.kernel_ids() == ["b"]
    model.update_kernel("a", model_for("a"))  # late change for a removed kernel: ignored
    assert model.rowCount() == 1
    assert rec.resets == 0


def test_cells_show_words() -> None:
    model = KernelTableModel(refresh_ms=0)
    kid = "0123456789abcdef"
    model.add_kernel(kid, model_for(kid, "busy", ago=75, buffered=4, buffer_dropped=2))
    row = {c: model.index(0, c) for c in Column}
    assert row[Column.ID].data() == "01234567"
    assert kid in row[Column.ID].data(Qt.ItemDataRole.ToolTipRole)
    assert row[Column.ID].data(KERNEL_ID_ROLE) == kid
    assert row[Column.LAST_ACTIVITY].data() == "1 min ago"
    assert row[Column.BUFFERED].data() == "4 (+2 dropped)"
    assert row[Column.CULL_ETA].data() == "never"  # no kernel map: never culled
    assert not row[Column.STATE].data(Qt.ItemDataRole.DecorationRole).isNull()


def test_pure_formatters() -> None:
    assert relative_time(0.2) == "just now"
    assert relative_time(12.7) == "12 s ago"
    assert relative_time(3 * 3600 + 5) == "3 h ago"
    assert relative_time(2 * 86400) == "2 d ago"
    assert format_eta(None) == "never"
    assert format_eta(0) == "next pass"
    assert format_eta(250) == "4 min 10 s"


def test_time_columns_refresh_on_their_own(qtbot: Any) -> None:
    model = KernelTableModel(refresh_ms=50)
    model.add_kernel("a", model_for("a"))
    rec = Recorder(model)
    qtbot.waitUntil(lambda: len(rec.changed) >= 2, timeout=2000)
    columns = {c for _r, c, _r2, c2 in rec.changed if c == c2}
    assert columns == {Column.LAST_ACTIVITY, Column.CULL_ETA}
    assert rec.resets == 0


def test_selection_survives_sorting_and_updates() -> None:
    from PySide6.QtWidgets import QTableView

    model = KernelTableModel(refresh_ms=0)
    for i, kid in enumerate(["c", "a", "b"]):
        model.add_kernel(kid, model_for(kid, ago=10 * (i + 1)))
    proxy = KernelSortProxy()
    proxy.setSourceModel(model)
    view = QTableView()
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(Column.KERNEL, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, 0).data(KERNEL_ID_ROLE) for r in range(3)] == ["a", "b", "c"]
    view.selectionModel().select(
        proxy.index(1, 0),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )

    def selected() -> list[str]:
        return [i.data(KERNEL_ID_ROLE) for i in view.selectionModel().selectedRows()]

    assert selected() == ["b"]
    view.sortByColumn(Column.KERNEL, Qt.SortOrder.DescendingOrder)
    assert selected() == ["b"]
    # b's name changes so that it sorts first: the row moves, the selection follows
    model.update_kernel("b", model_for("b", cwd="/zzz"))
    assert proxy.index(0, 0).data(KERNEL_ID_ROLE) == "b"
    assert selected() == ["b"]
    model.remove_kernel("a")
    model.add_kernel("d", model_for("d"))
    assert selected() == ["b"]
    # sorting by PID sorts numbers as numbers
    model.update_kernel("c", model_for("c", pid=9))
    model.update_kernel("d", model_for("d", pid=100))
    view.sortByColumn(Column.PID, Qt.SortOrder.AscendingOrder)
    assert proxy.index(0, 0).data(KERNEL_ID_ROLE) == "c"
    assert not QModelIndex().isValid()


def test_a_change_repaints_only_the_columns_of_its_fields() -> None:
    model = KernelTableModel(refresh_ms=0)
    proxy = KernelSortProxy()
    proxy.setSourceModel(model)
    for kid, ago in (("a", 50), ("b", 5)):
        model.add_kernel(kid, model_for(kid, ago=ago))
    proxy.sort(Column.LAST_ACTIVITY, Qt.SortOrder.AscendingOrder)  # least recent first
    assert [proxy.index(r, 0).data(KERNEL_ID_ROLE) for r in range(2)] == ["a", "b"]
    ranges: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda tl, br, *_: ranges.append((tl.column(), br.column())))
    model.update_kernel("b", model_for("b", ago=5, messages=3), frozenset({"messages"}))
    model.update_kernel("a", model_for("a", ago=1), frozenset({"last_activity", "messages"}))
    model.update_kernel("a", model_for("a", state="busy", ago=1), frozenset({"execution_state"}))
    assert ranges == [
        (Column.MESSAGE_RATE, Column.MESSAGE_RATE),
        (Column.MESSAGE_RATE, Column.CULL_ETA),
        (0, len(Column) - 1),  # a field without columns of its own: the whole row
    ]
    # the sorted column was among the changed ones: the proxy re-sorted
    assert [proxy.index(r, 0).data(KERNEL_ID_ROLE) for r in range(2)] == ["b", "a"]


class FakeMap:
    """Just enough of KernelMap for the bridge: subscribe and emit."""

    def __init__(self) -> None:
        self.subscribers: list[Any] = []

    def subscribe(self, callback: Any) -> Any:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def emit(self, event: KernelEvent) -> None:
        for s in list(self.subscribers):
            s(event)


def test_bridge_coalesces_a_flood_of_changes(qtbot: Any) -> None:
    fake = FakeMap()
    bridge = KernelBridge(fake, interval_ms=200)  # type: ignore[arg-type]
    got: list[tuple[str, dict[str, Any], frozenset[str]]] = []
    bridge.kernel_changed.connect(lambda k, m, f: got.append((k, m, f)))
    added: list[str] = []
    bridge.kernel_added.connect(lambda k, m: added.append(k))
    fake.emit(KernelAdded("k", model_for("k")))
    assert added == ["k"]
    for i in range(5000):
        state = "busy" if i < 4999 else "idle"
        fake.emit(
            KernelChanged(
                "k",
                frozenset(
                    {"messages", f"f{i % 3}"} | ({"execution_state"} if i in (0, 4999) else set())
                ),
                model_for("k", state, messages=i),
            )
        )
    # state changes go out at once; the 4998 changes between them are merged into the last
    assert [m["execution_state"] for _k, m, _f in got] == ["busy", "idle"]
    assert got[1][1]["messages"] == 4999
    assert got[1][2] >= {"execution_state", "messages", "f0", "f1", "f2"}
    qtbot.wait(300)
    assert len(got) == 2
    # a kernel toggling busy/idle faster than anyone can read is throttled too
    got.clear()
    for i in range(1000):
        fake.emit(
            KernelChanged(
                "k",
                frozenset({"execution_state"}),
                model_for("k", "busy" if i % 2 == 0 else "idle", messages=i),
            )
        )
    assert len(got) <= bridge.max_state_changes
    qtbot.waitUntil(lambda: got[-1][1]["messages"] == 999, timeout=2000)
    assert len(got) <= bridge.max_state_changes + 1
    got.clear()
    # a removal drops the pending change
    fake.emit(KernelChanged("k", frozenset({"messages"}), model_for("k")))
    fake.emit(KernelChanged("k", frozenset({"messages"}), model_for("k")))
    before_removal = len(got)
    assert before_removal <= 1
    fake.emit(KernelRemoved("k", "shut down"))
    qtbot.wait(300)
    assert len(got) == before_removal
    bridge.close()
    assert fake.subscribers == []


def test_bridge_sends_a_burst_in_slices_then_the_totals(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many kernels changing at once go out a few per loop turn (here: one, the slice being
    0 s), none lost, each with its last model; the totals of the tick come after them."""
    monkeypatch.setattr(bridge_module, "SLICE", 0.0)
    fake = FakeMap()
    bridge = KernelBridge(fake, interval_ms=50)  # type: ignore[arg-type]
    got: list[tuple[str, Any]] = []
    bridge.kernel_changed.connect(lambda k, m, f: got.append((k, m["messages"])))
    bridge.usage_sampled.connect(lambda cpu, rss: got.append(("totals", cpu)))
    kids = [f"k{i}" for i in range(20)]
    for kid in kids:
        fake.emit(KernelAdded(kid, model_for(kid)))
    got.clear()
    for n in (1, 2):
        for kid in kids:
            fake.emit(KernelChanged(kid, frozenset({"messages"}), model_for(kid, messages=n)))
    fake.emit(UsageSampled("", total_cpu=12.0, total_rss=0))
    assert len(got) <= 2, "one slice now, the rest on later loop turns"
    qtbot.waitUntil(lambda: got and got[-1][0] == "totals", timeout=5000)
    last = dict(got[:-1])  # each kernel's last row update
    assert last == dict.fromkeys(kids, 2)
    assert got[-1] == ("totals", 12.0)
    assert bridge.slices >= len(kids) // 2
    bridge.close()


def test_model_follows_the_bridge(qtmodeltester: Any) -> None:
    fake = FakeMap()
    bridge = KernelBridge(fake, interval_ms=0)  # type: ignore[arg-type]
    model = KernelTableModel(refresh_ms=0)
    model.attach(bridge)
    fake.emit(KernelAdded("x", model_for("x", "starting")))
    fake.emit(KernelChanged("x", frozenset({"execution_state"}), model_for("x", "idle")))
    assert model.index(0, Column.STATE).data() == "idle"
    qtmodeltester.check(model)
    fake.emit(KernelRemoved("x", "culled"))
    assert model.rowCount() == 0
    bridge.close()


@pytest.mark.parametrize(
    "state", ["starting", "idle", "busy", "restarting", "dead", "unresponsive", "unknown"]
)
def test_every_state_has_an_icon_and_colour(state: str) -> None:
    model = KernelTableModel(refresh_ms=0)
    model.add_kernel("k", model_for("k", state))
    index = model.index(0, Column.STATE)
    assert not index.data(Qt.ItemDataRole.DecorationRole).isNull()
    assert index.data(Qt.ItemDataRole.ForegroundRole) is not None


def test_loop_lag_meter_sees_a_blocked_gui_thread(qtbot: Any) -> None:
    import time

    from PySide6.QtCore import QTimer

    from .conftest import LoopLagMeter

    meter = LoopLagMeter()
    meter.start()
    QTimer.singleShot(50, lambda: time.sleep(0.3))  # a synchronous call freezing the GUI
    qtbot.wait(500)
    meter.stop()
    assert max(meter.gaps) > 0.25


def test_no_activity_seen_is_said_not_invented() -> None:
    """Another application's kernel kernelmon never saw active: the sentence, not a time."""
    model = KernelTableModel(refresh_ms=0)
    note = "not seen active since kernelmon started watching it"
    model.add_kernel(
        "x", model_for("x", last_activity=None, last_activity_note=note, first_seen=iso(60))
    )
    index = model.index(0, Column.LAST_ACTIVITY)
    assert index.data() == "not seen", "short: the column stays narrow"
    tip = index.data(Qt.ItemDataRole.ToolTipRole)
    assert note in tip
    assert "idle time counts from then" in tip
