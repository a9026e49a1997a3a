"""The documentation stays true to the code: README's example runs, --help is what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_readme_core_example_runs(tmp_path):
    [example] = [b for b in python_blocks(ROOT / "README.md") if "KernelMap" in b]
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "iopub" in result.stdout  # the frontend got messages
    assert "'execution_state': 'idle'" in result.stdout


def test_docs_name_only_public_core_names():
    import kernelmon.core

    [block] = python_blocks(ROOT / "docs" / "core.md")[:1]
    names = re.findall(r"\b([A-Z]\w+|cull_\w+)\b", block)
    assert names
    missing = [n for n in names if not hasattr(kernelmon.core, n)]
    assert missing == []


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"<!-- test-command -->\n```sh\n(.*?)\n```", readme, re.S)
    assert command is not None
    assert "pytest" in command.group(1)
    assert "test-command" in (ROOT / ".ci" / "run").read_text()
