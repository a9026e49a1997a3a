"""kernelmon's headless core: asyncio, jupyter_client and pyzmq only (never Qt).

The public names below are a contract; everything else may change.

They are imported when first used (PEP 562 ``__getattr__``), so that importing one module
of the core (``kernelmon.core.records`` for ``kernelmon list``) does not import them all:
the map alone pulls in jupyter_client, pyzmq and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .culler import cull_eta, cull_reason
    from .errors import (
        KernelDead,
        KernelmonError,
        KernelNotFound,
        KernelSpecNotFound,
        KernelStartFailed,
        KernelStartTimeout,
        NotRestartable,
        PathOutsideRoot,
        RestartFailed,
        RestartTimeout,
        SettingsError,
    )
    from .kernel_map import KernelMap
    from .protocol.connection import KernelConnection
    from .records import ExecutionState, KernelModel, KernelRecord, Origin
    from .settings import Settings

#: Each public name and the module (under ``kernelmon.core``) that defines it.
_WHERE = {
    "ExecutionState": "records",
    "KernelConnection": "protocol.connection",
    "KernelDead": "errors",
    "KernelMap": "kernel_map",
    "KernelModel": "records",
    "KernelNotFound": "errors",
    "KernelRecord": "records",
    "KernelSpecNotFound": "errors",
    "KernelStartFailed": "errors",
    "KernelStartTimeout": "errors",
    "KernelmonError": "errors",
    "NotRestartable": "errors",
    "Origin": "records",
    "PathOutsideRoot": "errors",
    "RestartFailed": "errors",
    "RestartTimeout": "errors",
    "Settings": "settings",
    "SettingsError": "errors",
    "cull_eta": "culler",
    "cull_reason": "culler",
}

__all__ = [
    "ExecutionState",
    "KernelConnection",
    "KernelDead",
    "KernelMap",
    "KernelModel",
    "KernelNotFound",
    "KernelRecord",
    "KernelSpecNotFound",
    "KernelStartFailed",
    "KernelStartTimeout",
    "KernelmonError",
    "NotRestartable",
    "Origin",
    "PathOutsideRoot",
    "RestartFailed",
    "RestartTimeout",
    "Settings",
    "SettingsError",
    "cull_eta",
    "cull_reason",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # once: the next use is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
