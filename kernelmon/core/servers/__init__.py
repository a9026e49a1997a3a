"""Jupyter Servers and Enterprise Gateways: the HTTP client for one server, the reading of its
answers into kernelmon's kernel model, where server tokens are kept, the watch of one server
(watch.py) and the map's part that keeps every server's kernels in the map (part.py; kernels
started on a server: kernel_starts.py; the servers file's writes: saving.py).

The names below are imported when first used: aiohttp is imported only by a map that talks to
a server, never by a command line that does not."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Listing": "model",
    "RemoteKernel": "model",
    "RemoteSession": "model",
    "kernel_fields": "model",
    "ServerClient": "client",
    "ServerInfo": "client",
    "ServerKind": "client",
    "ServerError": "status",
    "ServerStatus": "status",
    "UnknownServer": "status",
    "TokenStore": "secrets",
    "TokenStoreError": "secrets",
    "keyring_problem": "secrets",
    "ServerWatch": "watch",
    "ServerConfig": "watch",
    "Servers": "part",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
