"""Tiny kernel specs for cases a real ipykernel cannot produce on demand."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).parent


def kernels_dir() -> Path:
    """The first JUPYTER_PATH folder's kernels/, which every KernelSpecManager scans."""
    base = Path(os.environ["JUPYTER_PATH"].split(os.pathsep)[0]) / "kernels"
    base.mkdir(parents=True, exist_ok=True)
    return base


def write_spec(argv: list[str], env: dict[str, str] | None = None, prefix: str = "km") -> str:
    """Install a kernel spec with this argv; returns its (unique) name."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    folder = kernels_dir() / name
    folder.mkdir()
    spec = {"argv": argv, "display_name": f"Test {name}", "language": "python"}
    if env:
        spec["env"] = env
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


def exits_at_once() -> str:
    return write_spec(
        [
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('kernel says: cannot start\\n'); sys.exit(3)",
            "{connection_file}",
        ],
        prefix="exits",
    )


def never_answers() -> str:
    return write_spec(
        [sys.executable, "-c", "import time; time.sleep(3600)", "{connection_file}"],
        prefix="silent",
    )


def flaky(marker: Path, mode: str) -> str:
    """Works on the first launch; later launches exit ("exit") or never answer ("hang")."""
    return write_spec(
        [sys.executable, str(HERE / "flaky_kernel.py"), "-f", "{connection_file}"],
        env={"KM_TEST_MARKER": str(marker), "KM_TEST_MODE": mode},
        prefix=f"flaky-{mode}",
    )
