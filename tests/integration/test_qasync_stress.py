"""Regression guard: hundreds of thousands of loop callbacks under qasync with PySide6.

PySide6 6.12.0 with qasync 0.28 crashed the interpreter ("Fatal Python error: none_dealloc"
in qasync's timerEvent) after roughly 1e5 callbacks; pyproject.toml pins PySide6 below 6.12.
The work runs in a child process so that a crash fails this test instead of killing the
test session. Checked both ways: the script below aborts with that fatal error within a
second under PySide6-Essentials 6.12.0 (qasync 0.28.0) and completes under 6.11.3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CALLBACKS = 300_000

SCRIPT = textwrap.dedent(
    f"""
    import asyncio, sys
    from PySide6.QtWidgets import QApplication  # PySide6 before qasync
    import qasync

    app = QApplication([])
    loop = qasync.QEventLoop(app)
    done = loop.create_future()
    count = 0

    def step(chain):
        global count
        count += 1
        if count >= {CALLBACKS}:
            if not done.done():
                done.set_result(count)
            return
        loop.call_soon(step, chain)

    for chain in range(4):  # several interleaved call_soon chains
        loop.call_soon(step, chain)

    async def timers():  # and timers, which go through qasync's timerEvent too
        n = 0
        while not done.done():
            await asyncio.sleep(0)
            n += 1
        return n

    ticks = loop.create_task(timers())
    result = loop.run_until_complete(done)
    loop.run_until_complete(ticks)
    loop.close()
    print("ok", result, flush=True)
    """
)


def test_hundreds_of_thousands_of_callbacks_do_not_crash() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, (
        f"qasync + PySide6 died (exit {result.returncode}); see pyproject's PySide6 pin.\n"
        f"{result.stderr[-2000:]}"
    )
    assert result.stdout.split()[:2] == ["ok", str(CALLBACKS)]


def test_pyside6_is_below_the_broken_release() -> None:
    import PySide6

    major, minor = (int(x) for x in PySide6.__version__.split(".")[:2])
    assert (major, minor) < (6, 12), f"PySide6 {PySide6.__version__} crashes under qasync"
