"""The origin and resource columns, the sparkline delegate and the plots, without kernels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from PySide6.QtCore import QModelIndex, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem

from kernelmon.core import KernelMap
from kernelmon.core.events import KernelAdded
from kernelmon.core.machine.resources import KernelHistory
from kernelmon.ui.bridge import KernelBridge
from kernelmon.ui.columns import MUTED, Column
from kernelmon.ui.figures import (
    format_bytes,
    format_cpu,
    format_rate,
    memory_tooltip,
    origin_tooltip,
    owner_text,
    usage_text,
    with_more,
)
from kernelmon.ui.kernel_table import SORT_ROLE, KernelSortProxy, KernelTableModel
from kernelmon.ui.kernel_view import KernelTableView
from kernelmon.ui.plot import TimePlot, binary_top, nice_top, plot_points
from kernelmon.ui.sparkline import HISTORY_ROLE, SparklineDelegate, polyline

from .test_kernel_table import model_for

MIB = 1024 * 1024


class FakeMap:
    """Just what the table model reads of a ``KernelMap``: histories, no culling."""

    def __init__(self) -> None:
        self.histories: dict[str, KernelHistory] = {}

    def __contains__(self, kernel_id: object) -> bool:
        return kernel_id in self.histories

    def subscribe(self, callback: Any) -> Any:
        return lambda: None

    def list_kernels(self) -> list[dict[str, Any]]:
        return []

    def kernel_specs(self) -> dict[str, Any]:
        return {}

    def cull_eta(self, kernel_id: str) -> float | None:
        return None

    def history(self, kernel_id: str) -> KernelHistory | None:
        return self.histories.get(kernel_id)

    def add_history(self, kernel_id: str, cpu: list[float], rss: list[float]) -> KernelHistory:
        history = KernelHistory.new(600.0)
        for i, (c, r) in enumerate(zip(cpu, rss, strict=True)):
            history.cpu.append(float(i), c)
            history.rss.append(float(i), r)
            history.messages.append(float(i), float(i))
        self.histories[kernel_id] = history
        return history


def usage_model(kid: str, cpu: float | None, rss: int | None, **extra: Any) -> dict[str, Any]:
    return model_for(
        kid,
        cpu_percent=cpu,
        rss=rss,
        pss=None if rss is None else rss // 2,
        uss=None if rss is None else rss // 3,
        processes=None if rss is None else 2,
        message_rate=None if cpu is None else cpu / 10,
        **extra,
    )


@pytest.fixture
def table(qapp: Any) -> Iterator[tuple[KernelTableModel, KernelSortProxy, FakeMap]]:
    # the bridge's timers need the application's event dispatcher
    fake = FakeMap()
    bridge = KernelBridge(cast(KernelMap, fake))
    model = KernelTableModel(bridge, refresh_ms=0)

    def add_kernel(kid: str, kernel_model: dict[str, Any]) -> None:
        bridge.on_kernel_map_event(KernelAdded(kid, model=kernel_model))

    add_kernel("a", usage_model("a", 12.5, 300 * MIB))
    add_kernel("b", usage_model("b", None, None))  # not measured yet
    add_kernel(
        "c",
        usage_model(
            "c",
            150.0,
            2 * 1024 * MIB,
            origin="external",
            parent_app="jupyter-lab",
            parent_pid=4242,
            parent_alive=True,
            server_url="http://localhost:8888/",
        ),
    )
    add_kernel("d", usage_model("d", 0.4, 40 * MIB, origin="orphan", parent_app="code"))
    add_kernel(
        "e",
        model_for("e", "dead", origin="stale", pid=None, connection_file="/run/kernel-e.json"),
    )
    fake.add_history("a", [0, 50, 100, 25], [100 * MIB, 200 * MIB, 300 * MIB, 300 * MIB])
    proxy = KernelSortProxy()
    proxy.setSourceModel(model)
    yield model, proxy, fake
    bridge.close()


def column_order(proxy: KernelSortProxy, column: Column, order: Qt.SortOrder) -> list[str]:
    proxy.sort(column, order)
    return [proxy.index(r, Column.ID).data() for r in range(proxy.rowCount())]


def test_models_with_usage_pass_qtmodeltester(table: Any, qtmodeltester: Any) -> None:
    model, proxy, _fake = table
    qtmodeltester.check(model)
    proxy.sort(Column.MEMORY)
    qtmodeltester.check(proxy)


def test_usage_cells_show_human_units(table: Any) -> None:
    model, _proxy, _fake = table
    row = {c: model.index(model.row_of("a"), c) for c in Column}
    assert row[Column.CPU].data() == "12 %"
    assert row[Column.MEMORY].data() == "300 MiB"
    assert row[Column.MESSAGE_RATE].data() == "1.2/s"
    assert row[Column.USAGE].data() == ""
    tip = row[Column.MEMORY].data(Qt.ItemDataRole.ToolTipRole)
    assert "PSS" in tip
    assert "USS" in tip
    assert "2 processes: the kernel" in tip
    assert row[Column.CPU].data(Qt.ItemDataRole.TextAlignmentRole) & Qt.AlignmentFlag.AlignRight
    unmeasured = {c: model.index(model.row_of("b"), c) for c in Column}
    assert unmeasured[Column.CPU].data() == ""
    assert unmeasured[Column.MEMORY].data(Qt.ItemDataRole.ToolTipRole) == "Not measured yet"


@pytest.mark.parametrize(
    ("column", "ascending"),
    [
        (Column.CPU, ["b", "e", "d", "a", "c"]),
        (Column.MEMORY, ["b", "e", "d", "a", "c"]),
        (Column.MESSAGE_RATE, ["b", "e", "d", "a", "c"]),
        (Column.USAGE, ["b", "e", "d", "a", "c"]),
        (Column.ORIGIN, ["a", "b", "c", "d", "e"]),
    ],
)
def test_usage_columns_sort_as_numbers_none_lowest(
    table: Any, column: Column, ascending: list[str]
) -> None:
    _model, proxy, _fake = table
    # "e" (stale) and "b" have no figures: both sort lowest, in a stable order
    got = column_order(proxy, column, Qt.SortOrder.AscendingOrder)
    assert got[2:] == ascending[2:]
    assert set(got[:2]) == set(ascending[:2])
    got = column_order(proxy, column, Qt.SortOrder.DescendingOrder)
    assert got[:3] == list(reversed(ascending))[:3]
    # 2 GiB sorts above 300 MiB (numbers, not text: "2.00 GiB" < "300 MiB" as text)
    assert proxy.index(0, column).data(SORT_ROLE) is not None


def test_origin_column_names_the_owner_and_mutes_other_rows(table: Any) -> None:
    model, _proxy, _fake = table

    def cell(kid: str, column: Column, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return model.index(model.row_of(kid), column).data(role)

    assert cell("a", Column.ORIGIN) == "owned"
    assert cell("c", Column.ORIGIN) == "external"
    tip = cell("c", Column.ORIGIN, Qt.ItemDataRole.ToolTipRole)
    assert "jupyter-lab (pid 4242), running" in tip
    assert "http://localhost:8888/" in tip
    assert "orphan: its application is gone" in cell(
        "d", Column.ORIGIN, Qt.ItemDataRole.ToolTipRole
    )
    stale_tip = cell("e", Column.ORIGIN, Qt.ItemDataRole.ToolTipRole)
    assert "stale: no process, only the connection file" in stale_tip
    assert "/run/kernel-e.json" in stale_tip
    for kid in "acde":
        assert not cell(kid, Column.ORIGIN, Qt.ItemDataRole.DecorationRole).isNull()
    # other applications' rows are muted and italic; the state keeps its colour
    assert cell("a", Column.KERNEL, Qt.ItemDataRole.ForegroundRole) is None
    assert cell("c", Column.KERNEL, Qt.ItemDataRole.ForegroundRole) == MUTED
    assert cell("c", Column.KERNEL, Qt.ItemDataRole.FontRole).italic()
    assert cell("c", Column.STATE, Qt.ItemDataRole.ForegroundRole) != MUTED
    assert cell("a", Column.KERNEL, Qt.ItemDataRole.FontRole) is None


def test_history_role_and_sample_ticks(table: Any) -> None:
    model, _proxy, _fake = table
    cpu, rss, rate = model.index(model.row_of("a"), Column.USAGE).data(HISTORY_ROLE)
    assert cpu == [0, 50, 100, 25]
    assert rss[-1] == 300 * MIB
    assert rate == [0.0, 1.0, 2.0, 3.0]
    assert model.index(model.row_of("b"), Column.USAGE).data(HISTORY_ROLE) is None
    assert model.index(model.row_of("a"), Column.CPU).data(HISTORY_ROLE) is None
    changed: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b, roles=(): changed.append((a.column(), b.column())))
    model.on_bridge_usage_sampled(10.0, 123)
    assert changed == [(Column.USAGE, Column.USAGE)], "a tick repaints the sparklines only"


def paint_cell(view: KernelTableView, index: QModelIndex) -> QImage:
    image = QImage(120, 24, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, 120, 24)
    option.widget = view
    painter = QPainter(image)
    try:
        view.sparklines.paint(painter, option, index)
    finally:
        painter.end()
    return image


def coloured_pixels(image: QImage) -> int:
    n = 0
    for x in range(image.width()):
        for y in range(image.height()):
            c = image.pixelColor(x, y)
            if abs(c.red() - c.blue()) > 40 or abs(c.green() - c.blue()) > 40:
                n += 1
    return n


def test_sparkline_delegate_paints_history(table: Any, qapp: Any) -> None:
    model, proxy, _fake = table
    view = KernelTableView(proxy)
    assert isinstance(view.itemDelegateForColumn(Column.USAGE), SparklineDelegate)
    with_history = proxy.mapFromSource(model.index(model.row_of("a"), Column.USAGE))
    without = proxy.mapFromSource(model.index(model.row_of("b"), Column.USAGE))
    assert coloured_pixels(paint_cell(view, with_history)) > 10, "lines were drawn"
    assert coloured_pixels(paint_cell(view, without)) == 0, "nothing to draw"
    view.resize(900, 200)
    view.show()
    assert not view.grab().isNull()  # the whole table paints, sparklines included
    view.hide()


def test_polyline_and_plot_points() -> None:
    rect = QRectF(0, 0, 100, 10)
    points = polyline([0, 5, 10], rect, slots=3)
    assert points == [QPointF(0, 10), QPointF(50, 5), QPointF(100, 0)]
    newest_right = polyline([10], rect, slots=5)
    assert newest_right == [QPointF(100, 0)]
    assert polyline([], rect) == []
    assert polyline([0, 0], rect)[0].y() == 10, "all zeros: a flat line at the bottom"
    placed = plot_points([(0, 1), (90, 2), (100, 4)], rect, now=100, span=50, top=4)
    assert placed == [QPointF(80, 5), QPointF(100, 0)], "points older than the span left out"


def test_axis_tops_and_formatters() -> None:
    assert nice_top(0.3) == 1
    assert nice_top(130) == 200
    assert nice_top(450) == 500
    assert nice_top(40, floor=100) == 100
    assert binary_top(300 * MIB) == 512 * MIB
    assert binary_top(0) == MIB
    assert format_bytes(512) == "512 B"
    assert format_bytes(300 * MIB) == "300 MiB"
    assert format_bytes(1536 * MIB) == "1.50 GiB"
    assert format_bytes(None) == ""
    assert format_cpu(3.14159) == "3.1 %"
    assert format_cpu(212.4) == "212 %"
    assert format_rate(0.25) == "0.2/s"
    assert format_rate(None) == ""
    assert usage_text(None, 0) == "CPU not measured · Memory not measured"
    assert usage_text(37.0, 3 * 1024 * MIB) == "CPU 37 % · Memory 3.00 GiB"
    assert memory_tooltip({"rss": None}) is None
    assert "kernelmon started" in origin_tooltip({})


def test_time_plot_paints_axes_and_the_current_value(qapp: Any) -> None:
    plot = TimePlot("Memory", format_bytes, QColor("purple"), top=binary_top)
    assert plot.current_text() == "no samples yet"
    plot.resize(300, 140)
    assert not plot.grab().isNull()
    plot.set_points([(0.0, 100 * MIB), (2.0, 300 * MIB)], now=2.0, span=600)
    assert plot.current_text() == "300 MiB"
    assert plot.top == 512 * MIB
    assert "300 MiB" in plot.toolTip()
    image = plot.grab().toImage()
    assert coloured_pixels(image) > 5, "the line is drawn"


def test_plots_show_the_shortest_span_that_holds_their_points() -> None:
    from kernelmon.ui.plot import shown_span

    assert shown_span([], now=100, full=600) == 60
    assert shown_span([(95.0, 1.0)], now=100, full=600) == 60
    assert shown_span([(0.0, 1.0)], now=100, full=600) == 120
    assert shown_span([(0.0, 1.0)], now=5000, full=600) == 600


def test_an_orphans_current_parent_is_never_called_its_owner() -> None:
    """An orphan's parent is whatever adopted it (PID 1, a reaper), not who started it."""
    from kernelmon.ui.details_pane import fact_text
    from kernelmon.ui.ownership import foreign_warning

    orphan = {"origin": "orphan", "parent_app": "systemd", "parent_pid": 1, "parent_alive": True}
    external = {**orphan, "origin": "external", "parent_app": "jupyter-lab", "parent_pid": 42}
    assert owner_text(orphan) == "an application that is no longer running"
    assert "systemd" not in origin_tooltip(orphan)
    assert "no longer running" in origin_tooltip(orphan)
    assert "systemd" not in foreign_warning(orphan, "shutting it down")
    assert fact_text("parent", orphan) == "an application that is no longer running"
    assert owner_text(external) == "jupyter-lab (pid 42)"
    assert "jupyter-lab (pid 42), running" in origin_tooltip(external)


def test_process_tree_text() -> None:
    from kernelmon.core.machine.resources import ProcessUsage
    from kernelmon.ui.details_pane import process_tree_text

    members = [
        ProcessUsage(10, 1.0, 50 * MIB, name="python", ppid=1),
        ProcessUsage(12, 0.0, 5 * MIB, name="sh", ppid=11),
        ProcessUsage(11, 0.0, 20 * MIB, name="python", ppid=10),
        ProcessUsage(13, 0.0, 1 * MIB, name="sleep", ppid=10),
    ]
    assert process_tree_text(members).splitlines() == [
        "10 python (50.0 MiB)",
        "  └ 11 python (20.0 MiB)",
        "    └ 12 sh (5.00 MiB)",
        "  └ 13 sleep (1.00 MiB)",
    ]
    assert process_tree_text(members, limit=2).splitlines()[-1] == "… and 2 more"
    assert process_tree_text([]) == ""


def test_with_more_names_what_was_left_out() -> None:
    assert with_more(["a", "b"], 2) == ["a", "b"]
    assert with_more(["a", "b"], 5) == ["a", "b", "… and 3 more"]
    assert with_more(["a"], 3, end=".") == ["a", "… and 2 more."]
    assert with_more([], 1) == ["… and 1 more"]
