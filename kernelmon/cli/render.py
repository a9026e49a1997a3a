"""What the commands print: a table like ``docker ps``, a kernel's details, JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..core.records import parse_isoformat
from ..ui.figures import format_bytes, format_cpu, owner_text

COLUMNS = ("ID", "NAME", "SPEC", "OWNER", "STATE", "CPU", "MEMORY", "LAST ACTIVE", "CULLED IN")
#: The shortest id prefix shown (longer where needed to tell two kernels apart).
SHORT_ID = 8


def short_ids(ids: Sequence[str]) -> dict[str, str]:
    """Each id's shortest prefix, at least ``SHORT_ID`` long, that no other id starts with."""
    short = {}
    for kid in ids:
        n = SHORT_ID
        while n < len(kid) and any(o != kid and o.startswith(kid[:n]) for o in ids):
            n += 1
        short[kid] = kid[:n]
    return short


def duration(seconds: float) -> str:
    """``45 s``, ``4 min``, ``2 h 5 min``, ``3 d 4 h``."""
    s = max(0, int(seconds))
    for size, unit, smaller, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "min")):
        if s >= size:
            rest = (s % size) // smaller
            return f"{s // size} {unit} {rest} {small_unit}" if rest else f"{s // size} {unit}"
    return f"{s // 60} min" if s >= 60 else f"{s} s"


def parse_time(text: object) -> datetime | None:
    return parse_isoformat(text, assume_utc=True)


def ago(text: object, now: datetime) -> str:
    when = parse_time(text)
    return "never seen" if when is None else f"{duration((now - when).total_seconds())} ago"


def culled_in(eta: object) -> str:
    if not isinstance(eta, int | float):
        return "never"
    return "next pass" if eta <= 0 else duration(eta)


def name_of(model: dict[str, Any]) -> str:
    """The notebook's or working folder's name, else the kernel spec's display name."""
    notebook = model.get("notebook_path")  # a server's kernel: its session's path
    if isinstance(notebook, str) and notebook:
        return os.path.basename(notebook.rstrip("/")) or notebook
    cwd = model.get("cwd")
    if isinstance(cwd, str) and cwd:
        return os.path.basename(cwd.rstrip(os.sep)) or cwd
    return str(model.get("display_name") or model.get("name") or "")


def owner_of(model: dict[str, Any]) -> str:
    match model.get("origin"):
        case "owned":
            return "kernelmon"
        case "orphan":
            return "orphan"
        case "stale":
            return "stale (no process)"
    return owner_text(model)


def row(model: dict[str, Any], short: str, now: datetime) -> list[str]:
    return [
        short,
        name_of(model),
        str(model.get("name") or ""),
        owner_of(model),
        str(model.get("execution_state") or ""),
        format_cpu(model.get("cpu_percent")) or "-",
        format_bytes(model.get("rss")) or "-",
        "-" if model.get("origin") == "stale" else ago(model.get("last_activity"), now),
        culled_in(model.get("cull_eta")),
    ]


def table(models: Sequence[dict[str, Any]], now: datetime | None = None) -> str:
    """The kernels as aligned columns under a header line."""
    now = now or datetime.now(UTC)
    short = short_ids([str(m["id"]) for m in models])
    rows = [list(COLUMNS)] + [row(m, short[str(m["id"])], now) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "mem": lambda m: -(m.get("rss") or 0),
    "cpu": lambda m: -(m.get("cpu_percent") or 0.0),
    "activity": lambda m: (
        -((parse_time(m.get("last_activity")) or datetime.min.replace(tzinfo=UTC)).timestamp())
    ),
}


def sort_models(models: list[dict[str, Any]], key: str | None) -> list[dict[str, Any]]:
    """By ``key`` (largest or latest first), else by when each started (oldest first)."""
    models = sorted(models, key=lambda m: (str(m.get("started") or ""), str(m["id"])))
    if key is not None:
        models.sort(key=SORT_KEYS[key])
    return models


def details(model: dict[str, Any], now: datetime | None = None) -> str:
    """``kernelmon show``: one kernel, a field a line."""
    now = now or datetime.now(UTC)
    ports = model.get("ports") or {}
    lines = [
        ("Id", model.get("id")),
        ("Name", name_of(model)),
        ("Kernel spec", f"{model.get('display_name')} ({model.get('name')})"),
        ("Owner", owner_of(model)),
        ("State", model.get("execution_state")),
        ("Reason", model.get("reason")),
        ("Unverifiable", model.get("identity_problem")),
        ("Process", model.get("pid")),
        ("Processes in its tree", model.get("processes")),
        ("CPU", row(model, "", now)[5]),
        ("Memory (RSS)", format_bytes(model.get("rss")) or None),
        ("Memory (PSS / USS)", _pair(model.get("pss"), model.get("uss"))),
        ("Started", _when(model.get("started"), now)),
        (
            "Last activity",
            _when(model.get("last_activity"), now) or model.get("last_activity_note"),
        ),
        ("Culled in", culled_in(model.get("cull_eta"))),
        ("Restarts", model.get("restarts")),
        ("Frontends connected", model.get("connections")),
        ("Notebook", model.get("notebook_path")),
        ("Working folder", model.get("cwd")),
        ("Connection file", model.get("connection_file")),
        ("Transport", _transport(model, ports)),
        ("Parent process", _parent(model)),
        ("Jupyter server", model.get("server_url")),
        ("Orphan since", model.get("orphan_since")),
    ]
    refusals = model.get("refusals") or {}
    lines += [(f"Cannot {action}", sentence(why)) for action, why in sorted(refusals.items())]
    shown = [(label, str(value)) for label, value in lines if value not in (None, "")]
    width = max(len(label) for label, _ in shown)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in shown)


def _when(text: object, now: datetime) -> str | None:
    return f"{text} ({ago(text, now)})" if parse_time(text) is not None else None


def _pair(pss: object, uss: object) -> str | None:
    if pss is None and uss is None:
        return None
    return f"{format_bytes(pss) or '?'} / {format_bytes(uss) or '?'}"  # type: ignore[arg-type]


def _transport(model: dict[str, Any], ports: dict[str, Any]) -> str | None:
    if not model.get("transport"):
        return None
    named = ", ".join(f"{k} {v}" for k, v in sorted(ports.items()))
    return f"{model.get('transport')} {model.get('ip') or ''} ({named})".replace("  ", " ")


def _parent(model: dict[str, Any]) -> str | None:
    pid = model.get("parent_pid")
    if pid is None:
        return None
    alive = "running" if model.get("parent_alive") else "gone"
    return f"{model.get('parent_app') or 'unknown'} (pid {pid}, {alive})"


def sentence(text: object) -> str:
    """``text`` ending as a sentence does."""
    text = str(text).rstrip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
