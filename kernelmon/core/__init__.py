"""kernelmon's headless core: asyncio, jupyter_client and pyzmq only (never Qt).

The public names below are a contract; everything else may change.
"""

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
