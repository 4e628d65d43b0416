"""`--workers` of `broker audit replay` and `broker bench audit`, and the options of
`broker bench scale`: a bad value is refused at once, naming the option and what to give."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.audit.cli import worker_count
from broker.cli import main


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_a_worker_count_below_one_or_not_a_whole_number_is_refused(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "replay", "--config", str(tmp_path / "c.yaml"), "--workers", text])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "1 or more" in err


def test_bench_audit_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "audit", "--workers", "0"])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "count"), [("1", 1), ("2", 2), (" 8", 8)])
def test_a_worker_count_of_one_or_more_is_taken(text: str, count: int) -> None:
    assert worker_count(text) == count


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--instances", "1"], "--instances 1: give 2 or more"),
        (["--partitions", "1"], "--partitions 1 is fewer than --instances 2"),
        (["--instances", "3", "--partitions", "2"], "--partitions 2 is fewer than --instances 3"),
        (["--events", "10"], "--events 10: give at least 100"),
    ],
)
def test_bench_scale_refuses_a_run_it_cannot_measure_before_starting_kafka(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "scale", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "local Kafka" not in captured.out  # refused before starting one
