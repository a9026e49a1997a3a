"""The tests' QApplication: Qt events processed between a test's phases go through the
module's qasync loop (imports Qt: only the ``qapp_cls`` fixture imports this module)."""

from __future__ import annotations

import asyncio

from PySide6.QtWidgets import QApplication


class LoopApplication(QApplication):
    """pytest-qt's ``qapp_cls`` for this suite.

    pytest-qt processes Qt events between a test's phases (``qapp.processEvents()``). A
    qasync loop is not running then, so an asyncio callback due at that moment (a step of
    the core's periodic sampling or discovery) would run without a running loop and die.
    While a module's qasync loop is set as ``asyncio_loop`` (the UI tests' ``qloop``
    fixture sets it), that processing runs the loop for one turn instead.
    """

    asyncio_loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        # As in the app: Qt objects in the garbage are collected on this thread only, never
        # on a worker thread of the core (see kernelmon.ui.collector). The root conftest
        # collects what is due after each test.
        from kernelmon.ui.collector import MainThreadCollector

        self.collector = MainThreadCollector(self)

    def processEvents(self, *args: object) -> None:
        loop = self.asyncio_loop
        if loop is None or loop.is_running() or loop.is_closed():
            QApplication.processEvents(*args)
        else:
            loop.run_until_complete(asyncio.sleep(0))
