"""The console: output, errors, and output kept while it is closed, replayed on reopening."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kernelmon.core import KernelMap
from kernelmon.core.protocol import iopub
from kernelmon.ui.console import (
    FRAME_LINES,
    ConsoleWindow,
    dropped_text,
    message_text,
    strip_ansi,
)
from kernelmon.ui.main_window import MainWindow

from .conftest import QtLoop, connected_console, open_console, wait_until


@pytest.fixture(scope="module")
def kid(qloop: QtLoop, window: MainWindow) -> str:
    async def start() -> str:  # UI actions run on the running loop, as in the app
        return str(await window.commands.request_start("python3"))

    return qloop.run(start())


def test_pure_message_rendering() -> None:
    assert strip_ansi("\x1b[0;31mZeroDivisionError\x1b[0m: x") == "ZeroDivisionError: x"
    stream = {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": "hi\n"}}
    assert message_text(stream) == "hi\n"
    result = {
        "header": {"msg_type": "execute_result"},
        "content": {"execution_count": 3, "data": {"text/plain": "42"}},
    }
    assert message_text(result) == "Out[3]: 42\n"
    assert message_text({"header": {"msg_type": "status"}, "content": {}}) is None


def test_console_runs_code_and_shows_output_and_errors(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str
) -> None:
    async def go() -> ConsoleWindow:
        console = await connected_console(window, kid)
        assert kernel_map.kernel_model(kid)["connections"] == 1
        console.input.setText("print('hello'); 40 + 2")
        console.input.returnPressed.emit()
        assert console.input.text() == ""
        await wait_until(lambda: "Out[1]: 42" in console.text())
        console.execute("1/0")
        await wait_until(lambda: "ZeroDivisionError" in console.text())
        return console

    console = qloop.run(go())
    text = console.text()
    assert "In [1]: print('hello'); 40 + 2" in text
    assert "hello\n" in text
    assert "\x1b" not in text, "ANSI colour codes are stripped"
    # opening again raises the same window
    assert open_console(window, kid) is console

    async def close() -> None:
        console.close()
        await wait_until(lambda: kernel_map.kernel_model(kid)["connections"] == 0)

    qloop.run(close())
    assert kid not in window.consoles.consoles


def test_reopened_console_replays_what_it_missed(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str
) -> None:
    key = window.consoles.session_key(kid)

    async def go() -> ConsoleWindow:
        console = await connected_console(window, kid)
        assert console.connection is not None
        assert console.connection.session_key == key
        # code that keeps talking after the console is closed
        console.execute(
            "import threading, time\n"
            "def later():\n"
            "    time.sleep(0.3)\n"
            "    print('said while you were away', flush=True)\n"
            "threading.Thread(target=later).start()"
        )
        console.close()
        await wait_until(lambda: kernel_map.kernel_model(kid)["connections"] == 0)
        await wait_until(lambda: kernel_map.kernel_model(kid)["buffered"] >= 1)
        await asyncio.sleep(0.6)
        reopened = open_console(window, kid)
        assert reopened is not console
        await wait_until(lambda: reopened.input.isEnabled())
        return reopened

    reopened = qloop.run(go())
    assert reopened.connection is not None
    assert reopened.connection.session_key == key, "the same session key for the kernel"
    assert reopened.connection.replayed >= 1
    text = reopened.text()
    assert "said while you were away" in text
    replayed = reopened.connection.replayed
    assert f"{replayed} message" in text
    # usually busy, output and idle; only the output when busy and idle reached the console
    # before its connection closed (a loaded machine)
    shown = f"closed {'is' if replayed == 1 else 'are'} shown above"
    assert shown in text
    assert text.index("said while you were away") < text.index(shown), (
        "the output came from the buffer, before the note"
    )
    assert kernel_map.kernel_model(kid)["buffered"] == 0


def test_console_batches_output_and_keeps_a_bounded_scrollback(qapp: Any) -> None:
    console = ConsoleWindow("k", "bounded", lambda coro, what: coro.close(), scrollback=100)
    for i in range(250):  # one message a line, with no frame in between: one insertion
        console.append(f"{i}\n")
    assert console.flushes == 0, "appended with the next frame, not at once"
    lines = console.text().splitlines()
    assert console.flushes == 1
    assert lines == [str(i) for i in range(150, 250)]
    assert console.dropped == 150
    assert console.dropped_label.text() == dropped_text(150)
    assert "150 older lines dropped" in console.dropped_label.text()
    assert not console.dropped_label.isHidden()
    # More at once than the scrollback holds: only the tail is inserted, all is counted.
    console.append("".join(f"b{i}\n" for i in range(1000)))
    console.append("partial")
    lines = console.text().splitlines()
    # the last 100 complete lines, and the line being written
    assert lines == [f"b{i}" for i in range(900, 1000)] + ["partial"]
    assert console.dropped_label.text() == dropped_text(150 + 100 + 900)
    assert console.dropped + console.lines() == 250 + 1000 + 1
    console.on_output_lost(7, "7 message(s) of the kernel's output never reached kernelmon")
    assert console.text().splitlines()[-1] == (
        "── Output missing here: 7 message(s) of the kernel's output never reached kernelmon ──"
    ), "on a line of its own, after the partial line"
    assert console.lines() == 100
    console.close()


def test_console_inserts_a_burst_over_several_frames(qapp: Any) -> None:
    console = ConsoleWindow("k", "frames", lambda coro, what: coro.close())
    console.append("".join(f"{i}\n" for i in range(2 * FRAME_LINES + 200)))
    shown = []
    for _ in range(3):
        console._next_frame()  # what the frame timer calls
        shown.append(console.lines())
    assert shown == [FRAME_LINES, 2 * FRAME_LINES, 2 * FRAME_LINES + 200]
    assert console.text().splitlines() == [str(i) for i in range(2 * FRAME_LINES + 200)]
    console.close()


def test_console_flooded_by_a_kernel_keeps_the_last_lines(
    qloop: QtLoop, window: MainWindow, kid: str
) -> None:
    told: list[int] = []  # losses told to the console (each writes a note where it happened)

    async def go() -> ConsoleWindow:
        console = await connected_console(window, kid)
        console.scrollback = 500
        connection = console.connection
        assert connection is not None
        tell = connection.on_lost
        assert tell is not None

        def counted(n: int, text: str) -> None:
            told.append(n)
            tell(n, text)

        connection.on_lost = counted
        console.execute("for i in range(3000): print(f'line {i}', flush=True)")
        await wait_until(lambda: "line 2999\n" in console.text() or told, timeout=60)
        await asyncio.sleep(iopub.GRACE + 0.5)  # a loss is counted a grace period after
        return console

    console = qloop.run(go())
    lines = console.text().splitlines()
    if told:
        # A starved machine: the kernel's own PUB socket dropped output before it reached
        # kernelmon. The console was told (its note is tested above), never left silent.
        # The flood may still be arriving (the wait ended at the loss): the line being
        # written, if any, is kept beside the last 500.
        assert console.lines() <= 500 + (not console.text().endswith("\n"))
        return
    assert console.lines() == 500
    assert lines == [f"line {i}" for i in range(2500, 3000)], "nothing lost"
    assert console.dropped_label.text() == dropped_text(console.dropped)
    assert console.dropped >= 2500
    assert console.flushes < 3000, "batched, not one insertion per message"


def test_console_says_when_its_kernel_goes(
    qloop: QtLoop, window: MainWindow, kernel_map: KernelMap, kid: str, no_dialogs: Any
) -> None:
    console = window.consoles.consoles[kid]

    async def go() -> None:
        window.commands.request_shutdown([kid])
        await wait_until(lambda: kid not in kernel_map, timeout=30)
        await wait_until(lambda: not console.input.isEnabled())

    qloop.run(go())
    assert "The kernel is gone" in console.text()
    assert kid not in window.consoles.session_keys
    console.close()
