"""When to poll a server next: jittered intervals, and backoff after failures."""

from __future__ import annotations

import random


def jittered(interval: float, spread: float = 0.2, rng: random.Random | None = None) -> float:
    """``interval`` give or take ``spread`` of it, so that many servers polled at the same
    interval do not fall into step."""
    return float(interval * (1 + (rng or random).uniform(-spread, spread)))


def backoff(interval: float, failures: int, cap: float = 300.0) -> float:
    """The delay before the next try after ``failures`` failures in a row (doubling)."""
    doublings: int = min(max(failures, 0), 16)
    return min(cap, interval * float(2**doublings))
