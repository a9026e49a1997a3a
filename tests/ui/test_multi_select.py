"""Actions on several selected kernels: one confirmation, then every kernel, concurrently."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QAbstractItemView

from kernelmon.core import KernelMap
from kernelmon.ui import commands
from kernelmon.ui.kernel_table import Column, KernelSortProxy, KernelTableModel
from kernelmon.ui.kernel_view import KernelTableView
from kernelmon.ui.main_window import MainWindow

from .conftest import QtLoop, pid_alive, state_of, wait_until
from .test_kernel_table import model_for


@pytest.fixture(scope="module")
def kids(qloop: QtLoop, window: MainWindow) -> list[str]:
    """Two kernels, both idle, shared by the tests of this module."""

    async def go() -> list[str]:
        tasks = [window.commands.request_start("python3") for _ in range(2)]
        ids = [str(await t) for t in tasks]
        await wait_until(lambda: all(state_of(window, k) == "idle" for k in ids), timeout=30)
        return ids

    return qloop.run(go())


def select_both(window: MainWindow, kids: list[str]) -> None:
    window.select_kernels(kids)
    assert sorted(window.table.selected_kernel_ids()) == sorted(kids)


def test_several_selected_rows_survive_sorting_and_updates(qapp: Any) -> None:
    model = KernelTableModel(refresh_ms=0)
    for kid in ["c", "a", "b"]:
        model.add_kernel(kid, model_for(kid))
    proxy = KernelSortProxy()
    proxy.setSourceModel(model)
    view = KernelTableView(proxy)
    assert view.selectionMode() == QAbstractItemView.SelectionMode.ExtendedSelection
    flags = QItemSelectionModel.SelectionFlag
    for row in (0, 2):  # "a" and "c"
        view.selectionModel().select(proxy.index(row, 0), flags.Select | flags.Rows)
    assert view.selected_kernel_ids() == ["a", "c"]
    view.sortByColumn(Column.KERNEL, Qt.SortOrder.DescendingOrder)
    assert view.selected_kernel_ids() == ["c", "a"], "table order"
    model.update_kernel("b", model_for("b", cwd="/zzz"))  # b moves to the top
    model.remove_kernel("c")
    model.add_kernel("d", model_for("d"))
    assert view.selected_kernel_ids() == ["a"]
    assert view.selected_kernel_id() == "a"


def test_select_kernels_selects_exactly_those(window: MainWindow, kids: list[str]) -> None:
    select_both(window, kids)
    window.select_kernel(kids[0])
    assert window.table.selected_kernel_ids() == [kids[0]], "select_kernel selects only that kernel"


def test_copy_id_copies_every_selected_id(window: MainWindow, kids: list[str]) -> None:
    select_both(window, kids)
    assert window.actions_by_name["copy_id"].isEnabled()
    window.actions_by_name["copy_id"].trigger()
    assert sorted(QGuiApplication.clipboard().text().split("\n")) == sorted(kids)
    assert "2 kernel ids" in window.status.currentMessage()


def test_open_console_opens_one_per_kernel_up_to_the_cap(
    qloop: QtLoop, window: MainWindow, kids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def go() -> None:  # UI actions run on the running loop, as in the app
        monkeypatch.setattr(commands, "MAX_CONSOLES", 1)
        select_both(window, kids)
        window.actions_by_name["console"].trigger()
        assert len(window.consoles.consoles) == 1, "capped"
        assert "first 1 of 2 kernels" in window.status.currentMessage()
        monkeypatch.setattr(commands, "MAX_CONSOLES", 8)
        window.actions_by_name["console"].trigger()
        assert set(window.consoles.consoles) == set(kids)
        consoles = list(window.consoles.consoles.values())
        await wait_until(lambda: all(c.connection is not None for c in consoles))
        await window.consoles.close_all()

    qloop.run(go())
    assert not window.consoles.consoles


def test_restart_asks_once_then_restarts_both(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kids: list[str], no_dialogs: Any
) -> None:
    old_pids = {k: kernel_map.kernel_model(k)["pid"] for k in kids}
    select_both(window, kids)

    async def go() -> None:
        window.actions_by_name["restart"].trigger()
        assert not window.actions_by_name["restart"].isEnabled(), "both are restarting"
        await wait_until(
            lambda: all(kernel_map.kernel_model(k)["restarts"] == 1 for k in kids), timeout=40
        )
        await wait_until(lambda: not window.progress.isVisibleTo(window), timeout=40)

    qloop.run(go())
    assert len(no_dialogs["confirm"]) == 1, "one confirmation for both"
    title, text = no_dialogs["confirm"][0]
    assert title == "Restart kernels"
    assert text.startswith("Restart these 2 kernels? ")
    for k in kids:
        assert window.commands.label(k) in text
        assert kernel_map.kernel_model(k)["pid"] != old_pids[k]
        assert pid_alive(kernel_map.kernel_model(k)["pid"])
    assert sorted(window.table.selected_kernel_ids()) == sorted(kids), "the selection survived"
    assert window.actions_by_name["restart"].isEnabled()


def test_one_failure_does_not_stop_the_other(
    qloop: QtLoop,
    window: MainWindow,
    kernel_map: KernelMap,
    kids: list[str],
    no_dialogs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernelmon.core import RestartTimeout

    bad, good = kids
    restarts = kernel_map.kernel_model(good)["restarts"]
    real_restart = kernel_map.restart_kernel

    async def restart(kernel_id: str) -> None:
        if kernel_id == bad:
            raise RestartTimeout(f"Kernel {kernel_id} did not answer within 1 s.")
        await real_restart(kernel_id)

    monkeypatch.setattr(kernel_map, "restart_kernel", restart)
    select_both(window, kids)

    async def go() -> None:
        for task in window.commands.request_restart(window.table.selected_kernel_ids()):
            await task

    qloop.run(go())
    assert kernel_map.kernel_model(good)["restarts"] == restarts + 1
    ((title, text),) = no_dialogs["show_error"]
    assert window.commands.label(bad) in title
    assert "did not answer" in text


def test_interrupt_stops_both_busy_kernels(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kids: list[str]
) -> None:
    errors: dict[str, list[str]] = {k: [] for k in kids}

    def on_message(kid: str) -> Any:
        def record(channel: str, msg: dict[str, Any]) -> None:
            if msg.get("header", {}).get("msg_type") == "error":
                errors[kid].append(str(msg["content"].get("ename")))

        return record

    async def go() -> None:
        conns = [await kernel_map.connect(k, f"sleeper-{k}", on_message(k)) for k in kids]
        for conn in conns:
            conn.execute("import time; time.sleep(60)")
        await wait_until(lambda: all(state_of(window, k) == "busy" for k in kids), timeout=20)
        select_both(window, kids)
        assert window.actions_by_name["interrupt"].isEnabled()
        window.actions_by_name["interrupt"].trigger()
        await wait_until(lambda: all(state_of(window, k) == "idle" for k in kids), timeout=20)
        await wait_until(lambda: all(errors[k] for k in kids), timeout=10)
        for conn in conns:
            await conn.close()

    qloop.run(go())
    assert errors == {k: ["KeyboardInterrupt"] for k in kids}


def test_shutdown_asks_once_then_removes_both(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kids: list[str], no_dialogs: Any
) -> None:
    pids = [kernel_map.kernel_model(k)["pid"] for k in kids]
    select_both(window, kids)

    async def go() -> None:
        window.actions_by_name["shutdown"].trigger()
        await wait_until(lambda: window.table_model.rowCount() == 0, timeout=30)
        await wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)

    qloop.run(go())
    assert len(no_dialogs["confirm"]) == 1, "one confirmation for both"
    title, text = no_dialogs["confirm"][0]
    assert title == "Shut down kernels"
    assert text.startswith("Shut down these 2 kernels? ")
    assert all(k not in kernel_map for k in kids)
    assert window.table.selected_kernel_ids() == []
    for name in ("restart", "interrupt", "shutdown", "console", "copy_id"):
        assert not window.actions_by_name[name].isEnabled(), name


def test_confirmations_name_ten_kernels_and_count_the_rest(
    qapp: Any, no_dialogs: Any, tmp_path: Any
) -> None:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QWidget

    from kernelmon.ui.confirmations import Confirmations
    from kernelmon.ui.store import KernelStore

    store = KernelStore()
    ids = [f"k{i:02d}" for i in range(12)]
    for kid in ids:
        store.put(kid, model_for(kid, origin="external", connection_file=f"/run/{kid}.json"))
    parent = QWidget()
    ask = Confirmations(
        parent, QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat), store
    )
    assert ask.ask_kernels("restart", "Restart", ids, "one", "many")
    assert ask.ask_cleanup([f"/run/{kid}.json" for kid in ids])
    assert ask.ask_foreign("Restart", "restarting it", ids)
    texts = [text for _, text in no_dialogs["confirm"]]
    for text, last in zip(texts, ["… and 2 more", "… and 2 more", "… and 2 more."], strict=True):
        assert ids[9] in text
        assert ids[10] not in text
        assert last in text.splitlines()
