"""Turning a Jupyter API path ("a/b") into a kernel's working folder under the root folder."""

from __future__ import annotations

import os

from .errors import PathOutsideRoot


def _inside(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


def cwd_for_path(root_dir: str, path: str | None) -> str:
    """The working folder for a kernel opened at API ``path``.

    ``path`` is "/"-separated and relative to ``root_dir``; ``None`` or "" means the root.
    While the folder does not exist, its parent is taken, up to the root folder. A path that
    would leave the root folder (``..``, an absolute path, a symbolic link that points out)
    raises ``PathOutsideRoot``.
    """
    root = os.path.realpath(root_dir)
    if path is None:
        return root
    if not isinstance(path, str):
        raise PathOutsideRoot(repr(path), root)
    if "\0" in path or path.startswith(("/", "\\")) or os.path.isabs(path):
        raise PathOutsideRoot(path, root)
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    candidate = os.path.realpath(os.path.join(root, *parts)) if parts else root
    if not _inside(candidate, root):
        raise PathOutsideRoot(path, root)
    while not os.path.isdir(candidate) and candidate != root:
        candidate = os.path.dirname(candidate)
    # A folder that exists was resolved by realpath already; check once more in case a link
    # changed between the two looks.
    candidate = os.path.realpath(candidate)
    if not _inside(candidate, root):
        raise PathOutsideRoot(path, root)
    return candidate
