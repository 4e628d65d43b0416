"""`broker alerts check`: the starter rules are valid; each mistake is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.alerts import check_rules_dir, load_rules
from broker.alerts.check import AlertRulesError
from broker.cli import main
from broker.scaffold import REPO_ROOT

RULES = REPO_ROOT / "alerts" / "rules"

GOOD = """\
id: sample-rule
version: 1
title: A sample
priority: high
source: somewhere in the guidance
start:
  event_types: [child.missing.started]
  when: missing_type == "M"
stop:
  event_types: [police.missing_report.opened]
after: [PT2H]
after_by_risk:
  high: [PT30M]
message: Missing for {stage} (risk {risk_level}).
action: Phone the police.
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "rule.v1.yaml").write_text(text)
    return tmp_path


def test_starter_rules_are_valid_and_each_names_its_source() -> None:
    rules = load_rules(RULES)
    assert {r.id for r in rules} == {
        "trafficked-child-missing", "missing-no-police-report", "return-interview-overdue",
        "nrm-referral-overdue", "guardian-not-appointed", "still-missing",
        "repeat-missing-review",
    }
    assert all("guidance" in r.source.lower() or "act 2015" in r.source.lower() for r in rules)


def test_good_sample_has_no_problem(tmp_path: Path) -> None:
    assert check_rules_dir(write(tmp_path, GOOD)) == []


@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ("event_types: [child.missing.started]", "event_types: [child.gone]", 7,
     "unknown event type `child.gone`"),
    ('when: missing_type == "M"', 'when: missing_typo == "M"', 8, "unknown name(s) missing_typo"),
    ('when: missing_type == "M"', "when: missing_type ==", 8, "does not compile"),
    ("after: [PT2H]", "after: [two hours]", 11, "after"),
    ("high: [PT30M]", "high: [PT30M, PT1H]", 13, "2 stage(s) for risk `high`"),
    ("Missing for {stage}", "Missing for {la_child_id}", 14, "unknown placeholder(s) la_child_id"),
    ("priority: high", "priority: urgent", 4, "priority"),
    ("source: somewhere in the guidance\n", "", 1, "`source` is required"),
])
def test_each_mistake_is_named_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in GOOD
    problems = check_rules_dir(write(tmp_path, GOOD.replace(old, new)))
    assert problems, "the mistake was not found"
    assert any(p.line == line and words in p.message for p in problems), problems


def test_a_clock_nothing_stops_must_be_immediate(tmp_path: Path) -> None:
    text = GOOD.replace("stop:\n  event_types: [police.missing_report.opened]\n", "")
    problems = check_rules_dir(write(tmp_path, text))
    assert any("can never be stopped" in p.message for p in problems)


def test_load_refuses_a_directory_with_problems(tmp_path: Path) -> None:
    with pytest.raises(AlertRulesError, match="unknown event type"):
        load_rules(write(tmp_path, GOOD.replace("child.missing.started", "child.gone")))


def test_check_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "check", str(RULES)]) == 0
    assert "7 alert rule file(s), no problems" in capsys.readouterr().out
    assert main(["alerts", "check", str(write(tmp_path, GOOD.replace("PT2H", "soon")))]) == 1
