"""The suite's QApplication runs asyncio callbacks that come due between a test's phases
inside the module's qasync loop (see ``tests.qt_loop``)."""

from __future__ import annotations

import asyncio

import pytest
import qasync
from PySide6.QtWidgets import QApplication  # PySide6 before qasync

from tests.qt_loop import LoopApplication


@pytest.mark.parametrize("loop_set", [True, False])
def test_qt_events_processed_between_phases_run_callbacks_in_the_loop(
    qapp: QApplication, loop_set: bool
) -> None:
    assert isinstance(qapp, LoopApplication)
    loop = qasync.QEventLoop(qapp)
    seen: list[object] = []

    def callback() -> None:
        try:
            seen.append(asyncio.get_running_loop())
        except RuntimeError as e:  # what a task step would die of
            seen.append(e)

    try:
        if loop_set:
            qapp.asyncio_loop = loop
        loop.call_soon(callback)
        qapp.processEvents()  # as pytest-qt does between a test's phases
    finally:
        qapp.asyncio_loop = None
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    if loop_set:
        assert seen == [loop]
    else:  # a plain QApplication: the callback runs outside any running loop
        assert len(seen) == 1
        assert isinstance(seen[0], RuntimeError)
