"""Test set-up shared by every test: isolation from the user's folders, an asyncio runner.

Kernel tests use real ipykernel processes over real ZeroMQ sockets. Each test module that
needs kernels gets one ``asyncio.Runner`` (fixture ``aio``) so that kernels started by a
module-scoped fixture live on the same loop as the tests that use them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

# Before anything imports Qt or jupyter_core: no display, and the user's folders untouched.
_TMP = tempfile.mkdtemp(prefix="kernelmon-tests-")
os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ["QT_API"] = "pyside6"
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
os.environ["JUPYTER_PATH"] = os.path.join(_TMP, "jupyter")
os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(_TMP, "runtime")
os.environ["KERNELMON_CONFIG_DIR"] = os.path.join(_TMP, "config")
os.environ["KERNELMON_STATE_DIR"] = os.path.join(_TMP, "state")
os.environ["KERNELMON_LOG_DIR"] = os.path.join(_TMP, "log")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
# Kernels are found in the tests' own runtime folders only, not also through the process
# table (which would show other kernels running on the machine); tests of it turn it on.
os.environ["KERNELMON_SCAN_PROCESSES"] = "0"

T = TypeVar("T")


class AsyncRunner:
    """Runs coroutines on one long-lived event loop (kernels outlive a single test)."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self._runner = runner

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._runner.get_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self._runner.run(asyncio.wait_for(coro, timeout))

    def sleep(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))


@pytest.fixture(scope="module")
def aio() -> Iterator[AsyncRunner]:
    with asyncio.Runner() as runner:
        yield AsyncRunner(runner)


@pytest.fixture(scope="session")
def qapp_cls() -> type:
    """pytest-qt's QApplication class for the whole session (see ``tests.qt_loop``)."""
    from tests.qt_loop import LoopApplication

    return LoopApplication


@pytest.fixture(autouse=True)
def _collect_on_the_main_thread() -> Iterator[None]:
    """Once a test made the QApplication, automatic garbage collection is off (see
    ``tests.qt_loop``): collect what is due after each test, on this thread."""
    yield
    if "kernelmon.ui.collector" in sys.modules:
        from kernelmon.ui.collector import collect_due

        collect_due()


@pytest.fixture
def tmp_root(tmp_path: Any) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    return root
