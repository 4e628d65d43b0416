"""The router's progress indicator: "idle" and "stuck" told apart (issue 14, part 3)."""

from __future__ import annotations

import time

import pytest

from broker.router.metrics import Progress, RouterMetrics


def _stuck_metric(metrics: RouterMetrics) -> float | None:
    return metrics.registry.get_sample_value("broker_stuck")


def test_idle_router_is_not_stuck_however_long_since_the_last_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    progress = Progress(stuck_after_s=30)
    progress.begin()
    progress.committed()
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert not progress.stuck()
    assert progress.health()["status"] == "idle"


def test_open_transaction_past_the_bound_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = RouterMetrics(stuck_after_s=30)
    progress = metrics.progress
    progress.begin()
    assert _stuck_metric(metrics) == 0.0
    assert progress.health()["status"] == "busy"
    later = time.time() + 31
    monkeypatch.setattr(time, "time", lambda: later)
    assert _stuck_metric(metrics) == 1.0
    assert metrics.registry.get_sample_value("broker_transaction_open_seconds") >= 30
    assert progress.health()["status"] == "stuck"
    progress.committed()
    assert _stuck_metric(metrics) == 0.0
    assert metrics.registry.get_sample_value("broker_last_commit_timestamp_seconds") == later


def test_lag_without_commits_is_stuck_and_lag_with_commits_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    progress = Progress(stuck_after_s=30)
    progress.committed()
    progress.lag = 500
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 10)
    assert not progress.stuck() and progress.pending()
    monkeypatch.setattr(time, "time", lambda: now + 40)
    assert progress.stuck()
    progress.committed()
    assert not progress.stuck()
