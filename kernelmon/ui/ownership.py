"""Who owns a kernel, and the UI's own words about it (pure functions).

kernelmon owns the kernels it started ("owned"). Other applications' kernels ("external",
or "orphan" once their application is gone) are acted on only after a warning that names
the application (``foreign_warning``). Of a "stale" kernel only the connection file is left:
the UI offers to clean it up. What the core refuses to do to a kernel, and why, is not
decided here: it is in the kernel's model (see ``refusals``).
"""

from __future__ import annotations

from typing import Any

from .figures import format_bytes, format_duration, origin_of, owner_text


def is_foreign(model: dict[str, Any]) -> bool:
    """Another application started it, and it (still) has a process."""
    return origin_of(model) in ("external", "orphan")


def is_stale(model: dict[str, Any]) -> bool:
    return origin_of(model) == "stale"


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
