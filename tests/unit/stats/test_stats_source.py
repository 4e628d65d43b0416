"""The Kafka source's saved position and the `broker stats` options that need Kafka (no broker:
these fail before connecting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stats_samples import synthetic_feed

from broker.cli import main
from broker.stats.exceptions import StatsError
from broker.stats.source import kafka_position, saved_offsets


def test_position_round_trips_through_json() -> None:
    position = kafka_position("feed.stats.national", {2: 7, 0: 15, 1: 0})
    assert position["offsets"] == {"0": 15, "1": 0, "2": 7}
    again = json.loads(json.dumps(position))
    assert saved_offsets(again, "feed.stats.national") == {0: 15, 1: 0, 2: 7}


def test_no_position_means_the_beginning() -> None:
    assert saved_offsets({}, "feed.stats.national") == {}


@pytest.mark.parametrize(
    "position",
    [
        {"source": "kafka", "topic": "feed.police.met", "offsets": {"0": 1}},
        {"source": "file", "topic": "feed.stats.national"},
    ],
)
def test_a_position_of_another_feed_is_refused(position: dict[str, object]) -> None:
    with pytest.raises(StatsError, match="--rebuild"):
        saved_offsets(position, "feed.stats.national")


def test_a_damaged_position_is_refused() -> None:
    damaged = {"source": "kafka", "topic": "feed.stats.national", "offsets": {"0": "x"}}
    with pytest.raises(StatsError, match="damaged"):
        saved_offsets(damaged, "feed.stats.national")


def test_follow_and_rebuild_need_the_kafka_feed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps(synthetic_feed()[0]) + "\n", encoding="utf-8")
    for option in ("--follow", "--rebuild"):
        assert main(["stats", "--input", str(feed), "--out", str(tmp_path), option]) == 2
        assert "give --config" in capsys.readouterr().err


def test_config_and_input_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "--config", "c.yaml", "--input", "f.jsonl", "--out", str(tmp_path)])
