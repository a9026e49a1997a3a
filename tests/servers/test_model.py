"""Reading servers' answers into kernelmon's model: on answers captured from a real
jupyter_server 2.21 (a notebook and a console on one kernel) and a real Enterprise Gateway
3.3, and on the same answers damaged."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kernelmon.core.servers.model import (
    kernel_fields,
    parse_kernels,
    parse_kernelspecs,
    parse_sessions,
    parse_time,
    session_paths,
)

DATA = Path(__file__).parent / "data"


def captured(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def test_jupyter_server_kernels_with_notebook_and_console_sessions() -> None:
    kernels = parse_kernels(captured("js-kernels"))
    sessions = parse_sessions(captured("js-sessions"))
    assert kernels.skipped == ()
    assert sessions.skipped == ()
    assert len(kernels.items) == 2
    paths = session_paths(sessions.items)
    # the kernel serves a notebook and a console: the notebook names it
    notebook_kernel = sessions.items[0].kernel_id
    assert paths == {notebook_kernel: "analysis.ipynb"}
    by_id = {k.id: k for k in kernels.items}
    fields = kernel_fields(
        by_id[notebook_kernel],
        server_id="lab",
        server_url="http://127.0.0.1:8888/",
        notebook_path=paths.get(notebook_kernel),
    )
    assert fields == {
        "id": notebook_kernel,
        "name": "python3",
        "execution_state": "starting",
        "last_activity": "2026-11-29T08:20:26.641881Z",
        "connections": 0,
        "reason": None,
        "server_id": "lab",
        "server_url": "http://127.0.0.1:8888/",
        "notebook_path": "analysis.ipynb",
    }
    other = next(k for k in kernels.items if k.id != notebook_kernel)
    assert other.execution_state == "idle"
    assert paths.get(other.id) is None


def test_enterprise_gateway_answers() -> None:
    kernels = parse_kernels(captured("eg-kernels"))
    assert [k.name for k in kernels.items] == ["python3"]
    assert kernels.items[0].last_activity == datetime(2026, 11, 29, 8, 25, 10, 918327, UTC)
    specs = parse_kernelspecs(captured("eg-kernelspecs"))
    assert specs.default == "python3"
    assert [(s.name, s.display_name, s.language) for s in specs.specs.items] == [
        ("python3", "Python 3 (ipykernel)", "python")
    ]
    assert parse_kernelspecs(captured("js-kernelspecs")).specs.items == specs.specs.items


def test_damaged_entries_are_skipped_one_by_one() -> None:
    kernels = captured("js-kernels")
    damaged = copy.deepcopy(kernels)
    damaged[0]["last_activity"] = "yesterday"
    damaged[0]["execution_state"] = "x" * 1000
    damaged[0]["connections"] = True
    damaged.insert(1, {"id": ""})
    damaged.append({"id": "a" * 5000})
    damaged.append(None)
    listing = parse_kernels(damaged)
    assert [k.id for k in listing.items] == [k["id"] for k in kernels]
    first = listing.items[0]
    assert first.last_activity is None
    assert first.execution_state == "unknown"
    assert first.connections is None
    assert len(listing.skipped) == 3
    assert all("skipped" in sentence for sentence in listing.skipped)

    sessions = captured("js-sessions")
    sessions.insert(0, {"id": "s", "kernel": None})
    sessions[1].pop("path")  # the notebook server's older model keeps it under "notebook"
    parsed = parse_sessions(sessions)
    assert [s.path for s in parsed.items] == ["analysis.ipynb", "console-1"]
    assert len(parsed.skipped) == 1


@pytest.mark.parametrize("payload", [{}, "[]", None, {"kernelspecs": []}])
def test_answers_of_the_wrong_shape_raise(payload: Any) -> None:
    for parse in (parse_kernels, parse_sessions, parse_kernelspecs):
        with pytest.raises(ValueError, match="not a"):
            parse(payload)


def test_states_and_times() -> None:
    listing = parse_kernels(
        [
            {"id": "a", "execution_state": "autorestarting"},
            {"id": "b", "execution_state": "dead", "reason": "the kernel died"},
            {"id": "c", "execution_state": "connecting"},
        ]
    )
    states = [
        kernel_fields(k, server_id="s", server_url="u", notebook_path=None) for k in listing.items
    ]
    assert [f["execution_state"] for f in states] == ["restarting", "dead", "unknown"]
    assert states[1]["reason"] == "the kernel died"
    assert parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time(12) is None
