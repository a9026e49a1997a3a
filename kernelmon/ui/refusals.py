"""What the core refuses to do to a kernel, and its own sentence why: read from the model.

The kernel's backend decides (``KernelBackend.refusal``) and the kernel model carries the
answers as ``"refusals": {action: sentence}``; an action not named there can be tried. The
UI never decides this itself: it enables, disables and explains its actions from here.
"""

from __future__ import annotations

from typing import Any

#: The actions the core answers for (``kernelmon.core.backends.base.Action``).
INTERRUPT = "interrupt"
RESTART = "restart"
SHUTDOWN = "shutdown"
CONNECT = "connect"


def refusal(model: dict[str, Any] | None, action: str) -> str | None:
    """The core's sentence for why ``action`` is refused on this kernel now; None when it
    can be tried. An unknown kernel (no model) refuses everything."""
    if not model:
        return "This kernel is no longer listed"
    refusals = model.get("refusals") or {}
    why = refusals.get(action) if isinstance(refusals, dict) else None
    return str(why) if why else None


def allows(model: dict[str, Any] | None, action: str) -> bool:
    """Whether ``action`` can be tried on this kernel now."""
    return refusal(model, action) is None


def as_sentence(text: str) -> str:
    """``text`` ending with a full stop (the core's sentences may or may not have one)."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."
