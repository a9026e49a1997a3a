"""What kernelmon may do with a kernel it did not start, and how to say so (pure functions).

kernelmon owns the kernels it started ("owned"). Other applications' kernels ("external",
or "orphan" once their application is gone) can be interrupted and shut down after a
warning that names the application, never restarted. Of a "stale" kernel only the
connection file is left: it can only be cleaned up.
"""

from __future__ import annotations

from typing import Any

from .figures import format_bytes, origin_of, owner_text
from .kernel_table import format_duration

#: States in which an interrupt means nothing.
NO_INTERRUPT_STATES = ("dead", "starting", "restarting")


def is_foreign(model: dict[str, Any]) -> bool:
    """Another application started it, and it (still) has a process."""
    return origin_of(model) in ("external", "orphan")


def is_stale(model: dict[str, Any]) -> bool:
    return origin_of(model) == "stale"


def can_restart(model: dict[str, Any]) -> bool:
    return bool(model) and origin_of(model) == "owned" and model.get("can_restart", True) is True


def can_interrupt(model: dict[str, Any]) -> bool:
    if not model or is_stale(model) or model.get("can_interrupt", True) is False:
        return False
    return str(model.get("execution_state")) not in NO_INTERRUPT_STATES


def can_shut_down(model: dict[str, Any]) -> bool:
    return bool(model) and not is_stale(model)


def restart_refusal(model: dict[str, Any]) -> str:
    """Why a kernel cannot be restarted, in a sentence."""
    match origin_of(model):
        case "external":
            return (
                f"kernelmon did not start this kernel: {owner_text(model)} owns it and "
                "alone can start it again. Restart it from there"
            )
        case "orphan":
            return (
                "kernelmon did not start this kernel, and the application that started "
                "it is gone: nobody can start it again. Shut it down instead"
            )
        case "stale":
            return "This kernel has no process, only a connection file: clean it up instead"
    return "This kernel cannot be restarted now"


def foreign_warning(model: dict[str, Any], doing: str) -> str:
    """The warning before acting on another application's kernel; ``doing`` is e.g.
    "shutting it down"."""
    consequence = (
        "stops the code it runs for that application"
        if doing.startswith("interrupt")
        else "may lose its work"
    )
    if origin_of(model) == "orphan":
        return (
            "The application that started this kernel is no longer running (an orphan); "
            f"{doing} {consequence}."
        )
    return f"{owner_text(model)} owns this kernel; {doing} {consequence}."


def memory_warning_text(label: str, rss: int, limit: int, total: bool) -> tuple[str, str]:
    """(title, text) of a memory warning."""
    if total:
        return (
            "Kernels use a lot of memory",
            f"All kernels together use {format_bytes(rss)}, over the limit of "
            f"{format_bytes(limit)}.",
        )
    return (
        "A kernel uses a lot of memory",
        f"{label} uses {format_bytes(rss)}, over the limit of {format_bytes(limit)}.",
    )


def job_finished_text(label: str, seconds: float) -> tuple[str, str]:
    """(title, text) of a finished long job."""
    return "Job finished", f"{label} finished a job that ran {format_duration(seconds)}."
