"""UI test fixtures: one qasync loop per module, a KernelMap and a window on it.

Tests drive the app from inside coroutines run on the qasync loop (``qloop.run(...)``), so
tasks the UI starts and Qt's own events are processed together, as in the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from PySide6.QtWidgets import QApplication

import qasync  # isort: skip  (PySide6 first)

from kernelmon.core import KernelMap, Settings
from kernelmon.ui import dialogs
from tests.waiting import wait_until  # the tests of this package import it from here too

if TYPE_CHECKING:
    from kernelmon.ui.console import ConsoleWindow
    from kernelmon.ui.kernel_table import Column
    from kernelmon.ui.main_window import MainWindow
    from kernelmon.ui.tray import KernelTray

T = TypeVar("T")


class QtLoop:
    """A qasync loop the tests of a module share (kernels live on it)."""

    def __init__(self, loop: qasync.QEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def sleep(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))


@pytest.fixture(scope="module")
def qloop(qapp: QApplication) -> Iterator[QtLoop]:
    """The module's qasync loop; Qt events pytest-qt processes between a test's phases
    go through it while the module lasts (``tests.qt_loop.LoopApplication``)."""
    from tests.qt_loop import LoopApplication

    assert isinstance(qapp, LoopApplication), "qapp_cls is the suite's LoopApplication"
    loop = qasync.QEventLoop(qapp)
    qapp.asyncio_loop = loop
    try:
        yield QtLoop(loop)
    finally:
        qapp.asyncio_loop = None
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui-root")
    (root / "project").mkdir()
    return root


@contextlib.contextmanager
def closed_after(qloop: QtLoop, km: KernelMap) -> Iterator[KernelMap]:
    """``km``, closed (its kernels shut down) on the loop after the block."""
    try:
        yield km
    finally:
        qloop.run(km.close())


@pytest.fixture(scope="module")
def kernel_map(qloop: QtLoop, ui_root: Path) -> Iterator[KernelMap]:
    with closed_after(
        qloop, KernelMap(Settings(root_dir=str(ui_root), kernel_info_timeout=30))
    ) as km:
        yield km


@contextlib.contextmanager
def another_window(
    kernel_map: KernelMap, settings_path: Path | str, **options: Any
) -> Iterator[MainWindow]:
    """A second ``MainWindow`` on ``kernel_map`` (a relaunch, or a look at what a window
    saved; no tray unless ``use_tray``), closed after the block: bridge, window, object."""
    from kernelmon.ui.main_window import MainWindow

    options.setdefault("use_tray", False)
    other = MainWindow(kernel_map, settings_path=settings_path, **options)
    try:
        yield other
    finally:
        other.bridge.close()
        other.hide()
        other.deleteLater()


@pytest.fixture(scope="module")
def window(qloop: QtLoop, kernel_map: KernelMap, tmp_path_factory: pytest.TempPathFactory):
    from kernelmon.ui.main_window import MainWindow

    folder = tmp_path_factory.mktemp("ui-state")
    win = MainWindow(
        kernel_map,
        use_tray=False,
        settings_path=folder / "settings.json",
        window_state_path=folder / "window.ini",
    )
    win.show()
    yield win
    win.tasks.cancel_all()
    qloop.run(win.tasks.wait_all())
    win.bridge.close()
    win.hide()
    win.deleteLater()


@pytest.fixture
def no_dialogs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Replace every question with a recorded "yes" (tests change the answers)."""
    asked: dict[str, list[Any]] = {"confirm": [], "ask_quit": [], "show_error": []}

    def confirm(parent: Any, title: str, text: str, **kw: Any) -> tuple[bool, bool]:
        asked["confirm"].append((title, text))
        return True, False

    def ask_quit(parent: Any, running: int) -> dialogs.QuitChoice:
        asked["ask_quit"].append(running)
        return dialogs.QuitChoice.SHUT_DOWN

    def show_error(parent: Any, title: str, text: str) -> None:
        asked["show_error"].append((title, text))

    monkeypatch.setattr(dialogs, "confirm", confirm)
    monkeypatch.setattr(dialogs, "ask_quit", ask_quit)
    monkeypatch.setattr(dialogs, "show_error", show_error)
    monkeypatch.setattr(dialogs, "choose_folder", lambda parent, title: None)
    return asked


class LoopLagMeter:
    """How late a 10 ms Qt timer fires: the gaps between its ticks, in seconds.

    On Linux the time the GUI thread spent waiting for a CPU (``run_delay`` in
    /proc/self/task/<tid>/schedstat) is taken out of each gap: on a machine where other
    processes oversubscribe the CPUs, the thread is runnable but not running, which is not a
    freeze of the app. Time spent computing or blocked (e.g. in a synchronous call) counts.
    """

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self._stat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self._last = (time.perf_counter(), self._run_delay())
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _run_delay(self) -> float:
        try:
            with open(self._stat) as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def _tick(self) -> None:
        now, waited = time.perf_counter(), self._run_delay()
        self.gaps.append((now - self._last[0]) - (waited - self._last[1]))
        self._last = (now, waited)

    def start(self) -> None:
        self._last = (time.perf_counter(), self._run_delay())
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def pid_alive(pid: int | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def state_of(window: MainWindow, kid: str) -> str:
    """The kernel's execution state in the window's table ("None" while it has no row)."""
    return str((window.table_model.kernel_model(kid) or {}).get("execution_state"))


def cell(window: MainWindow, kid: str, column: Column, role: int = 0) -> Any:
    """What the table shows in the kernel's row, in ``column`` (``role``: display)."""
    model = window.table_model
    return model.index(model.row_of(kid), column).data(role)


def open_console(window: MainWindow, kid: str) -> ConsoleWindow:
    """The console on ``kid``, opened (or raised) as the user does: select, then Console."""
    window.select_kernel(kid)
    window.actions_by_name["console"].trigger()
    return window.consoles.consoles[kid]


async def connected_console(window: MainWindow, kid: str) -> ConsoleWindow:
    """``open_console``, once it is connected (its input enabled)."""
    console = open_console(window, kid)
    await wait_until(lambda: console.input.isEnabled())
    return console


@contextlib.contextmanager
def window_tray(window: MainWindow) -> Iterator[KernelTray]:
    """A tray icon on ``window`` (offscreen has no tray, so the window made none), the
    window's as when a tray is available, until the block ends."""
    tray = window.create_tray()
    window.tray = tray
    try:
        yield tray
    finally:
        window.tray = None
        tray.deleteLater()


def edit_field(panel: Any, name: str, text: str) -> None:
    """Type ``text`` into a settings panel's field and leave it (as Enter or Tab does)."""
    from kernelmon.ui.unit_field import NumberField

    field = panel.edits[name]
    if isinstance(field, NumberField):
        field.set_value(float(text))
    else:
        field.setText(text)
    field.editingFinished.emit()


def run_kernelmon(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m kernelmon ARGS`` offscreen, with ``env`` added to this environment and
    no terminal input; what it printed and its exit status."""
    return subprocess.run(
        [sys.executable, "-m", "kernelmon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
        stdin=subprocess.DEVNULL,
    )
