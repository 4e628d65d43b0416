"""`broker agreements check`: every kind of mistake is reported with file, line and fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from agreement_samples import EXAMPLES, VALID

from broker.agreements import AgreementError, Problem, check_dir, load_agreements
from broker.cli import main
from broker.schemas import SchemaRegistry


def _replace(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new)


# (case, file text, line expected, words expected in the message)
CASES = [
    ("unknown event type", _replace("[child.missing.started]", "[child.went.missing]"),
     15, "unknown event type `child.went.missing`"),
    ("unknown field", _replace("[la_child_id, risk_level]", "[la_child_id, shoe_size]"),
     17, "unknown field `shoe_size`"),
    ("CEL does not compile", _replace('risk_level == "high"', 'risk_level == "high" &&'),
     16, "condition does not compile"),
    ("CEL unknown name", _replace('risk_level == "high"', 'risk_levle == "high"'),
     16, "unknown name(s) risk_levle"),
    ("CEL unknown function", _replace('risk_level == "high"', 'risk_level.lower() == "high"'),
     16, "unknown function(s) lower"),
    ("transform on wrong type",
     _replace("{name: dob_band, transform: age_band, field: dob}",
              "{name: dob_band, transform: age_band, field: la_child_id}"),
     19, "`age_band` cannot use `la_child_id` (string)"),
    ("until before from", _replace("valid_until: 2027-03-31", "valid_until: 2024-03-31"),
     9, "`valid_until` is before `valid_from`"),
    ("time without zone", _replace("valid_from: 2025-04-01", "valid_from: 2025-04-01T09:00:00"),
     8, "time without a time zone"),
    ("agency id shape", _replace("recipient: police.met", "recipient: police"),
     5, "recipient `police` is not an agency id"),
    ("provider shape", _replace("providers: [council]", "providers: [Council Of Westminster]"),
     4, "not an agency id or kind"),
    ("recipient equal to provider",
     _replace("providers: [council]", "providers: [council, police.met]"),
     5, "the recipient is also a provider"),
    ("empty rule",
     _replace("    share: [la_child_id, risk_level]\n    derive:\n"
              "      - {name: dob_band, transform: age_band, field: dob}\n", ""),
     14, "shares and derives nothing"),
    ("unknown key", _replace("purpose: Testing.", "purpose: Testing.\nporpoise: Testing."),
     7, "`porpoise` is not a known key"),
    ("missing key", _replace("title: Test agreement\n", ""),
     1, "`title` is required"),
    ("bad retention", _replace("retention: P6Y", "retention: six years"),
     10, "`retention`"),
    ("unknown transform",
     _replace("transform: age_band", "transform: blur"), 19, "`rules.0.derive.0.transform`"),
    ("YAML syntax", _replace("title: Test agreement", "title: [Test agreement"),
     4, "not valid YAML"),
    ("duplicate key", _replace("version: 1", "version: 1\nversion: 2"),
     3, "key `version` appears twice"),
    ("derived name is a field",
     _replace("{name: dob_band,", "{name: age_band,"), 19, "is also a field"),
]


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_mistake_is_reported_with_file_line_and_fix(
    write: Callable[..., Path], text: str, line: int, words: str
) -> None:
    directory = write(bad=text)
    problems = check_dir(directory)
    matching = [p for p in problems if words in p.message]
    assert matching, problems
    assert matching[0].file == directory / "bad.yaml"
    assert matching[0].line == line
    assert matching[0].fix


@pytest.mark.parametrize(("text", "line", "words"), [c[1:] for c in CASES[:3]],
                         ids=[c[0] for c in CASES[:3]])
def test_cli_prints_one_line_per_problem_and_exits_non_zero(
    write: Callable[..., Path], capsys: pytest.CaptureFixture[str],
    text: str, line: int, words: str,
) -> None:
    directory = write(bad=text)
    assert main(["agreements", "check", str(directory)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(o.startswith(f"{directory / 'bad.yaml'}:{line}: ") and words in o
               and "; fix: " in o for o in out), out


def test_unknown_agency_when_a_list_is_given(write: Callable[..., Path]) -> None:
    directory = write(bad=_replace("recipient: police.met", "recipient: police.mett"))
    assert check_dir(directory) == []
    problems = check_dir(directory, agencies={"council.E09000033", "police.met"})
    assert [(p.line, p.message) for p in problems] == [(5, "unknown agency `police.mett`")]


def test_unknown_agency_kind_when_a_list_is_given(write: Callable[..., Path]) -> None:
    directory = write(bad=_replace("providers: [council]", "providers: [counsil.*]"))
    problems = check_dir(directory, agencies={"council.E09000033", "police.met"})
    assert [(p.line, p.message) for p in problems] == [
        (4, "no agency of kind `counsil` is registered")
    ]


def test_cli_check_takes_an_agency_list(
    write: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write(ok=VALID)
    args = ["agreements", "check", str(directory), "--agency", "police.met"]
    assert main(args) == 1
    assert "no agency of kind `council`" in capsys.readouterr().out


def test_duplicate_id_and_version(write: Callable[..., Path]) -> None:
    directory = write(a=VALID, b=VALID)
    problems = check_dir(directory)
    assert [(p.file.name, p.line) for p in problems] == [("b.yaml", 2)]
    assert "dsa.test.sharing@1 is also defined in a.yaml" in problems[0].message
    assert "new version number" in problems[0].fix


def test_overlapping_versions_of_one_id(write: Callable[..., Path]) -> None:
    later = _replace("version: 1", "version: 2",
                     _replace("valid_from: 2025-04-01", "valid_from: 2027-03-31"))
    problems = check_dir(write(a=VALID, b=later))
    assert [(p.file.name, p.line) for p in problems] == [("b.yaml", 8)]
    assert "versions 1 and 2 of dsa.test.sharing are in force at the same time" in (
        problems[0].message)


def test_consecutive_versions_do_not_overlap(write: Callable[..., Path]) -> None:
    later = _replace("version: 1", "version: 2",
                     _replace("valid_from: 2025-04-01", "valid_from: 2027-04-01",
                              _replace("valid_until: 2027-03-31", "valid_until: 2029-03-31")))
    assert check_dir(write(a=VALID, b=later)) == []


def test_duplicate_rule_names(write: Callable[..., Path]) -> None:
    rule = VALID.split("rules:\n", 1)[1]
    problems = check_dir(write(bad=VALID + rule))
    assert [(p.line, p.message) for p in problems] == [(20, "rule name `missing` is used twice")]


def test_condition_names_must_exist_in_every_event_type(write: Callable[..., Path]) -> None:
    text = _replace("[child.missing.started]", "[child.missing.started, child.missing.ended]")
    problems = check_dir(write(bad=text))
    assert [p.message for p in problems] == ["condition uses unknown name(s) risk_level"]


def test_context_names_and_comprehension_variables_are_known(
    write: Callable[..., Path],
) -> None:
    condition = ('recipient in guardians && issuer.startsWith("council.") && '
                 'exploitation_concerns.exists(c, c == "cce") && now > occurred_at')
    assert check_dir(write(ok=_replace('risk_level == "high"', condition))) == []


def test_example_set_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_dir(EXAMPLES) == []
    assert main(["agreements", "check", str(EXAMPLES)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_example_set_passes_with_its_agencies() -> None:
    agencies = {"council.E09000033", "council.E09000022", "council.E09000028", "police.met",
                "nrm.sca", "guardian.ictg", "stats.national"}
    assert check_dir(EXAMPLES, agencies=agencies) == []


def test_load_refuses_a_directory_with_problems(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    directory = write(bad=_replace("[la_child_id, risk_level]", "[la_child_id, shoe_size]"))
    with pytest.raises(AgreementError) as raised:
        load_agreements(directory, registry)
    assert [p.line for p in raised.value.problems] == [17]
    assert "bad.yaml:17: unknown field `shoe_size`" in str(raised.value)


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    assert [p.message for p in check_dir(tmp_path / "nope")] == ["agreements directory not found"]
    assert [p.message for p in check_dir(tmp_path)] == ["no agreement files (*.yaml) found"]


def test_problem_prints_as_one_line() -> None:
    problem = Problem(Path("a.yaml"), 3, "bad thing", "do this")
    assert str(problem) == "a.yaml:3: bad thing; fix: do this"
