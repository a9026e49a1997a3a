"""The IOPub micro-benchmark runs end to end in its smallest configuration, against a copy
of the package too (no timing is asserted)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MICRO = ROOT / "benchmarks" / "iopub_micro.py"


def run_micro(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(MICRO), "--messages", "300", "--reps", "2", *args],
        capture_output=True,
        text=True,
        timeout=100,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONWARNINGS="ignore"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.timeout(120)
def test_path_and_socket_against_a_copy_of_the_package(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "kernelmon", tmp_path / "kernelmon")
    out = run_micro("--against", str(tmp_path / "kernelmon"))
    assert out.count("CPU per message [µs]: best") == 4  # two modes, two versions
    assert "path   this / against:" in out
    assert "socket this / against:" in out


@pytest.mark.timeout(120)
def test_paced_under_qasync_with_the_frontend_away() -> None:
    out = run_micro("--mode", "paced", "--rate", "3000", "--loop", "qasync", "--away")
    assert "away (buffer)" in out
    assert "paced  kernelmon" in out
