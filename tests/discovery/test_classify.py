"""Discovery without kernels: classification, parsing, process matching, scanning files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernelmon.core.machine.discovery import (
    ProcessFacts,
    app_summary,
    application_pid,
    classify,
    find_kernel_processes,
    kernel_id_from_path,
    parse_connection_info,
    scan_runtime,
)
from kernelmon.core.machine.identity import Proof
from kernelmon.core.records import Origin

KEY = "s3cr3t-key-0123456789"
TOKEN = "t0k3n-abcdef"


def first(info: object, candidates: list[ProcessFacts]) -> Proof:
    """A made-up proof for made-up processes: the most likely candidate is the kernel (the
    real proof, with real processes, is in test_identity.py)."""
    return Proof(True, candidates[0].pid)


def conn(**over: object) -> dict[str, object]:
    info: dict[str, object] = {
        "shell_port": 5001,
        "iopub_port": 5002,
        "stdin_port": 5003,
        "control_port": 5004,
        "hb_port": 5005,
        "ip": "127.0.0.1",
        "key": KEY,
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
    }
    info.update(over)
    return info


def write(folder: Path, name: str, data: object) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- classify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "parent", "alive", "kw", "expected"),
    [
        (10, 5, True, {}, Origin.EXTERNAL),
        (10, 5, True, {"owned": {"k1"}}, Origin.OWNED),
        (10, 5, True, {"owned": {"/rt/kernel-k1.json"}}, Origin.OWNED),
        (None, None, False, {"owned": {"k1"}}, Origin.OWNED),  # kernelmon decides about its own
        (None, None, False, {}, Origin.STALE),
        (None, 5, True, {}, Origin.STALE),
        (10, 5, False, {}, Origin.ORPHAN),  # parent gone (or a zombie)
        (10, 1, True, {}, Origin.ORPHAN),  # reparented to init
        (10, None, False, {}, Origin.ORPHAN),
        (10, 7, True, {"reapers": {7}}, Origin.ORPHAN),  # reparented to a subreaper
        (10, 7, True, {"first_parent_pid": 5}, Origin.ORPHAN),  # parent changed since found
        (10, 5, True, {"first_parent_pid": 5, "reapers": {1, 7}}, Origin.EXTERNAL),
    ],
)
def test_classify(pid, parent, alive, kw, expected):
    assert classify("k1", "/rt/kernel-k1.json", pid, parent, alive, **kw) is expected


def test_kernel_id_from_path():
    assert kernel_id_from_path("/x/kernel-abc-123.json") == "abc-123"
    assert kernel_id_from_path(Path("kernel-1.json")) == "1"


@pytest.mark.parametrize(
    ("name", "cmdline", "expected"),
    [
        (
            "jupyter-lab",
            ["/usr/bin/python3", "/usr/bin/jupyter-lab", "--no-browser"],
            "jupyter-lab",
        ),
        ("python3", ["python3", "-m", "jupyter", "lab"], "jupyter-lab"),
        ("jupyter", ["/usr/bin/jupyter", "notebook"], "jupyter-notebook"),
        ("python3.11", ["python3.11", "-u", "launcher.py", "x"], "python launcher.py"),
        ("python", ["python", "-m", "spyder_kernels.console"], "python -m spyder_kernels.console"),
        ("code", ["/usr/share/code/code", "--type=utility"], "code"),
        ("spyder", ["/usr/bin/python3", "/usr/bin/spyder"], "spyder"),
        ("python", [], "python"),
        ("bash", [], "bash"),
    ],
)
def test_app_summary(name, cmdline, expected):
    assert app_summary(name, cmdline) == expected


# -- connection files -----------------------------------------------------------------------


def test_parse_connection_info_keeps_no_key():
    facts = parse_connection_info(conn())
    assert facts.ports["iopub_port"] == 5002
    assert facts.kernel_name == "python3"
    assert facts.has_key
    assert KEY not in repr(facts)
    assert KEY not in str(facts)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([1, 2], "not a JSON object"),
        (conn(ip=""), "ip"),
        (conn(iopub_port="x"), "iopub_port"),
        (conn(hb_port=True), "hb_port"),
        (conn(control_port=-1), "control_port"),
        (conn(transport="udp"), "transport"),
        ({k: v for k, v in conn().items() if k != "shell_port"}, "shell_port"),
    ],
)
def test_parse_connection_info_rejects(data, why):
    with pytest.raises(ValueError, match=why):
        parse_connection_info(data)


# -- matching processes ---------------------------------------------------------------------


def test_find_kernel_processes_orders_candidates_and_skips_the_launch_chain():
    f = "/rt/kernel-a.json"
    table = [
        ProcessFacts(100, 1, "jupyter-lab", ("python", "jupyter-lab")),
        ProcessFacts(200, 100, "conda", ("conda", "run", "python", "-m", "ipykernel", "-f", f)),
        ProcessFacts(201, 200, "python", ("python", "-m", "ipykernel_launcher", "-f", f)),
        ProcessFacts(300, 100, "python", ("python", "-m", "ipykernel", "--f=/rt/kernel-b.json")),
        ProcessFacts(400, 100, "python", ("python", "-f", "/rt/kernel-c.json"), zombie=True),
        ProcessFacts(500, 100, "vim", ("vim", "notes.txt")),
        # things that name a file without being its kernel
        ProcessFacts(50, 1, "less", ("less", "/rt/kernel-b.json"), create_time=1.0),
        ProcessFacts(600, 1, "jupyter-console", ("jupyter-console", "--existing", f)),
        ProcessFacts(601, 1, "jupyter-qtconsole", ("jupyter-qtconsole", f"--existing={f}")),
        ProcessFacts(700, 1, "tail", ("tail", "-n1", "/rt/kernel-d.json"), create_time=9.0),
        ProcessFacts(701, 1, "julia", ("julia", "kernel.jl", "/rt/kernel-d.json"), create_time=2.0),
    ]
    files = [f, "/rt/kernel-b.json", "/rt/kernel-c.json", "/rt/kernel-d.json", "/rt/kernel-e.json"]
    found = find_kernel_processes(
        {p.pid: p for p in table}, {path: {} for path in files}, prove=first
    )
    kernel = {path: facts.pid for path, (facts, _proof) in found.items()}
    assert kernel[f] == 201
    assert found[f][0].ppid == 100  # the application that launched the wrapper
    assert kernel["/rt/kernel-b.json"] == 300
    assert "/rt/kernel-c.json" not in found  # a zombie is no kernel
    # no option says which is the kernel: the older process is tried first
    assert kernel["/rt/kernel-d.json"] == 701
    assert "/rt/kernel-e.json" not in found
    # what the proof refutes is no kernel at all
    assert (
        find_kernel_processes(
            {p.pid: p for p in table}, {f: {}}, prove=lambda info, c: Proof(False, 201, "no")
        )
        == {}
    )


def test_the_application_is_above_the_kernels_launch_chain():
    f = "/rt/kernel-w.json"
    table = {
        1: ProcessFacts(1, 0, "systemd", ("/sbin/init",)),
        10: ProcessFacts(10, 1, "code", ("code",), create_time=1.0),
        20: ProcessFacts(20, 10, "bash", ("bash", "wrap.sh", f), create_time=50.0),
        21: ProcessFacts(
            21, 20, "sh", ("sh", "-c", f"python -m ipykernel -f {f}"), create_time=50.5
        ),
        22: ProcessFacts(22, 21, "uv", ("uv", "run", "python"), create_time=51.0),
        23: ProcessFacts(
            23, 22, "python", ("python", "-m", "ipykernel", "-f", f), create_time=52.0
        ),
        # an interactive shell that ran a kernel long after it started is the application
        30: ProcessFacts(30, 1, "bash", ("bash",), create_time=5.0),
        31: ProcessFacts(
            31, 30, "python", ("python", "-m", "ipykernel", "-f", f), create_time=99.0
        ),
    }
    assert application_pid(table[23], f, table) == 10
    assert application_pid(table[31], f, table) == 30
    # the application is gone: the chain was reparented to init
    table[20] = ProcessFacts(20, 1, "bash", ("bash", "wrap.sh", f), create_time=50.0)
    assert application_pid(table[23], f, table) == 1


# -- scanning files -------------------------------------------------------------------------


def test_scan_reports_bad_files_and_classifies(tmp_path):
    rt = tmp_path / "rt"
    rt.mkdir()
    extra = tmp_path / "extra"
    extra.mkdir()
    good = write(rt, "kernel-good.json", conn())
    orphan = write(extra, "kernel-orphan.json", conn())
    write(rt, "kernel-stale.json", conn(kernel_name=None))
    owned = write(rt, "kernel-mine.json", conn())
    write(rt, "kernel-broken.json", "{not json")
    write(rt, "kernel-list.json", "[1, 2]")
    write(rt, "kernel-noports.json", {"ip": "127.0.0.1", "key": KEY})
    (rt / "kernel-secret.json").mkdir()  # cannot be read (even by root)
    write(rt, "kernel-huge.json", " " * (2 << 20))
    write(rt, "notes.txt", "hello")
    write(
        rt,
        "jpserver-100.json",
        {
            "pid": 100,
            "url": "http://localhost:8888/",
            "port": 8888,
            "root_dir": "/home/u",
            "version": "2.14",
            "token": TOKEN,
        },
    )
    write(rt, "nbserver-999.json", {"pid": 999, "notebook_dir": "/srv", "token": TOKEN})
    write(rt, "jpserver-7.json", "oops")
    table = {
        1: ProcessFacts(1, 0, "init", ("/sbin/init",)),
        100: ProcessFacts(100, 1, "jupyter-lab", ("python", "/usr/bin/jupyter-lab")),
        201: ProcessFacts(
            201, 100, "python", ("python", "-m", "ipykernel_launcher", "-f", str(good))
        ),
        202: ProcessFacts(
            202, 1, "python", ("python", "-m", "ipykernel_launcher", "-f", str(orphan))
        ),
        203: ProcessFacts(
            203, 100, "python", ("python", "-m", "ipykernel_launcher", "-f", str(owned))
        ),
    }
    scan = scan_runtime(
        [rt, extra, rt, tmp_path / "missing"], owned={"mine"}, table=table, prove=first
    )

    by_id = scan.by_kernel_id()
    assert by_id["good"].origin is Origin.EXTERNAL
    assert (by_id["good"].pid, by_id["good"].parent_pid) == (201, 100)
    assert by_id["good"].parent_app == "jupyter-lab"
    assert by_id["good"].parent_alive
    assert by_id["good"].kernel_name == "python3"
    assert by_id["good"].ports["shell_port"] == 5001
    assert by_id["good"].server_url == "http://localhost:8888/"  # its parent is that server
    assert by_id["orphan"].server_url is None
    assert len(set(scan.kernels.values())) == 4  # hashable, for sets and dict keys
    assert by_id["orphan"].origin is Origin.ORPHAN
    assert by_id["stale"].origin is Origin.STALE
    assert by_id["stale"].pid is None
    assert by_id["stale"].kernel_name is None
    assert by_id["mine"].origin is Origin.OWNED
    bad = {Path(p.path).name for p in scan.problems}
    expected_bad = {
        "kernel-broken.json",
        "kernel-list.json",
        "kernel-noports.json",
        "kernel-huge.json",
        "kernel-secret.json",
        "jpserver-7.json",
    }
    assert bad == expected_bad
    assert set(by_id) == {"good", "orphan", "stale", "mine"}

    servers = {s.pid: s for s in scan.servers}
    assert servers[100].alive
    assert servers[100].url == "http://localhost:8888/"
    assert servers[100].root_dir == "/home/u"
    assert not servers[999].alive
    assert servers[999].root_dir == "/srv"
    assert servers[100].token == TOKEN
    text = repr(scan) + str(scan) + " ".join(k.summary() for k in scan.kernels.values())
    assert KEY not in text
    assert TOKEN not in text


def test_scan_remembers_the_first_parent(tmp_path):
    f = write(tmp_path, "kernel-k.json", conn())
    kernel = ("python", "-m", "ipykernel_launcher", "-f", str(f))
    before = {
        50: ProcessFacts(50, 1, "code", ("code",)),
        60: ProcessFacts(60, 1, "supervise", ("supervise",)),  # not a known reaper
        201: ProcessFacts(201, 50, "python", kernel),
    }
    scan = scan_runtime([tmp_path], table=before, prove=first)
    assert scan.by_kernel_id()["k"].origin is Origin.EXTERNAL
    # The application died and a subreaper we do not know by name adopted the kernel.
    later = {60: before[60], 201: ProcessFacts(201, 60, "python", kernel)}
    assert (
        scan_runtime([tmp_path], table=later, prove=first).by_kernel_id()["k"].origin
        is Origin.EXTERNAL
    )
    again = scan_runtime([tmp_path], previous=scan, table=later, prove=first)
    assert again.by_kernel_id()["k"].origin is Origin.ORPHAN
    assert again.by_kernel_id()["k"].first_parent_pid == 50


def test_scan_of_nothing(tmp_path):
    scan = scan_runtime([tmp_path / "nope"], table={})
    assert (scan.kernels, scan.servers, scan.problems) == ({}, [], [])


def test_one_file_name_in_two_folders_is_told_apart_by_path(tmp_path):
    a, b = "/a/kernel-x.json", "/b/kernel-x.json"
    table = [ProcessFacts(200, 100, "python", ("python", "-m", "ipykernel_launcher", "-f", a))]
    found = find_kernel_processes({200: table[0]}, {a: {}, b: {}}, prove=first)
    assert found[a][0].pid == 200
    assert b not in found
    # a folder given twice (here through a symbolic link) is scanned once
    write(tmp_path, "kernel-k.json", conn())
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    scan = scan_runtime([tmp_path, tmp_path.parent / f"{tmp_path.name}-link"], table={})
    assert len(scan.kernels) == 1
