"""The servers benchmark runs end to end in its smallest configuration (no timing is
asserted): stub servers on loopback, every contender polled under asyncio and qasync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "servers_bench.py"

#: Whole benchmark runs: left out by `-m "not slow"` (README).
pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
def test_quick_servers_benchmark_prints_its_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "servers.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        env=dict(os.environ, PYTHONWARNINGS="ignore", QT_QPA_PLATFORM="offscreen"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loop CPU per cycle, changed, qasync [ms]" in proc.stdout
    assert "memory per remote kernel [KB]" in proc.stdout
    assert "Goals (issue #13)" in proc.stdout

    data = json.loads(out.read_text())
    names = data["config"]["contenders"]
    assert names[:3] == ["floor", "wire", "client"]
    assert "map·app" in names  # the map polled by its own clock
    for loop in ("asyncio", "qasync"):
        for name in names:
            for scenario in ("unchanged", "changed"):
                figures = data[loop][name][scenario]
                keys = {"cpu_ms", "cpu_ms_max", "wall_ms", "thread_ms", "lag_p99_ms"}
                assert set(figures) == keys
                assert figures["cpu_ms"] > 0  # the cycles ran on this loop
    # each contender holds what it read: more with kernels than without
    assert all(data["memory"][name] > 0 for name in names)
