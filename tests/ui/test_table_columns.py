"""The table's words without kernels: what the first column names, the column menu, the
sparkline legend, the event log's long lines, plurals (issue "the app as people use it",
items 1, 3, 7)."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QTreeWidget

from kernelmon.core.culler import cull_reason
from kernelmon.core.frontends import lost_text
from kernelmon.ui import columns, details_pane, figures, kernel_view
from kernelmon.ui.columns import Column
from kernelmon.ui.details_pane import fact_text
from kernelmon.ui.event_log import EventLogView
from kernelmon.ui.figures import memory_tooltip
from kernelmon.ui.kernel_table import KernelSortProxy, KernelTableModel
from kernelmon.ui.kernel_view import KernelTableView
from kernelmon.ui.sparkline import HISTORY_ROLE
from kernelmon.ui.tray import tooltip_text

UI_SOURCES = Path(__file__).resolve().parents[2] / "kernelmon" / "ui"


def model(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "0123456789abcdef",
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "execution_state": "idle",
        "origin": "owned",
    }
    base.update(fields)
    return base


def test_the_first_column_says_what_the_kernel_is_for(qapp: Any) -> None:
    table = KernelTableModel(refresh_ms=0)
    table.add_kernel("nb", model(notebook_path="work/analysis.ipynb", cwd="/home/u/work"))
    table.add_kernel("folder", model(cwd="/home/u/projects/weather"))
    table.add_kernel("app", model(origin="external", parent_app="jupyter-lab", parent_pid=42))
    # an orphan whose connection file names no kernel spec, and one nothing is known of
    table.add_kernel("orphan", model(origin="orphan", name="", display_name="", cwd="/srv/etl"))
    table.add_kernel("bare", model(origin="stale", name="", display_name=""))

    def cell(kid: str, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return table.index(table.row_of(kid), Column.KERNEL).data(role)

    assert [cell(k) for k in ("nb", "folder", "app", "orphan")] == [
        "analysis.ipynb",
        "weather",
        "jupyter-lab",
        "etl",
    ]
    assert cell("bare") == "unnamed kernel"
    tip = cell("nb", Qt.ItemDataRole.ToolTipRole)
    assert "Notebook: work/analysis.ipynb" in tip
    assert "Folder: /home/u/work" in tip
    assert "Python 3 (ipykernel)" in tip
    assert "names no kernel spec" in cell("orphan", Qt.ItemDataRole.ToolTipRole)
    for kid in ("nb", "orphan", "bare"):  # no spec known here: a plain kernel icon, never none
        icon = cell(kid, Qt.ItemDataRole.DecorationRole)
        assert icon is not None
        assert not icon.pixmap(16, 16).isNull()
    # a server's kernel: named by its notebook, never taken for kernelmon's own
    server = model(origin="server", notebook_path="reports/q3.ipynb", server_name="lab")
    assert figures.kernel_name(server) == "q3.ipynb"
    assert figures.origin_of(server) == "server"
    assert not figures.is_owned(server)
    # server kernels without the field, or with None, are named like any other
    assert figures.kernel_name(model(notebook_path=None, cwd="/x/y")) == "y"
    assert figures.kernel_label("0123456789", model(cwd="/x/y")) == "y 01234567"


def test_the_sparkline_has_a_legend_and_room(qapp: Any) -> None:
    table = KernelTableModel(refresh_ms=0)
    table.add_kernel("a", model(cpu_percent=12.0, rss=50 * 2**20, message_rate=3.0))
    tip = table.index(0, Column.USAGE).data(Qt.ItemDataRole.ToolTipRole)
    for line in ("CPU: 12 %", "Memory: 50.0 MiB", "Messages: 3.0/s", "#1e6fd9", "#8e44ad"):
        assert line in tip
    assert table.index(0, Column.USAGE).data(HISTORY_ROLE) is None  # no history: no lines
    proxy = KernelSortProxy()
    proxy.setSourceModel(table)
    view = KernelTableView(proxy)
    assert view.verticalHeader().defaultSectionSize() >= 28


def test_columns_are_chosen_from_the_header_menu_and_remembered(qapp: Any, tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    proxy = KernelSortProxy()
    proxy.setSourceModel(KernelTableModel(refresh_ms=0))
    view = KernelTableView(proxy, settings=settings)
    hidden = {c for c in Column if view.isColumnHidden(c)}
    assert hidden == set(columns.DEFAULT_HIDDEN)
    assert {Column.CWD, Column.PID, Column.BUFFERED} <= hidden
    menu = view.column_menu()
    by_title = {a.text(): a for a in menu.actions()}
    assert not by_title["Kernel"].isEnabled(), "the name column always shows"
    assert not by_title["PID"].isChecked()
    by_title["PID"].setChecked(True)
    by_title["Memory"].setChecked(False)
    assert not view.isColumnHidden(Column.PID)
    assert view.isColumnHidden(Column.MEMORY)
    # a later launch shows what was chosen
    again = KernelTableView(proxy, settings=QSettings(settings.fileName(), settings.format()))
    assert not again.isColumnHidden(Column.PID)
    assert again.isColumnHidden(Column.MEMORY)
    # a column that means nothing now stays hidden, and comes back as chosen
    again.set_column_available(Column.CULL_ETA, False)
    assert again.isColumnHidden(Column.CULL_ETA)
    again.set_column_available(Column.CULL_ETA, True)
    assert not again.isColumnHidden(Column.CULL_ETA)
    # garbage in the file is ignored, never an error
    settings.setValue(kernel_view.COLUMNS_KEY, ["NOT_A_COLUMN", "KERNEL", "PID"])
    third = KernelTableView(proxy, settings=settings)
    assert third.isColumnHidden(Column.PID)
    assert not third.isColumnHidden(Column.KERNEL)


def test_long_event_lines_are_elided_in_the_middle_with_the_whole_in_a_tooltip(
    qapp: Any,
) -> None:
    log = EventLogView()
    assert isinstance(log, QTreeWidget)
    long = "found a stale connection file: " + "/very/long/folder" * 30 + "/kernel-1.json"
    log.add("0123456789abcdef", long + "\nsecond line")
    item = log.topLevelItem(0)
    assert item is not None
    assert log.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert "\n" not in item.text(2), "one line a row"
    assert item.toolTip(2) == long + "\nsecond line"
    assert "01234567" in item.text(1)


def test_a_stale_kernel_s_details_do_not_contradict_themselves() -> None:
    stale = model(
        origin="stale",
        pid=None,
        processes=None,
        started="2026-01-02T03:04:05Z",
        first_seen="2026-01-02T03:04:05Z",
    )
    assert fact_text("pid", stale) == "none"
    assert fact_text("processes", stale) == details_pane.NO_PROCESS
    started = fact_text("started", stale)
    assert started.startswith("unknown (found at ")
    assert "just now" not in started


def test_plurals_are_words() -> None:
    ones = [model(execution_state="idle")]
    assert tooltip_text(ones, 0) == "kernelmon: 1 kernel: 1 running, 0 busy, 0 dead"
    assert tooltip_text([], 0) == "kernelmon: no kernels"
    assert "1 process:" in str(memory_tooltip(model(rss=1, processes=1)))
    assert lost_text(1).startswith("1 message of")
    assert figures.plural(2, "kernel") == "2 kernels"
    assert figures.plural(0, "kernel") == "0 kernels"


def test_no_kernel_s_anywhere_in_the_ui() -> None:
    """No "(s)" in any text the window can show (its strings and f-strings)."""
    found = []
    for path in sorted(UI_SOURCES.glob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for tok in tokens:
            if tok.type == tokenize.STRING and "(s)" in tok.string:
                found.append(f"{path.name}:{tok.start[0]}: {tok.string}")
    assert not found, "\n".join(found)


def test_a_cull_reason_counts_in_words() -> None:
    from datetime import UTC, datetime, timedelta

    from kernelmon.core import Settings
    from kernelmon.core.records import KernelRecord

    now = datetime.now(UTC)
    record = KernelRecord(id="k", name="python3", last_activity=now - timedelta(seconds=99))
    record.execution_state = "idle"
    record.connections = 1
    settings = Settings(cull_idle_timeout=10, cull_connected=True)
    reason = cull_reason(record, settings, now)
    assert reason is not None
    assert "1 connection)" in reason, reason
