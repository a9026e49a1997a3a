"""Words and numbers for resource figures and for who owns a kernel (pure functions).

Every function takes plain values or a kernel model (the dict ``KernelRecord.to_model()``
gives) and reads it with ``.get`` so a model without these keys still shows something.
"""

from __future__ import annotations

from typing import Any

#: Who owns a kernel, in the words the table shows.
ORIGINS = ("owned", "external", "orphan", "stale")

ORIGIN_TIPS = {
    "owned": "kernelmon started this kernel",
    "external": "another application started this kernel and still runs",
    "orphan": "orphan: its application is gone",
    "stale": "stale: no process, only the connection file",
}

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | float | None) -> str:
    """``512 B``, ``12.3 MiB``, ``1.20 GiB``; "" for None."""
    if n is None:
        return ""
    value = float(n)
    unit = 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    if abs(value) >= 100:
        return f"{value:.0f} {_UNITS[unit]}"
    if abs(value) >= 10:
        return f"{value:.1f} {_UNITS[unit]}"
    return f"{value:.2f} {_UNITS[unit]}"


def format_cpu(percent: float | None) -> str:
    """``0.4 %``, ``37 %``, ``212 %`` (100 % is one core busy); "" for None."""
    if percent is None:
        return ""
    if percent < 10:
        return f"{percent:.1f} %"
    return f"{percent:.0f} %"


def format_rate(per_second: float | None) -> str:
    """Messages a second: ``0.5/s``, ``120/s``; "" for None."""
    if per_second is None:
        return ""
    if per_second < 10:
        return f"{per_second:.1f}/s"
    return f"{per_second:.0f}/s"


def origin_of(model: dict[str, Any]) -> str:
    origin = str(model.get("origin") or "owned")
    return origin if origin in ORIGINS else "owned"


def is_owned(model: dict[str, Any]) -> bool:
    return origin_of(model) == "owned"


def owner_text(model: dict[str, Any]) -> str:
    """The application that started a kernel: ``jupyter-lab (pid 4242)``; "another
    application" when nothing is known. An orphan's parent is whatever adopted it (PID 1, a
    reaper), not the application that started it, which is gone."""
    if origin_of(model) == "orphan":
        return "an application that is no longer running"
    app = model.get("parent_app")
    pid = model.get("parent_pid")
    if app and pid is not None:
        return f"{app} (pid {pid})"
    if app:
        return str(app)
    if pid is not None:
        return f"the process {pid}"
    return "another application"


def origin_tooltip(model: dict[str, Any]) -> str:
    """What the Origin cell's tooltip says: who owns the kernel, and whether it still runs."""
    origin = origin_of(model)
    tip = ORIGIN_TIPS[origin]
    if origin != "owned":
        if origin == "orphan":
            tip += "\nThe application that started it is no longer running"
        else:
            alive = "running" if model.get("parent_alive") else "no longer running"
            tip += f"\nStarted by {owner_text(model)}, {alive}"
    problem = model.get("identity_problem")
    if problem:
        tip += f"\nUnverifiable: {problem} kernelmon sends it no signal."
    server = model.get("server_url")
    if server:
        tip += f"\nJupyter server: {server}"
    connection_file = model.get("connection_file")
    if connection_file and origin != "owned":
        tip += f"\nConnection file: {connection_file}"
    return tip


def memory_tooltip(model: dict[str, Any]) -> str | None:
    """RSS, PSS, USS and the process count of a kernel's process tree."""
    rss = model.get("rss")
    if rss is None:
        return None
    lines = [f"Resident (RSS): {format_bytes(rss)}"]
    pss = model.get("pss")
    uss = model.get("uss")
    lines.append(
        f"Proportional (PSS): {format_bytes(pss)}" if pss is not None else "PSS: not available"
    )
    lines.append(f"Unique (USS): {format_bytes(uss)}" if uss is not None else "USS: not available")
    processes = model.get("processes")
    if processes is not None:
        lines.append(f"{processes} process(es): the kernel and its children")
    return "\n".join(lines)


def usage_text(total_cpu: float | None, total_rss: int | None) -> str:
    """The status bar's summary of every kernel's resource use."""
    cpu = format_cpu(total_cpu) or "not measured"
    memory = format_bytes(total_rss) if total_rss else "not measured"
    return f"CPU {cpu} · Memory {memory}"


def format_duration(seconds: float) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 5 min``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        m, s = divmod(seconds, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, rest = divmod(seconds, 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


def format_eta(eta: float | None) -> str:
    """What the "Culled in" column shows for ``KernelMap.cull_eta``."""
    if eta is None:
        return "never"
    if eta <= 0:
        return "next pass"
    return format_duration(eta)
