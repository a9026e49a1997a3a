"""The console as people use it: Interrupt and Restart buttons and their shortcuts while the
console has the focus, Esc and Ctrl+W close it, it opens beside the window, start-up noise
after a restart is folded away; a console on another application's kernel (a real kernel
a separate launcher process started) is opened only after a warning."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtTest import QTest

from kernelmon.core import KernelMap
from kernelmon.ui import dialogs
from kernelmon.ui.main_window import MainWindow
from tests.discovery.conftest import Launched, launch, own_processes  # noqa: F401  (fixtures)

from . import test_other_kernels as other
from .conftest import QtLoop, connected_console, wait_until

# one kernel a launcher process started, watched by the module's map, and one of kernelmon's
# own (test_other_kernels')
launched = other.launched
kernel_map = other.kernel_map
kids = other.kids

#: What debugpy writes to stderr when a kernel starts under Python 3.11+ (ipykernel forwards
#: it on IOPub as a stream message that answers no request); as received by the console.
FROZEN = {
    "header": {"msg_type": "stream"},
    "parent_header": {},
    "content": {
        "name": "stderr",
        "text": (
            "0.00s - Debugger warning: It seems that frozen modules are being used, which may\n"
        ),
    },
}


def press(
    widget: Any, key: Qt.Key, modifier: Any = Qt.KeyboardModifier.NoModifier, closes: bool = False
) -> None:
    """A key pressed in ``widget``'s window (active, as the user's); only pressed, not also
    released, when it ``closes`` the window (its widgets are deleted then)."""
    window = widget.window()
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window, 10_000)
    widget.setFocus()
    (QTest.keyPress if closes else QTest.keyClick)(widget, key, modifier)


def test_the_console_opens_beside_the_window(qapp: Any, kernel_map: KernelMap) -> None:
    from PySide6.QtWidgets import QWidget

    from kernelmon.ui.console import ConsoleWindow
    from kernelmon.ui.console_manager import MIN_WIDTH, ConsoleManager, beside

    # a main window narrow enough for a console beside it on the test screen (800 px)
    window = QWidget()
    window.resize(250, 300)
    window.show()
    screen = window.screen().availableGeometry()
    window.move(screen.topLeft())
    frame = window.frameGeometry()
    assert screen.right() - frame.right() >= MIN_WIDTH
    manager = ConsoleManager(kernel_map, lambda coro, what: coro.close(), window)
    console = ConsoleWindow("k", "test", lambda coro, what: coro.close())
    try:
        manager.place(console)
        console.show()
        assert not console.frameGeometry().intersects(frame)
        assert console.x() > frame.right()
    finally:
        console.close()
        window.close()
    # the rule, on a wider screen: right of the window, else left, narrowed to fit
    wide = QRect(0, 0, 1920, 1080)
    assert beside(QRect(100, 50, 1100, 700), (700, 450), wide).left() == 1200
    left = beside(QRect(700, 50, 1100, 700), (700, 450), wide)
    assert left.right() < 700
    assert left.width() == 700
    narrow = beside(QRect(500, 50, 1100, 700), (700, 450), wide)
    assert narrow.right() < 500
    assert narrow.width() == 500, "narrowed to fit"
    cramped = beside(QRect(111, 177, 1100, 600), (700, 450), QRect(0, 0, 1400, 900))
    assert cramped.right() == 1399, "at the edge of the roomier side"
    assert cramped.width() == 520, "narrower: it covers the window's edge only"
    second = beside(QRect(100, 50, 1100, 700), (700, 450), wide, nth=1)
    assert second.topLeft() != beside(QRect(100, 50, 1100, 700), (700, 450), wide).topLeft()


def test_console_buttons_shortcuts_and_closing_keys(
    qloop: QtLoop, window: MainWindow, kids: dict[str, str], no_dialogs: dict[str, list[Any]]
) -> None:
    kid = kids["owned"]
    console = qloop.run(connected_console(window, kid))
    assert console.interrupt_button.isEnabled()
    assert console.restart_button.isEnabled()
    assert "Ctrl+I" in console.interrupt_button.toolTip()
    assert console.windowTitle() == f"Console: {window.commands.label(kid)}", "as the table"

    async def interrupt() -> None:
        console.input.setText("import time; time.sleep(60)")
        console.input.returnPressed.emit()
        await wait_until(lambda: window.store.get(kid)["execution_state"] == "busy")
        press(console.input, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
        await wait_until(lambda: "KeyboardInterrupt" in console.text(), timeout=60)

    qloop.run(interrupt(), timeout=120)

    async def restart() -> None:
        press(console.input, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        await wait_until(lambda: "The kernel restarted" in console.text(), timeout=60)
        await wait_until(lambda: kid not in window.commands.restarting, timeout=60)
        console.input.setText("print('after', 'restart')")
        console.input.returnPressed.emit()
        await wait_until(lambda: "after restart" in console.text(), timeout=60)

    qloop.run(restart(), timeout=180)
    assert [t for t, _ in no_dialogs["confirm"]] == ["Restart kernel"], "asked as the window asks"
    # the restarted kernel's start-up noise (debugpy's warning) is not in the output
    assert "frozen modules" not in console.text()
    if console.noise:
        assert console.noise_button.isVisible()
        assert not console.noise_view.isVisible()
        console.noise_button.click()
        assert console.noise_view.isVisible()
        assert "frozen modules" in console.noise_view.toPlainText()
        assert "start-up output" in console.noise_button.text()

    async def close_with_keys() -> None:  # in the app, closing runs on the running loop
        press(console.input, Qt.Key.Key_Escape, closes=True)
        assert kid not in window.consoles.consoles, "Esc closed it"
        again = window.consoles.open(kid)
        await wait_until(lambda: again.input.isEnabled())
        press(again.output, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier, closes=True)
        assert kid not in window.consoles.consoles, "Ctrl+W closed it"

    qloop.run(close_with_keys())


def test_startup_noise_is_folded_and_shown_on_click(qapp: Any) -> None:
    from kernelmon.ui.console import ConsoleWindow

    console = ConsoleWindow("k", "test", lambda coro, what: coro.close())
    try:
        console.on_message("iopub", FROZEN)
        answer = {**FROZEN, "parent_header": {"msg_id": "1", "msg_type": "execute_request"}}
        console.on_message("iopub", answer)  # stderr of code someone ran: shown
        assert console.text().count("frozen modules") == 1
        assert console.noise_button.text() == "Show 1 line of start-up output"
        console.noise_button.click()
        assert "frozen modules" in console.noise_view.toPlainText()
        assert console.noise_button.text().startswith("Hide")
    finally:
        console.close()


def test_a_console_on_another_application_s_kernel_warns_first(
    qloop: QtLoop,
    window: MainWindow,
    kids: dict[str, str],
    launched: Launched,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ext = kids["external"]
    answers = [False, True]
    asked: list[dict[str, Any]] = []

    def confirm(parent: Any, title: str, text: str, **kw: Any) -> tuple[bool, bool]:
        asked.append({"title": title, "text": text, **kw})
        return answers.pop(0), False

    monkeypatch.setattr(dialogs, "confirm", confirm)

    async def go() -> None:  # in the app, actions run on the running loop
        window.select_kernel(ext)
        window.actions_by_name["console"].trigger()
        assert ext not in window.consoles.consoles, "refused: no console"
        window.actions_by_name["console"].trigger()  # accepted this time
        console = window.consoles.consoles[ext]
        try:
            await wait_until(lambda: console.input.isEnabled())
            assert not console.restart_button.isEnabled(), "the core refuses restarting it"
            assert "Cannot restart" in console.restart_button.toolTip()
            window.actions_by_name["console"].trigger()  # open: raised without asking again
            assert len(asked) == 2
        finally:
            console.close()

    qloop.run(go())
    assert asked[0]["title"] == "Open a console on another application's kernel"
    assert f"(pid {launched.proc.pid})" in asked[0]["text"]
    assert asked[0]["warning"] is True
    assert asked[0]["can_skip"] is False
    assert asked[0]["ok_text"] == "Open console"
