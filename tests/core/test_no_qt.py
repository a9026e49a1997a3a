"""The core must never import Qt or qasync: checked statically and at run time."""

import ast
import subprocess
import sys
from pathlib import Path

import kernelmon.core

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "qasync", "qtpy")
CORE = Path(kernelmon.core.__file__).parent


def test_no_qt_imports_in_core_sources():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_core_loads_no_qt():
    code = (
        "import sys, kernelmon.core, kernelmon.core.kernel_map;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
