"""The commands with no kernelmon running: they act directly, on kernels started by
jupyter_client in another process, and never on another live kernelmon's kernels."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import KERNELMON, Cli, eventually, gone

#: Figures measured at each run (the rest of a model is the same facts): a process's use,
#: and the messages a map counted while it watched the kernel's IOPub (a list that only
#: looks watches nothing: 0; a map may see ipykernel's IOPub welcome in its moment).
MEASURED = ("cpu_percent", "rss", "pss", "uss", "messages")


@pytest.fixture(scope="module")
def kernels(cli, spawn):
    """Two kernels of another application, one of a live kernelmon (a program embedding
    ``KernelMap``), and a stale connection file."""
    launched = spawn("launcher", 2)
    other = spawn("kernelmon", 1)
    stale = cli.stale_file()
    return launched, other, stale


def test_list_shows_every_kernel_as_a_table_and_as_json(cli: Cli, kernels):
    launched, other, stale = kernels
    done = cli("list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "SPEC", "OWNER"]
    for kid in [*launched.kernels, *other.kernels]:
        [row] = [r for r in rows if r.startswith(kid[:8])]
        assert "python3" in row
    assert not any(r.startswith(stale.name[7:15]) for r in rows), "stale only with --all"
    [row] = [r for r in rows if r.startswith(next(iter(other.kernels))[:8])]
    assert f"kernelmon (pid {other.proc.pid})" in row

    models = cli.models("--all")
    for kid, pid in launched.kernels.items():
        assert models[kid]["pid"] == pid
        assert models[kid]["origin"] == "external"
        assert models[kid]["parent_pid"] == launched.proc.pid
        assert "cull_eta" in models[kid]
        assert "refusals" in models[kid]
    assert models[stale.name[7:-5]]["origin"] == "stale"

    by_memory = cli("list", "--sort", "mem", "--json")
    assert by_memory.returncode == 0
    assert cli.qt_log.exists() is False, "the command line imported Qt"


def test_list_looks_once_and_says_what_a_map_says(cli: Cli, kernels):
    """With none running, ``kernelmon list`` takes one look at the machine instead of
    building a map (it imports none: no adoption, no discovery started); each kernel's
    model is the one the map gives (``kernelmon show`` builds one)."""
    launched, other, stale = kernels
    done = subprocess.run(
        [str(KERNELMON), "list", "--all", "--json"],
        env={**cli.env, "PYTHONPROFILEIMPORTTIME": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "kernelmon.core.machine.discovery" in imported
    assert not {"kernelmon.core.kernel_map", "kernelmon.core.adoption"} & imported
    listed = {m["id"]: m for m in json.loads(done.stdout)}
    stale_id = stale.name[len("kernel-") : -len(".json")]
    for kid in [*launched.kernels, *other.kernels, stale_id]:
        shown = cli("show", "--json", kid)
        assert shown.returncode == 0, shown.stderr
        model, listed_model = json.loads(shown.stdout), dict(listed[kid])
        for name in MEASURED:
            assert (model.pop(name) is None) == (listed_model.pop(name) is None), name
        if kid == stale_id:  # a file with no process: "started" and active when found
            for name in ("started", "last_activity"):
                del model[name], listed_model[name]
        assert listed_model == model
    assert listed[next(iter(other.kernels))]["parent_app"] == "kernelmon"
    assert listed[stale_id]["refusals"]
    assert listed[stale_id]["execution_state"] == "dead"


def test_ids_may_be_unique_prefixes_and_errors_have_exit_codes(cli: Cli, kernels):
    launched, _other, _stale = kernels
    kid = next(iter(launched.kernels))
    done = cli("show", kid[:6])
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^Id:\s+{kid}$", done.stdout, re.MULTILINE)
    assert str(launched.kernels[kid]) in done.stdout
    assert "Connection file:" in done.stdout

    a, b = (
        cli.stale_file("abcd1111-0000-4000-8000-000000000000"),
        cli.stale_file("abcd2222-0000-4000-8000-000000000000"),
    )
    try:
        ambiguous = cli("show", "abcd")
        assert ambiguous.returncode == 2
        assert "abcd1111" in ambiguous.stderr
        assert "abcd2222" in ambiguous.stderr
        assert "Traceback" not in ambiguous.stderr
    finally:
        a.unlink()
        b.unlink()
    missing = cli("stop", "--yes", "zz-no-such-kernel")
    assert (missing.returncode, missing.stderr.count("\n")) == (3, 1)
    assert "No kernel's id starts with 'zz-no-such-kernel'" in missing.stderr
    usage = cli("list", "--sort", "age")
    assert usage.returncode == 2


def test_stop_asks_and_refuses_without_a_terminal_or_yes(cli: Cli, kernels):
    launched, _other, _stale = kernels
    kid, pid = next(iter(launched.kernels.items()))
    done = cli("stop", kid[:8])
    assert done.returncode == 2
    assert "add --yes" in done.stderr
    assert not gone(pid)


def test_stop_never_acts_on_another_live_kernelmons_kernel(cli: Cli, kernels):
    _launched, other, _stale = kernels
    kid, pid = next(iter(other.kernels.items()))
    done = cli("stop", "--yes", kid)
    assert done.returncode == 1
    assert f"Another kernelmon (pid {other.proc.pid})" in done.stderr
    assert not gone(pid)


def test_stop_an_external_kernel_warns_and_stops_it(cli: Cli, kernels):
    launched, _other, _stale = kernels
    kid, pid = next(iter(launched.kernels.items()))
    done = cli("stop", "--yes", kid[:8])
    assert done.returncode == 0, done.stderr
    assert f"python launcher.py (pid {launched.proc.pid}) owns this kernel" in done.stderr
    assert f"Stopped kernel {kid}." in done.stdout
    eventually(lambda: gone(pid), what="the kernel's process gone")
    assert kid not in cli.models()


def test_cleanup_removes_only_stale_files(cli: Cli, kernels):
    launched, other, stale = kernels
    unrelated = cli.runtime / "notes.json"
    unrelated.write_text("{}")
    models = cli.models("--all")
    live_files = [Path(m["connection_file"]) for m in models.values() if m["origin"] != "stale"]
    assert len(live_files) == 2
    done = cli("cleanup")
    assert done.returncode == 0, done.stderr
    assert f"Removed the connection file of kernel {stale.name[7:-5]}." in done.stdout
    assert not stale.exists()
    assert unrelated.exists()
    for path in live_files:
        assert path.exists(), f"{path} was removed"
    for pid in [*list(launched.kernels.values())[1:], *other.kernels.values()]:
        assert not gone(pid)
    again = cli("cleanup")
    assert (again.returncode, again.stdout) == (0, "Nothing to clean up.\n")


def test_cleanup_orphans_lists_them_then_needs_yes(cli: Cli, kernels):
    launched, _other, _stale = kernels
    kid, pid = list(launched.kernels.items())[1]
    launched.proc.send_signal(signal.SIGKILL)  # its kernel is an orphan now
    launched.proc.wait(10)
    eventually(lambda: cli.models()[kid]["origin"] == "orphan", what="an orphan")
    refused = cli("cleanup", "--orphans")
    assert refused.returncode == 2
    assert kid in refused.stderr
    assert "no longer running" in refused.stderr
    assert not gone(pid)
    done = cli("cleanup", "--orphans", "--yes")
    assert done.returncode == 0, done.stderr
    eventually(lambda: gone(pid), what="the orphan's process gone")
    assert kid not in cli.models("--all")
    assert not cli.qt_log.exists(), "the command line imported Qt"


def test_a_viewer_of_a_dead_kernels_file_is_never_taken_for_the_kernel(cli: Cli, kernels):
    """``tail -f`` names a dead kernel's connection file in its arguments. With the process
    table searched too, it is still not the kernel: the file is listed as stale (no
    process), and stopping it removes the file and signals nothing."""
    stale = cli.stale_file()
    old = time.time() - 3600  # its kernel died an hour ago
    os.utime(stale, (old, old))
    kid = stale.name[len("kernel-") : -len(".json")]
    viewer = subprocess.Popen(["tail", "-f", str(stale)], stdout=subprocess.DEVNULL)
    try:
        scanning = Cli(cli.base, {**cli.env, "KERNELMON_SCAN_PROCESSES": "1"})
        model = scanning.models("--all")[kid]
        assert (model["origin"], model["pid"]) == ("stale", None)
        done = scanning("stop", "--yes", kid)
        assert done.returncode == 0, done.stderr
        assert not stale.exists()
        assert viewer.poll() is None, "the viewer was signalled"
    finally:
        viewer.kill()
        viewer.wait()


def test_list_takes_an_earlier_runs_kernels_over_as_a_map_does(cli: Cli, spawn):
    """An earlier kernelmon run left a kernel for the next one: the list is a map's (it
    adopts the kernel, kernelmon's own again), not one look."""
    released = spawn("kernelmon", 1, "--release")
    released.proc.kill()  # gone, as after a crash
    released.proc.wait(10)
    try:
        models = cli.models()
        for kid, pid in released.kernels.items():
            assert (models[kid]["origin"], models[kid]["pid"]) == ("owned", pid)
    finally:
        for kid in released.kernels:
            cli("stop", "--yes", kid)
    for pid in released.kernels.values():
        eventually(lambda pid=pid: gone(pid), what="the adopted kernel stopped")


def test_a_reader_that_leaves_early_gets_no_error(cli: Cli, tmp_path: Path):
    """``kernelmon list | head``: the pipe closes before the table is written; the command
    ends quietly (status 141, as a shell reports SIGPIPE), not with "the command failed"."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    many = Cli(cli.base, {**cli.env, "JUPYTER_RUNTIME_DIR": str(runtime)})
    for i in range(300):  # a table longer than a pipe's buffer
        many.stale_file(f"00000000-0000-4000-8000-{i:012d}")
    proc = subprocess.Popen(
        [str(KERNELMON), "list", "--all"],
        env=many.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _out, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (141, "")
