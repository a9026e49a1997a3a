"""Resource figures without processes: sums, CPU %, rates, bounded series."""

from __future__ import annotations

import pytest

from kernelmon.core.machine.resources import (
    ProcessUsage,
    Series,
    TreeUsage,
    cpu_percent,
    rate,
    tree_usage,
)


def test_tree_usage_sums():
    t = tree_usage(
        10,
        5.0,
        [ProcessUsage(10, 1.5, 100, 60, 40), ProcessUsage(11, 0.5, 50, 30, 20)],
        started=123.0,
    )
    assert (t.cpu_seconds, t.rss, t.pss, t.uss, t.processes) == (2.0, 150, 90, 60, 2)
    assert (t.pid, t.at, t.started) == (10, 5.0, 123.0)


def test_tree_usage_without_pss_for_one_process_has_none():
    t = tree_usage(10, 0.0, [ProcessUsage(10, 1.0, 100, 60, 40), ProcessUsage(11, 0.0, 50)])
    assert t.rss == 150
    assert t.pss is None
    assert t.uss is None


def usage(at: float, cpu: float, pid: int = 10, started: float | None = 1.0) -> TreeUsage:
    return TreeUsage(pid, started, at, cpu, 0, None, None, 1)


def test_cpu_percent():
    assert cpu_percent(usage(0.0, 1.0), usage(2.0, 2.5)) == pytest.approx(75.0)
    assert cpu_percent(usage(0.0, 1.0), usage(1.0, 3.0)) == pytest.approx(200.0)  # two cores
    assert cpu_percent(None, usage(1.0, 1.0)) is None
    assert cpu_percent(usage(1.0, 1.0), usage(1.0, 2.0)) is None  # no time passed
    assert cpu_percent(usage(0.0, 1.0), usage(1.0, 2.0, pid=11)) is None  # another kernel pid
    assert cpu_percent(usage(0.0, 1.0), usage(1.0, 2.0, started=9.0)) is None  # reused pid
    assert cpu_percent(usage(0.0, 5.0), usage(1.0, 2.0)) == 0.0  # a child left, unwaited


def test_rate():
    assert rate(None, (1.0, 10)) is None
    assert rate((0.0, 10), (2.0, 30)) == pytest.approx(10.0)
    assert rate((0.0, 10), (2.0, 5)) is None  # counter reset
    assert rate((1.0, 10), (1.0, 20)) is None


def test_series_is_bounded_by_age_and_length():
    s = Series(span=10.0, maxlen=100)
    for t in range(30):
        s.append(float(t), float(t * 2))
    assert [t for t, _v in s] == [float(t) for t in range(19, 30)]
    assert s.latest == 58.0
    assert len(s) == 11
    short = Series(span=1000.0, maxlen=3)
    for t in range(5):
        short.append(float(t), 1.0)
    assert short.points() == [(2.0, 1.0), (3.0, 1.0), (4.0, 1.0)]
    assert Series().latest is None
    assert Series().values() == []


def test_series_rejects_bad_input():
    s = Series()
    s.append(5.0, 1.0)
    with pytest.raises(ValueError, match="time order"):
        s.append(4.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        Series(span=0)
