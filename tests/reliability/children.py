"""Kernelmon processes for crash tests (see kernelmon_child.py) and what they leave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).parent


def spawn_kernelmon(root: Path, *args: str) -> subprocess.Popen[str]:
    """A kernelmon_child.py process (read its JSON line with ``first_line``)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "kernelmon_child.py"), str(root), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(HERE.parent.parent),
    )


def first_line(child: subprocess.Popen[str]) -> Any:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"kernelmon child {child.pid} exited ({child.poll()}) without a word"
    return json.loads(line)


def kill_kernelmon(child: subprocess.Popen[str]) -> None:
    """kill -9, and reap it."""
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    if child.stdout is not None:
        child.stdout.close()


def crashed_kernelmon(root: Path, n: int, busy: float = 0) -> dict[str, int]:
    """Run a kernelmon that starts ``n`` kernels (the first left running code for ``busy``
    seconds), then kill -9 it. Returns {id: pid}."""
    child = spawn_kernelmon(root, str(n), str(busy))
    try:
        kernels = first_line(child)
    finally:
        kill_kernelmon(child)
    assert len(kernels) == n
    return kernels


def state_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("kernels-*.json"))


def edit_records(path: Path, edit: dict[str, dict[str, Any]]) -> None:
    """Change fields of kernel records of a state file: {kernel id: {field: value}} (a value
    of ``...`` removes the field)."""
    data = json.loads(path.read_text())
    for record in data["kernels"]:
        for key, value in edit.get(record["id"], {}).items():
            if value is ...:
                record.pop(key, None)
            else:
                record[key] = value
    path.write_text(json.dumps(data))


def state_file_of(state_dir: Path, kernel_id: str) -> Path:
    [path] = [p for p in state_files(state_dir) if kernel_id in p.read_text()]
    return path


def processes_naming(text: str) -> set[int]:
    """Live (not zombie) processes with ``text`` in an argument."""
    found = set()
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(text in arg for arg in p.info["cmdline"] or ()):
            found.add(p.pid)
    return found


def connection_file(kernel_id: str) -> Path:
    return Path(os.environ["JUPYTER_RUNTIME_DIR"]) / f"kernel-{kernel_id}.json"
