"""Other applications' kernels keep their history across kernelmon launches: a new map on
the same state folder (a relaunch) restores what the last one saw, so an external kernel's
idle clock is never reset to "now" and an orphan's cull is never postponed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
from datetime import timedelta

import pytest

from kernelmon.core import KernelMap, Settings
from kernelmon.core.external_history import (
    FILE_NAME,
    MAX_ENTRIES,
    NOT_SEEN_ACTIVE,
    ExternalHistory,
    read_entries,
)
from kernelmon.core.records import ExecutionState, KernelRecord, Origin, utcnow
from tests.core.conftest import process_gone
from tests.discovery.test_map_discovery import kill_application, moved
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return tmp_path_factory.mktemp("history-runtime")


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("history-state")


def new_map(runtime, state, tmp_path, **settings) -> KernelMap:
    return KernelMap(
        Settings(root_dir=str(tmp_path), **settings),
        connection_dir=str(tmp_path),
        runtime_dirs=[str(runtime)],
        state_dir=str(state),
        shutdown_wait=2.0,
    )


def test_a_relaunch_keeps_activity_first_sight_and_orphan_clock(
    aio, launch, runtime, state, tmp_path, frontends
):
    launched = moved(launch(2), runtime)
    active, quiet = launched.kernel(0), launched.kernel(1)

    # first launch: nothing known yet, and the model says so
    first = new_map(runtime, state, tmp_path)
    aio.run(first.start_monitoring())
    model = first.kernel_model(quiet["id"])
    assert model["last_activity"] is None
    assert model["last_activity_note"] == NOT_SEEN_ACTIVE
    first_seen = first.record(quiet["id"]).first_seen
    assert first_seen is not None
    assert first.record(quiet["id"]).last_activity == first_seen  # the culler's clock
    record = first.record(active["id"])

    async def run_code() -> None:
        front = frontends(active["connection_file"])
        while record.last_activity_note is not None:  # until both subscriptions are live
            front.execute("pass")
            await asyncio.sleep(0.1)
        await wait_until(lambda: record.execution_state == ExecutionState.IDLE, what="idle")
        await asyncio.sleep(0.2)  # the last messages of the execution
        front.close()

    aio.run(run_code())
    seen_active = record.last_activity
    assert first.kernel_model(active["id"])["last_activity_note"] is None
    aio.run(first.close())
    assert stat.S_IMODE(os.stat(state / FILE_NAME).st_mode) == 0o600

    # second launch: the same history, not "now"
    aio.sleep(0.3)
    second = new_map(runtime, state, tmp_path)
    aio.run(second.start_monitoring())
    assert second.record(active["id"]).last_activity == seen_active
    assert second.kernel_model(active["id"])["last_activity_note"] is None
    assert second.record(quiet["id"]).first_seen == first_seen
    assert second.record(quiet["id"]).last_activity == first_seen
    assert second.kernel_model(quiet["id"])["last_activity_note"] == NOT_SEEN_ACTIVE

    # the application dies: orphans, since when is kept too
    kill_application(launched)
    aio.run(second.rescan())
    aio.run(wait_until(lambda: second.record(active["id"]).origin == Origin.ORPHAN, what="orphan"))
    orphan_since = second.record(active["id"]).orphan_since
    assert orphan_since is not None
    aio.run(second.close())
    assert read_entries(state / FILE_NAME)[active["id"]].orphan_since == orphan_since

    # third launch, culling orphans idle for 1 s: the idle time counts from the activity the
    # first launch saw, so they are culled on the first pass (not 1 s after this launch)
    aio.sleep(max(0.0, 1.2 - (utcnow() - seen_active).total_seconds()))
    third = new_map(runtime, state, tmp_path, cull_idle_timeout=1.0, cull_orphans=True)
    aio.run(third.start_monitoring())
    assert third.record(active["id"]).origin == Origin.ORPHAN
    assert third.record(active["id"]).orphan_since == orphan_since
    aio.run(
        wait_until(
            lambda: third.record(active["id"]).execution_state == ExecutionState.IDLE,
            what="the orphan probed",
        )
    )
    assert third.record(active["id"]).last_activity == seen_active
    culled = aio.run(third.cull_kernels())
    assert active["id"] in culled
    assert process_gone(active["pid"])
    aio.run(third.close())
    assert active["id"] not in read_entries(state / FILE_NAME)  # its file went with it


# -- the file itself ------------------------------------------------------------------------


def record(kid: str = "k1", path: str = "/r/kernel-k1.json") -> KernelRecord:
    r = KernelRecord(id=kid, name="python3", origin=Origin.EXTERNAL)
    r.connection_file = path
    return r


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"kernels": {"k1": {"first_seen": ' + b"9" * 5000 + b"}}}",
        b'{"kernels": []}',
        b"\xff\xfe",
        b'{"kernels": {}, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    ],
    ids=["truncated", "nested", "digits", "list", "binary", "huge"],
)
def test_a_corrupt_file_is_set_aside_and_kernelmon_starts_from_nothing(tmp_path, content):
    (tmp_path / FILE_NAME).write_bytes(content)
    history = ExternalHistory(tmp_path)
    r = record()
    history.restore(r)
    assert r.last_activity_note == NOT_SEEN_ACTIVE
    history.save(force=True)
    assert set(read_entries(tmp_path / FILE_NAME)) == {"k1"}
    assert (tmp_path / (FILE_NAME + ".bad")).read_bytes() == content


def test_bad_entries_and_fields_are_ignored_alone(tmp_path):
    now = utcnow().isoformat()
    (tmp_path / FILE_NAME).write_text(
        json.dumps(
            {
                "kernels": {
                    "good": {"connection_file": "/r/a.json", "first_seen": now, "last_activity": 5},
                    "no-file": {"first_seen": now},
                    "bad-time": {"connection_file": "/r/b.json", "first_seen": "yesterday"},
                    "list": [1],
                }
            }
        )
    )
    entries = read_entries(tmp_path / FILE_NAME)
    assert set(entries) == {"good"}
    assert entries["good"].last_activity is None


def test_the_file_is_bounded(tmp_path):
    clock = [utcnow() - timedelta(days=60)]
    history = ExternalHistory(tmp_path, clock=lambda: clock[0])
    history.restore(record("ancient", "/r/ancient.json"))
    clock[0] = utcnow()
    for i in range(MAX_ENTRIES + 10):
        history.restore(record(f"k{i}", f"/r/k{i}.json"))
    history.save(force=True)
    entries = read_entries(tmp_path / FILE_NAME)
    assert len(entries) == MAX_ENTRIES
    assert "ancient" not in entries
    assert "k0" not in entries  # the least recently updated went first
    assert f"k{MAX_ENTRIES + 9}" in entries


def test_another_kernelmons_entries_are_kept_when_saving(tmp_path):
    one, two = ExternalHistory(tmp_path), ExternalHistory(tmp_path)
    one.restore(record("a", "/r/a.json"))
    one.save(force=True)
    two.restore(record("b", "/r/b.json"))
    two.save(force=True)
    assert set(read_entries(tmp_path / FILE_NAME)) == {"a", "b"}
    two.drop("b")
    two.save(force=True)
    assert set(read_entries(tmp_path / FILE_NAME)) == {"a"}


def test_a_new_connection_file_is_a_new_kernel(tmp_path):
    history = ExternalHistory(tmp_path)
    r = record()
    history.restore(r)
    r.last_activity, r.last_activity_note = utcnow(), None
    history.note(r)
    again = record(path="/elsewhere/kernel-k1.json")
    history.restore(again)
    assert again.last_activity_note == NOT_SEEN_ACTIVE


def test_settings_replace_is_untouched():
    # the history lives in the state folder, not in the settings
    assert "history" not in {f.name for f in dataclasses.fields(Settings)}


def test_an_unwritable_state_folder_is_retried_quietly(tmp_path, monkeypatch, caplog):
    from kernelmon.core import external_history

    history = ExternalHistory(tmp_path)
    history.restore(record())

    def read_only(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(external_history, "write_json_atomic", read_only)
    for _ in range(3):
        history.save(force=True)
    said = [r for r in caplog.records if r.levelname == "WARNING" and "Read-only" in r.message]
    assert len(said) == 1
    monkeypatch.undo()
    history.save(force=True)
    assert set(read_entries(tmp_path / FILE_NAME)) == {"k1"}
