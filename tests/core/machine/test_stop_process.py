"""``process.stop_process``: the one escalation (shutdown message, SIGTERM, SIGKILL) every
backend uses, on real processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from kernelmon.core.machine.process import AdoptedProcess, stop_process

#: A process that ignores SIGTERM and exits when its stdin closes (its "shutdown message").
STUBBORN = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)


@pytest.fixture
def stubborn():
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", STUBBORN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def run(proc: subprocess.Popen[str], *, answers: bool, now: bool = False) -> tuple[bool, list]:
    """Stop ``proc``; (exited, the steps taken: "ask" and the signals sent)."""
    steps: list[object] = []

    async def ask() -> None:
        steps.append("ask")
        if answers:
            assert proc.stdin is not None
            proc.stdin.close()

    async def send(signum: int) -> None:
        steps.append(signal.Signals(signum))
        proc.send_signal(signum)

    exited = asyncio.run(stop_process(proc, send, shutdown_wait=0.6, ask=ask, now=now))
    return exited, steps


def test_a_process_that_answers_the_message_is_sent_no_signal(stubborn):
    proc = stubborn()
    assert run(proc, answers=True) == (True, ["ask"])
    assert proc.returncode == 0


def test_a_process_that_ignores_the_message_and_sigterm_is_killed(stubborn):
    proc = stubborn()
    assert run(proc, answers=False) == (True, ["ask", signal.SIGTERM, signal.SIGKILL])
    assert proc.returncode == -signal.SIGKILL


def test_now_goes_straight_to_sigkill(stubborn):
    proc = stubborn()
    assert run(proc, answers=True, now=True) == (True, [signal.SIGKILL])


def test_a_process_already_gone_is_left_alone(stubborn):
    proc = stubborn()
    proc.kill()
    proc.wait()
    assert run(proc, answers=True) == (True, [])


def test_signalling_an_adopted_process_that_exited_does_nothing():
    """As ``Popen.send_signal`` does: jupyter_client's auto-restarter kills a dead kernel's
    process before it starts a new one; raising there left an adopted kernel restarting
    forever."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    adopted = AdoptedProcess(proc.pid)
    proc.kill()
    proc.wait()
    adopted.send_signal(signal.SIGKILL)  # nothing to signal, nothing raised
    adopted.kill()
    assert adopted.poll() == 0
