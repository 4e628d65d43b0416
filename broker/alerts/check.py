"""Reading and validating a directory of alert rule files (`broker alerts check DIR`).

The same YAML reader, problem format and CEL compiler as the agreements: every problem names the
file, the line and the fix, and `load_rules` refuses a directory with any problem, so the alerts
service never runs a rule `check` would reject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from broker.agreements.check import FieldCatalogue, default_catalogue
from broker.agreements.conditions import KNOWN_FUNCTIONS, ConditionSyntaxError, compile_condition
from broker.agreements.exceptions import AgreementError, Problem
from broker.agreements.loader import Loc, agreement_files, line_of, parse_yaml
from broker.alerts.clocks import MESSAGE_NAMES, RULE_NAMES, placeholders
from broker.alerts.model import AlertRule, Trigger


class AlertRulesError(AgreementError):
    """A rules directory with problems (each names file, line and fix)."""


@dataclass(frozen=True)
class SourcedRule:
    """A rule with its file and the line of each of its values."""

    rule: AlertRule
    file: Path
    lines: dict[Loc, int]

    def at(self, loc: Loc, message: str, fix: str) -> Problem:
        return Problem(self.file, line_of(self.lines, loc), message, fix)


def load_rules(directory: Path, registry: FieldCatalogue | None = None) -> list[AlertRule]:
    """Every rule of `directory`; raises `AlertRulesError` on any problem."""
    sourced, problems = read_rules(directory)
    problems.extend(validate(sourced, registry or default_catalogue()))
    if problems:
        raise AlertRulesError(problems)
    return [s.rule for s in sourced]


def check_rules_dir(directory: Path, registry: FieldCatalogue | None = None) -> list[Problem]:
    """Every problem of `directory`, in file and line order (empty when all is well)."""
    sourced, problems = read_rules(directory)
    problems.extend(validate(sourced, registry or default_catalogue()))
    return sorted(problems, key=lambda p: (str(p.file), p.line or 0))


def read_rules(directory: Path) -> tuple[list[SourcedRule], list[Problem]]:
    """Parse every rule file of `directory` (not recursive)."""
    if not directory.is_dir():
        return [], [Problem(directory, None, "alert rules directory not found",
                            "give a directory of .yaml rule files (see docs/alerts.md)")]
    files = agreement_files(directory)
    if not files:
        return [], [Problem(directory, None, "no alert rule files (*.yaml) found",
                            "add one file per rule (see alerts/rules/)")]
    sourced: list[SourcedRule] = []
    problems: list[Problem] = []
    for path in files:
        try:
            data, lines, duplicates = parse_yaml(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, None, f"cannot read file ({exc.__class__.__name__})",
                                    "make it a readable UTF-8 text file"))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(Problem(path, mark.line + 1 if mark else None, "not valid YAML",
                                    "correct the YAML syntax (indentation, quoting, colons)"))
            continue
        problems += [Problem(path, line, f"key `{key}` appears twice", "keep one of them")
                     for key, line in duplicates]
        if not isinstance(data, dict):
            problems.append(Problem(path, 1, "the file is not a mapping of keys to values",
                                    "start from a rule in alerts/rules/"))
            continue
        try:
            rule = AlertRule.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                loc: Loc = tuple(error["loc"])
                where = ".".join(map(str, loc)) or "file"
                if error["type"] == "missing":
                    message, fix = f"`{where}` is required", f"add `{loc[-1]}`"
                elif error["type"] == "extra_forbidden":
                    message = f"`{where}` is not a known key"
                    fix = f"remove `{loc[-1]}` or correct its spelling (see docs/alerts.md)"
                else:
                    message = f"`{where}`: {error['msg']}"
                    fix = ("write durations in ISO 8601, e.g. PT0S, PT4H, P3D"
                           if "after" in map(str, loc) else
                           "correct the value (see docs/alerts.md)")
                problems.append(Problem(path, line_of(lines, loc), message, fix))
            continue
        sourced.append(SourcedRule(rule, path, lines))
    return sourced, problems


def validate(sourced: Sequence[SourcedRule], catalogue: FieldCatalogue) -> list[Problem]:
    """Problems of meaning: event types, condition names, stages, placeholders, duplicates."""
    problems: list[Problem] = []
    first: dict[str, SourcedRule] = {}
    for one in sourced:
        rule = one.rule
        if rule.key in first:
            problems.append(one.at(("version",), f"{rule.key} is also defined in "
                                   f"{first[rule.key].file.name}",
                                   "give a changed rule a new version number"))
        first.setdefault(rule.key, one)
        problems += _check_trigger(one, "start", rule.start, catalogue)
        if rule.stop is not None:
            problems += _check_trigger(one, "stop", rule.stop, catalogue)
        for level, stages in rule.after_by_risk.items():
            if len(stages) != len(rule.after):
                problems.append(one.at(("after_by_risk", level),
                                       f"{len(stages)} stage(s) for risk `{level}` but "
                                       f"{len(rule.after)} in `after`",
                                       "give every risk level as many durations as `after`"))
        for name in ("after",):
            if any(d.total_seconds() < 0 for d in rule.after):
                problems.append(one.at((name,), "a negative duration", "use PT0S or more"))
        if rule.stop is None and any(d.total_seconds() > 0 for d in rule.after):
            problems.append(one.at(("after",), "a clock without `stop` can never be stopped",
                                   "add a `stop` trigger, or use `after: [PT0S]` for an "
                                   "immediate alert"))
        for key in ("message", "action"):
            text = getattr(rule, key)
            try:
                names = placeholders(text)
            except ValueError:
                problems.append(one.at((key,), f"`{key}` has an unbalanced brace",
                                       "write {name} placeholders, {{ for a brace"))
                continue
            unknown = [n for n in names if n not in MESSAGE_NAMES]
            if unknown:
                problems.append(one.at((key,), f"`{key}` uses unknown placeholder(s) "
                                       + ", ".join(unknown),
                                       "use " + ", ".join(sorted(MESSAGE_NAMES))
                                       + " (never a personal value)"))
    return problems


def _check_trigger(one: SourcedRule, part: str, trigger: Trigger,
                   catalogue: FieldCatalogue) -> list[Problem]:
    problems = []
    known_types = catalogue.event_types()
    fields: list[set[str]] = []
    for index, event_type in enumerate(trigger.event_types):
        if event_type in known_types:
            fields.append(set(catalogue.fields(event_type)))
        else:
            problems.append(one.at((part, "event_types", index),
                                   f"unknown event type `{event_type}`",
                                   "use one of: " + ", ".join(known_types)))
    if trigger.when is None or not fields:
        return problems
    loc: Loc = (part, "when")
    try:
        condition = compile_condition(trigger.when)
    except ConditionSyntaxError as exc:
        return [*problems, one.at(loc, f"condition does not compile: {exc}",
                                  "correct the CEL expression (see docs/agreements.md)")]
    in_all = set.intersection(*fields)
    unknown = [n for n in condition.names if n not in in_all and n not in RULE_NAMES]
    if unknown:
        problems.append(one.at(loc, "condition uses unknown name(s) " + ", ".join(unknown),
                               "use fields of every event type listed, or "
                               + ", ".join(sorted(RULE_NAMES))))
    functions = condition.unknown_functions()
    if functions:
        problems.append(one.at(loc, "condition calls unknown function(s) " + ", ".join(functions),
                               "use CEL standard functions: " + ", ".join(sorted(KNOWN_FUNCTIONS))))
    return problems
