"""Words and numbers for resource figures and for who owns a kernel (pure functions).

Every function takes plain values or a kernel model (the dict ``KernelRecord.to_model()``
gives) and reads it with ``.get`` so a model without these keys still shows something.
"""

from __future__ import annotations

import posixpath
from typing import Any

#: Who owns a kernel, in the words the table shows.
ORIGINS = ("owned", "external", "orphan", "stale", "server")

ORIGIN_TIPS = {
    "owned": "kernelmon started this kernel",
    "external": "another application started this kernel and still runs",
    "orphan": "orphan: its application is gone",
    "stale": "stale: no process, only the connection file",
    "server": "a Jupyter server (or gateway) runs this kernel; kernelmon asks the server",
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


def _figure(value: float | None, unit: str) -> str:
    """``value`` with one decimal below 10 and none from there, then ``unit``; "" for None."""
    if value is None:
        return ""
    return f"{value:.{1 if value < 10 else 0}f}{unit}"


def format_cpu(percent: float | None) -> str:
    """``0.4 %``, ``37 %``, ``212 %`` (100 % is one core busy); "" for None."""
    return _figure(percent, " %")


def format_rate(per_second: float | None) -> str:
    """Messages a second: ``0.5/s``, ``120/s``; "" for None."""
    return _figure(per_second, "/s")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 kernel``, ``2 kernels``, ``0 kernels`` (``words``: an irregular plural)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def with_more(shown: list[str], total: int, end: str = "") -> list[str]:
    """``shown`` (the first lines of a list of ``total`` things) and, when some were left out,
    a last line ``… and N more`` (then ``end``)."""
    more = total - len(shown)
    return [*shown, f"… and {more} more{end}"] if more > 0 else shown


def _last_part(path: Any) -> str:
    """The last part of a path (of a server's notebook path too: "/"-separated), or the path
    itself when it has none (``/``)."""
    text = str(path).rstrip("/\\")
    return posixpath.basename(text.replace("\\", "/")) or str(path)


def kernel_name(model: dict[str, Any]) -> str:
    """What a kernel is for, in a few words: the notebook (or session) it serves when known,
    else its working folder's name, else the application that started it, else its kernel
    spec. Never "": a kernel whose connection file names no spec is still named."""
    notebook = model.get("notebook_path")
    if notebook:
        return _last_part(notebook)
    cwd = model.get("cwd")
    if cwd:
        return _last_part(cwd)
    app = model.get("parent_app")
    if app and origin_of(model) != "orphan":
        return str(app)
    return str(model.get("display_name") or model.get("name") or "") or "unnamed kernel"


def kernel_label(kernel_id: str, model: dict[str, Any] | None) -> str:
    """``analysis.ipynb 1a2b3c4d``: how a kernel is named to people everywhere (the event
    log, confirmations, notifications, the tray): its name and the start of its id."""
    return f"{kernel_name(model or {})} {kernel_id[:8]}"


def spec_text(model: dict[str, Any]) -> str:
    """The kernel spec a kernel runs, in words."""
    display, name = model.get("display_name"), model.get("name")
    if display and name and display != name:
        return f"{display} (kernel spec {name!r})"
    if display or name:
        return f"kernel spec {display or name!r}"
    return "its connection file names no kernel spec"


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
    if origin not in ("owned", "server"):
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
        name = model.get("server_name")
        tip += f"\nJupyter server: {name} ({server})" if name else f"\nJupyter server: {server}"
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
        n = plural(int(processes), "process", "processes")
        lines.append(f"{n}: the kernel and its children")
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
