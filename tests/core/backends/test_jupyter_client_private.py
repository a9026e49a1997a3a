"""jupyter_client's private attributes that kernelmon touches, all in one adapter module,
checked against the jupyter_client installed: an upgrade that removes one fails here,
naming it, instead of somewhere in a kernel's life."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import jupyter_client
from jupyter_client.ioloop.manager import AsyncIOLoopKernelManager
from jupyter_client.ioloop.restarter import AsyncIOLoopKernelRestarter
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

import kernelmon
from kernelmon.core.backends import jupyter_client_private as adapter


def private_attributes(source: str) -> set[str]:
    """The private (``_name``, not ``__dunder__``) attributes a module's code reads or sets."""
    return {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }


def test_every_private_attribute_the_adapter_touches_exists_in_jupyter_client():
    touched = private_attributes(inspect.getsource(adapter))
    assert "_launch_args" in touched  # the reading works: these are the adapter's
    km = AsyncIOLoopKernelManager()  # real instances of the installed jupyter_client
    restarter = AsyncIOLoopKernelRestarter(kernel_manager=km)
    missing = [
        name
        for name in sorted(touched)
        if not any(hasattr(obj, name) for obj in (km, restarter, LocalProvisioner))
    ]
    for name in adapter.PROVISIONER_HAND_SET:
        if not hasattr(LocalProvisioner, name):
            missing.append(f"LocalProvisioner.{name}")
    assert not missing, (
        f"jupyter_client {jupyter_client.__version__} has no {', '.join(missing)}, which "
        "kernelmon/core/backends/jupyter_client_private.py touches: adapt that module (and "
        "the pin in pyproject.toml) to this version"
    )


def test_nothing_else_in_kernelmon_touches_them():
    """No other module using jupyter_client touches these attributes (modules that do not
    import it may have attributes of their own by those names)."""
    touched = private_attributes(inspect.getsource(adapter))
    package = Path(kernelmon.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        if path.name == "jupyter_client_private.py" or "jupyter_client" not in source:
            continue
        for name in sorted(private_attributes(source) & touched):
            found.append(f"{path.relative_to(package)}: {name}")
    assert not found, f"jupyter_client's private attributes outside the adapter: {found}"
