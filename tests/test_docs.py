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


# Where the docs name a file or module of this repository (README.md and every docs/*.md,
# docs/architecture.md included), it exists: a move or rename updates the docs it breaks.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: First folders of the repository's own paths; a path may also be relative to kernelmon/
#: or kernelmon/core/ ("core/protocol/iopub.py", "machine/process.py").
OWN_FOLDERS = {"kernelmon", "tests", "benchmarks", "docs", "resources", ".ci"}
PATH_BASES = [ROOT, ROOT / "kernelmon", ROOT / "kernelmon" / "core"]
FILE_NAME = re.compile(r"kernelmon\.(log|json|lock|sock|ini|txt|toml|cfg|md|py)")


def doc_references(text: str) -> tuple[set[str], set[str]]:
    """The repository paths and the dotted ``kernelmon.`` names in ``text``'s inline code,
    link targets and shell blocks (program output in other blocks is not a reference)."""
    shell = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", prose) + re.findall(r"\]\(([^)\s#]+)", prose) + shell
    paths: set[str] = set()
    names: set[str] = set()
    for span in spans:
        for token in re.findall(r"(?<![\w/~.$-])\.?[\w-]+(?:/[\w.*-]+)+/?", span):
            token = token.rstrip("/.")
            first = token.split("/")[0]
            if "*" not in token and (first in OWN_FOLDERS or token.endswith(".py")):
                paths.add(token)
        names |= {
            name
            for name in re.findall(r"(?<![\w/.-])kernelmon(?:\.\w+)+", span)
            if not FILE_NAME.fullmatch(name)  # "kernelmon.log" is a file, not a module
        }
    return paths, names


def resolves(name: str) -> bool:
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docs_name_files_and_modules_that_exist():
    missing = []
    for doc in DOCS:
        paths, names = doc_references(doc.read_text())
        missing += [
            f"{doc.name}: {p}" for p in paths if not any((b / p).exists() for b in PATH_BASES)
        ]
        missing += [f"{doc.name}: {n}" for n in names if not resolves(n)]
    assert missing == []


def test_doc_references_are_found():
    text = (
        "The map (`kernelmon/core/kernel_map.py`, see [core](docs/core.md)) and\n"
        "`core/nothing_here.py` call `kernelmon.core.threads.run_in_thread`; see `kernelmon.log`.\n"
        "```sh\n.venv/bin/python benchmarks/bench.py --quick\n```\n"
        "```text\nkernelmon/raw <= 1.2\n```\n"
    )
    paths, names = doc_references(text)
    assert paths == {
        "kernelmon/core/kernel_map.py",
        "docs/core.md",
        "core/nothing_here.py",
        "benchmarks/bench.py",
    }
    assert names == {"kernelmon.core.threads.run_in_thread"}
    assert resolves("kernelmon.core.threads.run_in_thread")
    assert not resolves("kernelmon.core.threads.no_such_name")
    assert not resolves("kernelmon.no_such_module")
