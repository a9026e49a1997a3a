"""The culler's decision, with a fake clock: no kernels needed."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from kernelmon.core import Settings, cull_eta, cull_reason
from kernelmon.core.culler import CullFacts
from kernelmon.core.records import Origin

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def facts(state="idle", idle_for=0.0, connections=0, origin=Origin.OWNED):
    return CullFacts(state, T0 - timedelta(seconds=idle_for), connections, origin)


@pytest.fixture
def on(tmp_path):
    return Settings(root_dir=str(tmp_path), cull_idle_timeout=60)


def test_off_by_default(tmp_path):
    s = Settings(root_dir=str(tmp_path))
    assert cull_reason(facts(idle_for=10**6), s, T0) is None
    assert cull_eta(facts(idle_for=10**6), s, T0) is None


def test_idle_timeout(on):
    assert cull_reason(facts(idle_for=59), on, T0) is None
    assert cull_reason(facts(idle_for=60), on, T0) is None  # not yet *longer* than the timeout
    reason = cull_reason(facts(idle_for=61), on, T0)
    assert reason is not None
    assert "61 s" in reason
    assert "timeout 60 s" in reason


def test_eta_counts_down(on):
    assert cull_eta(facts(idle_for=20), on, T0) == pytest.approx(40)
    assert cull_eta(facts(idle_for=61), on, T0) == 0


def test_busy_spared_unless_cull_busy(on):
    assert cull_reason(facts("busy", idle_for=600), on, T0) is None
    assert cull_eta(facts("busy", idle_for=600), on, T0) is None
    busy_on = Settings(root_dir=on.root_dir, cull_idle_timeout=60, cull_busy=True)
    assert "busy" in cull_reason(facts("busy", idle_for=600), busy_on, T0)


def test_connected_spared_unless_cull_connected(on):
    assert cull_reason(facts(idle_for=600, connections=2), on, T0) is None
    conn_on = Settings(root_dir=on.root_dir, cull_idle_timeout=60, cull_connected=True)
    assert "2 connections" in cull_reason(facts(idle_for=600, connections=2), conn_on, T0)


def test_busy_and_connected_need_both_flags(on):
    only_busy = Settings(root_dir=on.root_dir, cull_idle_timeout=60, cull_busy=True)
    both = Settings(root_dir=on.root_dir, cull_idle_timeout=60, cull_busy=True, cull_connected=True)
    f = facts("busy", idle_for=600, connections=1)
    assert cull_reason(f, only_busy, T0) is None
    assert cull_reason(f, both, T0) is not None


@pytest.mark.parametrize("state", ["starting", "restarting"])
def test_starting_kernels_spared(on, state):
    assert cull_reason(facts(state, idle_for=600), on, T0) is None


def test_dead_kernels_always_go(tmp_path, on):
    off = Settings(root_dir=str(tmp_path))
    assert cull_reason(facts("dead"), on, T0) == "the kernel is dead"
    assert cull_reason(facts("dead"), off, T0) == "the kernel is dead"


@pytest.mark.parametrize("origin", [Origin.EXTERNAL, Origin.ORPHAN])
def test_kernels_of_other_applications_spared(on, origin):
    assert cull_reason(facts(idle_for=600, origin=origin), on, T0) is None
    assert cull_reason(facts("dead", origin=origin), on, T0) is None


def test_orphans_culled_only_when_asked(on):
    asked = dataclasses.replace(on, cull_orphans=True)
    assert cull_reason(facts(idle_for=600, origin=Origin.ORPHAN), asked, T0) is not None
    assert cull_eta(facts(idle_for=30, origin=Origin.ORPHAN), asked, T0) == 30
    assert cull_eta(facts(idle_for=30, origin=Origin.ORPHAN), on, T0) is None
    # external kernels (their application still runs) and stale files never
    for origin in (Origin.EXTERNAL, Origin.STALE):
        assert cull_reason(facts(idle_for=600, origin=origin), asked, T0) is None
    # an orphan whose state is not known yet (it may be computing quietly) is spared
    assert cull_reason(facts("unknown", idle_for=600, origin=Origin.ORPHAN), asked, T0) is None
    assert cull_reason(facts("busy", idle_for=600, origin=Origin.ORPHAN), asked, T0) is None
    # a dead orphan is not the culler's: discovery shows it gone or stale
    assert cull_reason(facts("dead", origin=Origin.ORPHAN), asked, T0) is None


def test_accepts_records(on):
    from kernelmon.core.records import KernelRecord

    r = KernelRecord(id="k", name="python3", execution_state="idle")
    r.last_activity = T0 - timedelta(seconds=120)
    assert cull_reason(r, on, T0) is not None
