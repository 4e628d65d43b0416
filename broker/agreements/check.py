"""Validating a directory of agreements: each file on its own, then the set together.

Every problem names the file, the line and the fix. `load_agreements` refuses to build a set from a
directory with any problem, so the router never runs with an agreement `check` would reject.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from broker.agreements.conditions import (
    CONTEXT_NAMES,
    KNOWN_FUNCTIONS,
    ConditionSyntaxError,
    ConditionTooCostly,
    compile_condition,
)
from broker.agreements.evaluate import AgreementSet
from broker.agreements.exceptions import AgreementError, Problem
from broker.agreements.loader import SourcedAgreement, read_dir, read_text
from broker.agreements.model import Rule
from broker.agreements.transforms import TRANSFORMS
from broker.ids import AGENCY_ID_RE, AGENCY_KIND_RE, SUBJECT_FIELD


class FieldKind(Protocol):
    """The part of a schema field description that checks need."""

    @property
    def kind(self) -> str: ...


class FieldCatalogue(Protocol):
    """Event types and their payload fields; `broker.schemas.SchemaRegistry` is one."""

    def event_types(self) -> list[str]: ...

    def fields(self, event_type: str) -> Mapping[str, FieldKind]: ...


def default_catalogue() -> FieldCatalogue:
    """The schemas of this checkout (`schemas/avro/`)."""
    from broker.schemas import SchemaRegistry  # imported late: loading schemas reads files

    return SchemaRegistry.default()


def load_agreements(directory: Path, registry: FieldCatalogue | None = None) -> AgreementSet:
    """Load and validate every agreement in `directory`; raise `AgreementError` on any problem."""
    sourced, problems = read_dir(directory)
    problems.extend(validate(sourced, registry or default_catalogue()))
    if problems:
        raise AgreementError(problems)
    return AgreementSet.of((s.agreement, s.file) for s in sourced)


def load_documents(
    documents: Sequence[tuple[str, Path]],
    registry: FieldCatalogue | None = None,
    agencies: Collection[str] | None = None,
) -> list[SourcedAgreement]:
    """Parse and validate agreement documents `(text, name)` together, as `check` does a
    directory; raise `AgreementError` listing every problem."""
    sourced: list[SourcedAgreement] = []
    problems: list[Problem] = []
    for text, name in documents:
        one, found = read_text(text, name)
        problems.extend(found)
        if one is not None:
            sourced.append(one)
    problems.extend(validate(sourced, registry or default_catalogue(), agencies))
    if problems:
        raise AgreementError(sorted(problems, key=lambda p: (str(p.file), p.line or 0)))
    return sourced


def check_dir(
    directory: Path,
    *,
    registry: FieldCatalogue | None = None,
    agencies: Collection[str] | None = None,
) -> list[Problem]:
    """Every problem in `directory`, in file and line order (empty when all is well)."""
    sourced, problems = read_dir(directory)
    problems.extend(validate(sourced, registry or default_catalogue(), agencies))
    return sorted(problems, key=lambda p: (str(p.file), p.line or 0))


def validate(
    sourced: Sequence[SourcedAgreement],
    catalogue: FieldCatalogue,
    agencies: Collection[str] | None = None,
) -> list[Problem]:
    """Problems of meaning in parsed agreements: names, types, conditions, dates, the set."""
    schema = _Schema(catalogue)
    problems: list[Problem] = []
    for one in sourced:
        problems.extend(_check_parties(one, agencies))
        problems.extend(_check_dates(one))
        seen_rules: set[str] = set()
        derivations: dict[str, tuple[str, str]] = {}
        for index, rule in enumerate(one.agreement.rules):
            if rule.name in seen_rules:
                problems.append(_at(one, ("rules", index, "name"),
                                    f"rule name `{rule.name}` is used twice",
                                    "give each rule of an agreement its own name"))
            seen_rules.add(rule.name)
            problems.extend(_check_rule(one, index, rule, schema, derivations))
    problems.extend(_check_set(sourced))
    return problems


@dataclass(frozen=True)
class _Schema:
    catalogue: FieldCatalogue

    def known(self, event_type: str) -> bool:
        return event_type in self.catalogue.event_types()

    def kinds(self, event_type: str) -> dict[str, str]:
        return {name: info.kind for name, info in self.catalogue.fields(event_type).items()}


def _at(one: SourcedAgreement, loc: tuple[str | int, ...], message: str, fix: str) -> Problem:
    return Problem(one.file, one.line(*loc), message, fix)


def _check_parties(one: SourcedAgreement, agencies: Collection[str] | None) -> list[Problem]:
    agreement = one.agreement
    problems = []
    kinds = {a.partition(".")[0] for a in agencies} if agencies is not None else None
    for index, provider in enumerate(agreement.providers):
        loc = ("providers", index)
        kind = provider.removesuffix(".*")
        if AGENCY_KIND_RE.match(kind):
            if kinds is not None and kind not in kinds:
                problems.append(_at(one, loc, f"no agency of kind `{kind}` is registered",
                                    "correct the kind or register an agency of that kind"))
        elif not AGENCY_ID_RE.match(provider):
            problems.append(_at(one, loc, f"provider `{provider}` is not an agency id or kind",
                                "write an id like `council.E09000033`, or a kind like `council`"))
        elif agencies is not None and provider not in agencies:
            problems.append(_at(one, loc, f"unknown agency `{provider}`",
                                "correct the id or register the agency"))
    recipient = agreement.recipient
    if not AGENCY_ID_RE.match(recipient):
        problems.append(_at(one, ("recipient",), f"recipient `{recipient}` is not an agency id",
                            "name one agency, like `police.met` (kinds are for providers only)"))
    elif agencies is not None and recipient not in agencies:
        problems.append(_at(one, ("recipient",), f"unknown agency `{recipient}`",
                            "correct the id or register the agency"))
    if recipient in agreement.providers:
        problems.append(_at(one, ("recipient",), "the recipient is also a provider",
                            "remove the recipient from `providers`: agencies keep their own data"))
    return problems


def _check_dates(one: SourcedAgreement) -> list[Problem]:
    agreement = one.agreement
    problems = []
    dates = (("valid_from", agreement.valid_from), ("valid_until", agreement.valid_until))
    for key, value in dates:
        if isinstance(value, datetime) and value.tzinfo is None:
            problems.append(_at(one, (key,), f"`{key}` is a time without a time zone",
                                "add `Z` (UTC) or an offset, or give a date"))
    starts, ends = agreement.starts, agreement.ends
    if starts is not None and ends is not None and ends <= starts:
        problems.append(_at(one, ("valid_until",), "`valid_until` is before `valid_from`",
                            "correct the dates: an agreement ends after it starts"))
    return problems


def _check_rule(
    one: SourcedAgreement,
    index: int,
    rule: Rule,
    schema: _Schema,
    derivations: dict[str, tuple[str, str]],
) -> list[Problem]:
    here: tuple[str | int, ...] = ("rules", index)
    problems = []
    if not rule.share and not rule.derive:
        problems.append(_at(one, here, f"rule `{rule.name}` shares and derives nothing",
                            "list fields under `share` or `derive`, or delete the rule"))
    known: list[dict[str, str]] = []
    for position, event_type in enumerate(rule.event_types):
        if schema.known(event_type):
            known.append(schema.kinds(event_type))
        else:
            problems.append(_at(one, (*here, "event_types", position),
                                f"unknown event type `{event_type}`",
                                "use one of: " + ", ".join(schema.catalogue.event_types())))
    if not known:
        return problems
    types = ", ".join(t for t in rule.event_types if schema.known(t))
    in_any = {name for fields in known for name in fields}
    for position, name in enumerate(rule.share):
        if name not in in_any and name != SUBJECT_FIELD:  # the subject: every event has one
            problems.append(_at(one, (*here, "share", position),
                                f"unknown field `{name}` for {types}",
                                f"use a field of {types} (see schemas/avro/events/)"))
    for position, derivation in enumerate(rule.derive):
        loc = (*here, "derive", position)
        transform = TRANSFORMS[derivation.transform]
        kinds = {fields[derivation.field] for fields in known if derivation.field in fields}
        if not kinds:
            problems.append(_at(one, (*loc, "field"),
                                f"unknown field `{derivation.field}` for {types}",
                                f"derive from a field of {types} (see schemas/avro/events/)"))
        elif not kinds <= transform.accepts:
            problems.append(_at(one, (*loc, "transform"),
                                f"`{derivation.transform}` cannot use `{derivation.field}` "
                                f"({'/'.join(sorted(kinds))})",
                                f"apply `{derivation.transform}` to a field of kind "
                                + " or ".join(sorted(transform.accepts))))
        if derivation.name in in_any or derivation.name == SUBJECT_FIELD:
            problems.append(_at(one, (*loc, "name"),
                                f"derived name `{derivation.name}` is also a field of {types}",
                                "give the derived value a name of its own, e.g. "
                                f"`{derivation.name}_derived`"))
        definition = (derivation.transform, derivation.field)
        if derivations.setdefault(derivation.name, definition) != definition:
            problems.append(_at(one, (*loc, "name"),
                                f"derived name `{derivation.name}` is defined two ways",
                                "use one transform and field per derived name"))
    if rule.when is not None:
        problems.extend(
            _check_condition(one, (*here, "when"), rule.when, known, types, rule.name)
        )
    return problems


def _check_condition(
    one: SourcedAgreement,
    loc: tuple[str | int, ...],
    source: str,
    known: list[dict[str, str]],
    types: str,
    rule_name: str = "",
) -> list[Problem]:
    try:
        condition = compile_condition(source)
    except ConditionTooCostly as exc:
        return [_at(one, loc, f"rule `{rule_name}`: condition refused: {exc}",
                    "simplify the condition (see docs/agreements.md, Conditions: cost limit)")]
    except ConditionSyntaxError as exc:
        return [_at(one, loc, f"condition does not compile: {exc}",
                    "correct the CEL expression (see docs/agreements.md, Conditions)")]
    problems = []
    # A name must exist in every event type of the rule: elsewhere it would always be null.
    in_all = set.intersection(*(set(fields) for fields in known))
    unknown = [n for n in condition.names if n not in in_all and n not in CONTEXT_NAMES]
    if unknown:
        problems.append(_at(one, loc, "condition uses unknown name(s) " + ", ".join(unknown),
                            f"use fields of {types} or " + ", ".join(sorted(CONTEXT_NAMES))))
    functions = condition.unknown_functions()
    if functions:
        problems.append(_at(one, loc, "condition calls unknown function(s) " + ", ".join(functions),
                            "use CEL standard functions: " + ", ".join(sorted(KNOWN_FUNCTIONS))))
    return problems


def _check_set(sourced: Sequence[SourcedAgreement]) -> list[Problem]:
    problems = []
    first: dict[str, SourcedAgreement] = {}
    by_id: dict[str, list[SourcedAgreement]] = {}
    for one in sourced:
        key = one.agreement.key
        if key in first:
            problems.append(_at(one, ("version",),
                                f"{key} is also defined in {first[key].file.name}",
                                "give the changed agreement a new version number"))
            continue
        first[key] = one
        by_id.setdefault(one.agreement.id, []).append(one)
    for versions in by_id.values():
        dated = sorted((v for v in versions if v.agreement.starts is not None),
                       key=lambda v: v.agreement.version)
        for position, earlier in enumerate(dated):
            for later in dated[position + 1:]:
                if _overlap(earlier, later):
                    problems.append(_at(later, ("valid_from",),
                                        f"versions {earlier.agreement.version} and "
                                        f"{later.agreement.version} of {later.agreement.id} "
                                        "are in force at the same time",
                                        f"end version {earlier.agreement.version} (valid_until) "
                                        f"before version {later.agreement.version} starts"))
    return problems


def _overlap(a: SourcedAgreement, b: SourcedAgreement) -> bool:
    a_start, b_start = a.agreement.starts, b.agreement.starts
    if a_start is None or b_start is None:
        return False
    a_end, b_end = a.agreement.ends, b.agreement.ends
    return (a_end is None or b_start < a_end) and (b_end is None or a_start < b_end)
