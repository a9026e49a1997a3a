"""Finding kernelmon's resource files and turning them into (cached) icons.

Installed from a wheel, resources live in the package as ``kernelmon/resources``; in a
source checkout they are in ``resources/`` at the top of the tree.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from PySide6.QtGui import QIcon

from ..paths import resources_dir

logger = logging.getLogger(__name__)

#: Execution states that have an icon of their own.
STATE_ICONS = ("starting", "idle", "busy", "restarting", "dead", "unresponsive", "unknown")
#: Who owns a kernel, each with an icon of its own.
ORIGIN_ICONS = ("owned", "external", "orphan", "stale", "server")


def resource_path(name: str) -> Path:
    """The path of a resource file, e.g. ``icons/state-idle.svg``."""
    return resources_dir() / name


@functools.cache
def icon(name: str) -> QIcon:
    """The icon ``resources/icons/<name>.svg`` (an empty icon when there is none)."""
    path = resource_path(f"icons/{name}.svg")
    if not path.is_file():
        logger.warning("No icon %s", path)
        return QIcon()
    return QIcon(str(path))


def state_icon(state: str) -> QIcon:
    return icon(f"state-{state if state in STATE_ICONS else 'unknown'}")


def origin_icon(origin: str) -> QIcon:
    return icon(f"origin-{origin if origin in ORIGIN_ICONS else 'owned'}")


@functools.cache
def app_icon() -> QIcon:
    return QIcon(str(resource_path("kernelmon.svg")))


def kernel_icon(resource_dir: str | None) -> QIcon:
    """A kernel's icon in the table: its spec's logo, else a plain kernel icon (a spec without
    a logo, or a kernel whose connection file names no spec)."""
    return spec_logo(resource_dir or "") or icon("kernel-unknown")


@functools.cache
def spec_logo(resource_dir: str) -> QIcon | None:
    """A kernel spec's logo (logo-svg.svg or logo-64x64.png in its resource folder)."""
    if not resource_dir:
        return None
    for name in ("logo-svg.svg", "logo-64x64.png", "logo-32x32.png"):
        path = os.path.join(resource_dir, name)
        if os.path.isfile(path):
            return QIcon(path)
    return None
