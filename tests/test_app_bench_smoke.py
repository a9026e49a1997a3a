"""The app benchmark runs end to end with tiny sizes (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "app_bench.py"

#: A whole app benchmark run: left out by `-m "not slow"` (README).
pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
def test_quick_app_benchmark_prints_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "app_bench.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--flood-kernels",
            "2",
            "--flood-lines",
            "2000",
            "--scale-kernels",
            "8",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    try:
        stdout, stderr = proc.communicate(timeout=70)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark shuts its kernels down on SIGTERM
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the quick app benchmark took too long\n{stdout}\n{stderr}")
    assert proc.returncode == 0, stdout + stderr
    for title in (
        "Window visible after launch",
        "kernels flooding",
        "kernels watched at once",
        "A console receiving",
    ):
        assert title in stdout
    assert "Goals (medians)" in stdout

    data = json.loads(out.read_text())
    assert {"meta", "config", "samples", "summary", "goals"} <= set(data)
    summary = data["summary"]
    assert {"launch_s", "exit_ok"} <= set(summary["launch"])
    assert {"lag_p50_ms", "lag_p99_ms", "lag_max_ms", "data_changed", "refreshes_per_s"} <= set(
        summary["flood"]
    )
    assert {"start_all_s", "rss_mb", "cull_pass_ms", "lag_p99_ms", "shutdown_all_s"} <= set(
        summary["scale"]
    )
    assert {"probe_p99_ms", "lag_p99_vs_probe", "lines_lost", "cpu_us_per_msg"} <= set(
        summary["flood"]
    )
    assert {"kernel_cpu_us_per_msg", "demand_vs_kernel", "loop_cpu_us_per_msg"} <= set(
        summary["flood"]
    )
    assert summary["flood"]["kernel_cpu_us_per_msg"]["min"] > 0
    assert {"lag_p99_ms", "probe_p99_ms", "flushes_per_s", "shown_lines", "all_shown"} <= set(
        summary["console"]
    )
    assert summary["console"]["all_shown"]["min"] == 1
    assert (
        summary["console"]["shown_lines"]["max"]
        <= data["config"]["params"]["console"]["scrollback"]
    )
    assert set(summary["launch"]["launch_s"]) == {"median", "min", "max", "n"}
    assert summary["scale"]["kernels"]["median"] == 8
    assert summary["scale"]["left_running"]["max"] == 0
    assert all(r["ok"] for reps in data["samples"].values() for r in reps)
    assert {g["metric"] for g in data["goals"]} >= {"launch_s", "lag_p99_ms", "cull_pass_ms"}
