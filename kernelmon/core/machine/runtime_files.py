"""Runtime folder files: reading them safely (never blocking on a FIFO, never a huge file),
Jupyter server info files, and the runtime folders themselves.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .process_table import ProcessFacts, alive_in

#: Connection files larger than this are not kernel connection files.
MAX_FILE_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """A file in a runtime folder that could not be used, and why."""

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class FoundServer:
    """A Jupyter server (or classic notebook server) info file."""

    path: str
    pid: int | None
    url: str | None
    port: int | None
    root_dir: str | None
    version: str | None
    alive: bool
    token: str = field(default="", repr=False)


def kernel_id_from_path(path: str | os.PathLike[str]) -> str:
    """``kernel-<id>.json`` -> ``<id>``."""
    name = os.path.basename(os.fspath(path))
    if name.startswith("kernel-"):
        name = name[len("kernel-") :]
    if name.endswith(".json"):
        name = name[: -len(".json")]
    return name


def read_runtime_file(path: str | os.PathLike[str], limit: int = MAX_FILE_SIZE) -> bytes:
    """A runtime file's bytes, never blocking on it: opened non-blocking (a FIFO or device
    would block a plain ``open``), regular files only, at most ``limit`` bytes.
    ``OSError`` if it cannot be read, ``ValueError`` saying why it is not a runtime file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file")
        if st.st_size > limit:
            raise ValueError("is too large for a Jupyter runtime file")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError("is too large for a Jupyter runtime file")
    return b"".join(chunks)


def read_runtime_json(path: str | os.PathLike[str]) -> Any:
    """A runtime file's JSON (``read_runtime_file``); ``ValueError`` says what is wrong."""
    raw = read_runtime_file(path)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"is not valid JSON: {e}") from None


def read_json_noting(path: Path, problems: list[ScanProblem]) -> Any:
    try:
        return read_runtime_json(path)
    except OSError as e:
        problems.append(ScanProblem(str(path), f"cannot be read: {e.strerror or e}"))
    except ValueError as e:
        problems.append(ScanProblem(str(path), str(e)))
    return None


def list_folder(folder: Path, problems: list[ScanProblem]) -> list[Path]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as e:
        problems.append(ScanProblem(str(folder), f"cannot be listed: {e.strerror or e}"))
        return []
    return [folder / n for n in sorted(names)]


def server_of(path: Path, data: object, table: Mapping[int, ProcessFacts]) -> FoundServer:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def get(key: str, kind: type) -> Any:
        value = data.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    pid = get("pid", int)
    return FoundServer(
        path=str(path),
        pid=pid,
        url=get("url", str),
        port=get("port", int),
        root_dir=get("root_dir", str) or get("notebook_dir", str),
        version=get("version", str),
        alive=alive_in(table, pid),
        token=get("token", str) or "",
    )


def default_folders(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The Jupyter runtime folder followed by ``extra`` folders."""
    from jupyter_core.paths import jupyter_runtime_dir

    return [Path(jupyter_runtime_dir()), *(Path(f) for f in extra)]
