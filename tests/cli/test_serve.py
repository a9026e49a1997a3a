"""``kernelmon serve`` (Qt unimportable) and the commands acting through it: its own
kernels (taken over from an earlier kernelmon) are stopped by it, not behind its back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from .conftest import Cli, eventually, gone


@pytest.fixture(scope="module")
def kernels(spawn):
    """Two kernels a kernelmon started and left for the next one, one of another
    application (started by jupyter_client in another process)."""
    released = spawn("kernelmon", 2, "--release")
    released.proc.kill()  # gone, as after a crash: its kernels are reaped by others now
    released.proc.wait(10)
    launched = spawn("launcher", 1)
    return released, launched


@pytest.fixture(scope="module")
def serve(cli: Cli, kernels) -> Iterator[subprocess.Popen[str]]:
    proc = cli.popen("serve", "--log-level", "debug")
    try:
        eventually(lambda: cli.serving_pid() == proc.pid or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()[1]
        released, _launched = kernels
        # it took the released kernels over: owned
        eventually(
            lambda: {cli.models().get(k, {}).get("origin") for k in released.kernels} == {"owned"}
        )
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_serve_runs_without_qt_and_answers_commands(cli: Cli, serve, kernels):
    released, launched = kernels
    models = cli.models()
    for kid, pid in released.kernels.items():
        assert (models[kid]["origin"], models[kid]["pid"]) == ("owned", pid)
    [(kid, pid)] = launched.kernels.items()
    assert (models[kid]["origin"], models[kid]["pid"]) == ("external", pid)
    table = cli("ls")
    assert table.returncode == 0, table.stderr
    assert "kernelmon" in table.stdout
    second = cli("serve")
    assert second.returncode == 1
    assert f"already running (pid {serve.pid})" in second.stderr
    assert not cli.qt_log.exists(), "kernelmon serve imported Qt"
    assert (cli.base / "log" / "kernelmon.log").read_text().count("Serving (pid") == 1


def test_restart_and_interrupt_through_it(cli: Cli, serve, kernels):
    released, launched = kernels
    kid = next(iter(released.kernels))
    before = cli.models()[kid]["pid"]
    done = cli("restart", kid[:8])
    assert done.returncode == 0, done.stderr
    assert f"Restarting kernel {kid}" in done.stderr
    assert f"Restarted kernel {kid}" in done.stdout
    model = cli.models()[kid]
    assert model["pid"] != before
    assert model["restarts"] >= 1

    [external] = launched.kernels
    refused = cli("restart", external)
    assert refused.returncode == 1
    assert "did not start this kernel" in refused.stderr
    interrupted = cli("interrupt", external[:8])
    assert interrupted.returncode == 0, interrupted.stderr
    assert not gone(launched.kernels[external])


def test_its_kernel_killed_behind_its_back_comes_back(cli: Cli, serve, kernels):
    """What `stop` must not do: a signal behind the owner's back is undone by its
    auto-restarter (so the test below can fail). The kernel is the one restarted above:
    its process is serve's own child."""
    released, _launched = kernels
    kid = next(iter(released.kernels))
    pid = cli.models()[kid]["pid"]
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        model = cli.models().get(kid, {})
        return model.get("pid") not in (None, pid) and model.get("execution_state") == "idle"

    eventually(back, what="the auto-restarter bringing it back")


def test_stop_through_it_is_not_undone_by_its_auto_restarter(cli: Cli, serve, kernels):
    released, _launched = kernels
    kid = next(iter(released.kernels))
    pid = cli.models()[kid]["pid"]
    done = cli("stop", "--yes", kid[:8])
    assert done.returncode == 0, done.stderr
    assert f"through the running kernelmon (pid {serve.pid})" in done.stderr
    assert "Its variables are lost." in done.stderr
    assert gone(pid)
    time.sleep(3.0 + 2.0)  # jupyter_client's restarter polls every 3 s: give it a turn
    assert kid not in cli.models("--all")
    assert gone(pid)


def test_sigterm_stops_it_and_its_kernels_only(cli: Cli, serve, kernels):
    released, launched = kernels
    kid = list(released.kernels)[1]
    pid = cli.models()[kid]["pid"]
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(60) == 0
    eventually(lambda: gone(pid), what="its kernel shut down")
    for other in launched.kernels.values():
        assert not gone(other), "another application's kernel was stopped"
    assert cli.serving_pid() is None
    _out, err = serve.communicate()
    assert "Traceback" not in err
    assert not cli.qt_log.exists()
