"""The benchmark runs end to end in its smallest configuration (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"

#: Whole benchmark runs: left out by `-m "not slow"` (README).
pytestmark = pytest.mark.slow


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    """The benchmark with ``--quick`` and ``args``, its output captured."""
    return subprocess.run(
        [sys.executable, str(BENCH), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=110,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )


@pytest.mark.timeout(120)
def test_quick_benchmark_prints_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_bench(
        "--reps", "1", "--workloads", "import,lifecycle,bigflood", "--bigflood-messages", "3000",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Kernel life cycle" in proc.stdout
    assert "start -> kernel_info_reply" in proc.stdout
    assert "Import time" in proc.stdout
    assert "A big flood while a frontend is away" in proc.stdout

    data = json.loads(out.read_text())
    assert {"meta", "config", "samples", "summary", "ratios", "goals"} <= set(data)
    assert data["config"]["workloads"] == ["import", "lifecycle", "bigflood"]
    assert data["config"]["params"]["bigflood"]["n_messages"] == 3000
    lifecycle = data["summary"]["lifecycle"]
    for metric in ("start_s", "restart_s", "shutdown_s"):
        assert "kernelmon" in lifecycle[metric]
        assert "bare" in lifecycle[metric]
        assert set(lifecycle[metric]["kernelmon"]) == {"median", "min", "max", "n"}
    assert "kernelmon" in data["summary"]["import"]["import_s"]
    bigflood = data["summary"]["bigflood"]
    for metric in ("sent_msgs", "received_msgs", "rss_peak_growth_mb", "over_cap_mb"):
        assert "kernelmon" in bigflood[metric]
    assert bigflood["sent_msgs"]["kernelmon"]["median"] >= 3000
    # the buffer never holds more than its cap
    assert bigflood["buffered_msgs"]["kernelmon"]["max"] <= 10_000
    peer = importlib.util.find_spec("jupyter_server") is not None
    assert data["meta"]["jupyter_server_present"] is peer
    if peer:
        assert "jupyter_server" in lifecycle["start_s"]
        assert "jupyter_server" in bigflood["rss_peak_growth_mb"]
        assert "kernelmon/jupyter_server" in data["ratios"]["lifecycle"]["start_s"]


@pytest.mark.timeout(120)
def test_quick_flood_against_the_coalesced_floor(tmp_path: Path) -> None:
    """The flood workload with kernelmon and its floor only: CPU per message, the state
    latencies, and the goals that compare them."""
    out = tmp_path / "flood.json"
    proc = run_bench(
        "--workloads", "flood", "--contenders", "kernelmon,raw·coalesced", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IOPub flood" in proc.stdout
    assert "job end -> shown idle" in proc.stdout
    data = json.loads(out.read_text())
    flood = data["summary"]["flood"]
    for metric in ("print_cpu_us_per_msg", "state_latency_ms", "state_latency_flood_ms"):
        assert set(flood[metric]) == {"kernelmon", "raw·coalesced"}
    assert "kernelmon/raw·coalesced" in data["ratios"]["flood"]["print_cpu_us_per_msg"]
    goals = [g["goal"] for g in data["goals"]]
    assert "print_cpu_us_per_msg: kernelmon/raw·coalesced <= 1.2" in goals
    assert "state_latency_ms: kernelmon <= 50" in goals
