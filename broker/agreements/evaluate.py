"""Deciding, for one event, what each recipient may receive under the agreements in force.

Deny by default: a recipient appears in a `Decision` only if some rule of an agreement in force
at the decision time matched. Rules are indexed by (event type, provider), so the cost of a
decision grows with the rules that can match the event, not with the number of agreements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from broker.agreements.conditions import (
    Condition,
    ConditionFailed,
    ConditionSyntaxError,
    compile_condition,
    to_cel,
)
from broker.agreements.exceptions import AgreementError, Problem
from broker.agreements.model import Agreement, Derivation
from broker.agreements.transforms import TRANSFORMS, TransformError
from broker.ids import AGENCY_KIND_RE, SUBJECT_FIELD

PseudonymKey = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class EventView:
    """What the router knows of an event: header values and the decoded payload fields."""

    event_id: str
    event_type: str
    issuer: str
    subject: str
    occurred_at: datetime
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SubjectContext:
    """Relationships the router learned from earlier events about the same subject."""

    guardians: frozenset[str] = frozenset()  # guardian services appointed (`guardian.appointed`)
    nrm_referrers: frozenset[str] = frozenset()  # agencies that referred the subject to the NRM


@dataclass(frozen=True, slots=True)
class RuleRef:
    """One rule of one agreement version."""

    agreement: str  # id@version
    rule: str

    def __str__(self) -> str:
        return f"{self.agreement} rule {self.rule}"


@dataclass(frozen=True, slots=True)
class Grant:
    """What one recipient may receive of one event, and which rules allow each item.

    `fields_shared` and `fields_withheld` name payload fields and, as `SUBJECT_FIELD`, the
    issuer's subject reference (granted only by a rule that lists it under `share`).
    """

    recipient: str
    fields_shared: frozenset[str]
    fields_withheld: frozenset[str]
    derived: Mapping[str, Any]
    agreements: tuple[str, ...]
    rules: tuple[RuleRef, ...]
    # Each rule applied, in order, with the shared fields and derived values it gave.
    given: tuple[tuple[RuleRef, frozenset[str]], ...] = field(repr=False)

    @property
    def reasons(self) -> dict[str, tuple[RuleRef, ...]]:
        """Shared field or derived name -> the rules that give it, in rule order (worked out
        when asked: only `broker agreements explain` asks, so routing does not pay for it)."""
        found: dict[str, dict[RuleRef, None]] = {}  # dicts as ordered sets
        for ref, names in self.given:
            for name in names:
                found.setdefault(name, {})[ref] = None
        return {name: tuple(refs) for name, refs in found.items()}


@dataclass(frozen=True, slots=True)
class ConditionError:
    """A rule that could not be applied for a recipient; it denied. Names no personal value."""

    rule: RuleRef
    recipient: str
    stage: Literal["condition", "transform"]
    reason: str

    def __str__(self) -> str:
        return f"{self.rule} for {self.recipient}: {self.stage} failed: {self.reason}"


Outcome = Literal["matched", "condition false", "condition error", "not in force", "own event"]


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """How one candidate rule fared for an event (recorded only when explaining)."""

    rule: RuleRef
    recipient: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Decision:
    """Per-recipient grants for one event (absent recipient = denied) and rules that failed."""

    event_id: str
    grants: Mapping[str, Grant]
    errors: list[ConditionError]


@dataclass
class AgreementVersion:
    """One version of an agreement as held by a set: never replaced, only revoked."""

    agreement: Agreement
    source: Path | None
    starts: datetime
    ends: datetime | None
    revoked_at: datetime | None = None

    @property
    def key(self) -> str:
        """`id@version`."""
        return self.agreement.key

    def in_force(self, at: datetime) -> bool:
        """Whether disclosures may be made under this version at `at`."""
        return (
            self.starts <= at
            and (self.ends is None or at < self.ends)
            and (self.revoked_at is None or at < self.revoked_at)
        )


@dataclass(frozen=True, slots=True)
class _Rule:
    ref: RuleRef
    version: AgreementVersion
    recipient: str
    condition: Condition | None
    share: frozenset[str]
    derive: tuple[Derivation, ...]


class _Values:
    """CEL values for one event, converted on first use; `recipient` is set per candidate rule."""

    def __init__(self, event: EventView, now: datetime, context: SubjectContext | None) -> None:
        self.recipient = ""
        self._fields = event.fields
        ctx = context or SubjectContext()
        self._cache: dict[str, Any] = {
            "issuer": event.issuer,
            "event_type": event.event_type,
            "occurred_at": event.occurred_at,
            "now": now,
            "guardians": sorted(ctx.guardians),
            "nrm_referrers": sorted(ctx.nrm_referrers),
        }

    def get(self, name: str, /) -> Any:
        if name == "recipient":
            return self.recipient
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = to_cel(self._fields.get(name))
            return value


@dataclass
class AgreementSet:
    """Every version of every agreement, indexed for fast decisions."""

    _versions: dict[str, AgreementVersion] = field(default_factory=dict)
    _index: dict[tuple[str, str], list[_Rule]] = field(default_factory=dict)

    @classmethod
    def of(cls, agreements: Iterable[Agreement | tuple[Agreement, Path]]) -> AgreementSet:
        """A set holding `agreements` (optionally paired with their source files)."""
        result = cls()
        for item in agreements:
            agreement, source = item if isinstance(item, tuple) else (item, None)
            result.add(agreement, source)
        return result

    def add(self, agreement: Agreement, source: Path | None = None) -> AgreementVersion:
        """Add one agreement version; an existing id@version is never overwritten."""
        where = source or Path(agreement.key)
        if agreement.key in self._versions:
            raise AgreementError([Problem(where, None, f"{agreement.key} is already loaded",
                                          "give a changed agreement a new version number")])
        starts, ends = agreement.starts, agreement.ends
        if starts is None or (agreement.valid_until is not None and ends is None):
            raise AgreementError([Problem(where, None, "validity times need a time zone",
                                          "write dates, or times ending in Z")])
        version = AgreementVersion(agreement, source, starts, ends)
        rules = [self._compile(version, index, where) for index in range(len(agreement.rules))]
        self._versions[agreement.key] = version
        providers = _provider_keys(agreement.providers)
        for rule, spec in zip(rules, agreement.rules, strict=True):
            for event_type in dict.fromkeys(spec.event_types):
                for provider in providers:
                    self._index.setdefault((event_type, provider), []).append(rule)
        return version

    def revoke(self, agreement_id: str, version: int, at: datetime) -> None:
        """Stop disclosures under id@version from `at` (kept for audit; never deleted)."""
        key = f"{agreement_id}@{version}"
        held = self._versions.get(key)
        if held is None:
            raise AgreementError([Problem(Path(key), None, f"{key} is not loaded",
                                          "revoke an id and version that `versions()` lists")])
        if at.tzinfo is None:
            raise AgreementError([Problem(Path(key), None, "revocation time has no time zone",
                                          "give an aware datetime (UTC)")])
        at = at.astimezone(UTC)
        if held.revoked_at is None or at < held.revoked_at:
            held.revoked_at = at

    def get(self, key: str) -> AgreementVersion | None:
        """The version `id@version`, if held."""
        return self._versions.get(key)

    def versions(self) -> tuple[AgreementVersion, ...]:
        """Every version held, revoked or expired included, ordered by id then version."""
        return tuple(sorted(self._versions.values(),
                            key=lambda v: (v.agreement.id, v.agreement.version)))

    def __len__(self) -> int:
        return len(self._versions)

    def decide(
        self,
        event: EventView,
        *,
        now: datetime,
        context: SubjectContext | None = None,
        pseudonym_key: PseudonymKey | None = None,
        trace: list[RuleOutcome] | None = None,
    ) -> Decision:
        """Decide what each recipient may receive of `event` at decision time `now`.

        An agreement applies when in force at `now` (the disclosure is made now, so an expired or
        revoked agreement stops forwarding at once). A failing condition or transform denies that
        rule (or derived value) for that recipient and is reported in `Decision.errors`.
        """
        kind = event.issuer.partition(".")[0]
        candidates = [*self._index.get((event.event_type, event.issuer), ()),
                      *self._index.get((event.event_type, kind), ())]
        errors: list[ConditionError] = []
        if not candidates:
            return Decision(event.event_id, {}, errors)
        values: _Values | None = None
        matched: dict[str, list[_Rule]] = {}
        for rule in candidates:
            outcome: Outcome = "matched"
            if rule.recipient == event.issuer:
                outcome = "own event"
            elif not rule.version.in_force(now):
                outcome = "not in force"
            elif rule.condition is not None:
                if values is None:
                    values = _Values(event, now, context)
                values.recipient = rule.recipient
                try:
                    if not rule.condition.evaluate(values):
                        outcome = "condition false"
                except ConditionFailed as failed:
                    outcome = "condition error"
                    errors.append(
                        ConditionError(rule.ref, rule.recipient, "condition", failed.reason)
                    )
            if trace is not None:
                trace.append(RuleOutcome(rule.ref, rule.recipient, outcome))
            if outcome == "matched":
                matched.setdefault(rule.recipient, []).append(rule)
        grants = {
            recipient: _grant(event, recipient, rules, pseudonym_key, errors)
            for recipient, rules in sorted(matched.items())
        }
        return Decision(event.event_id, grants, errors)

    @staticmethod
    def _compile(version: AgreementVersion, index: int, where: Path) -> _Rule:
        spec = version.agreement.rules[index]
        condition = None
        if spec.when is not None:
            try:
                condition = compile_condition(spec.when)
            except ConditionSyntaxError as exc:
                raise AgreementError([Problem(where, None, f"rule {spec.name}: {exc}",
                                              "correct the CEL condition")]) from None
        return _Rule(
            ref=RuleRef(version.key, spec.name),
            version=version,
            recipient=version.agreement.recipient,
            condition=condition,
            share=frozenset(spec.share),
            derive=tuple(spec.derive),
        )


def _provider_keys(providers: Iterable[str]) -> list[str]:
    """Index keys: agency ids and kinds (`council.*` is `council`), minus ids a kind covers."""
    keys = {p[:-2] if p.endswith(".*") else p for p in providers}
    kinds = {k for k in keys if AGENCY_KIND_RE.match(k)}
    return sorted(k for k in keys if k in kinds or k.partition(".")[0] not in kinds)


_SUBJECT = frozenset((SUBJECT_FIELD,))


def _grant(
    event: EventView,
    recipient: str,
    rules: list[_Rule],
    pseudonym_key: PseudonymKey | None,
    errors: list[ConditionError],
) -> Grant:
    """The union of what `rules` give `recipient`, with derived values computed."""
    present = _SUBJECT.union(event.fields)
    given: list[tuple[RuleRef, frozenset[str]]] = []
    shared: set[str] = set()
    derived: dict[str, Any] = {}
    key: bytes | None = None
    key_looked_up = False
    for rule in rules:
        names = rule.share & present
        shared |= names
        made: list[str] = []
        for derivation in rule.derive:
            raw = event.fields.get(derivation.field)
            if raw is None:
                continue  # unknown stays unknown: nothing to derive from
            transform = TRANSFORMS[derivation.transform]
            if transform.keyed and not key_looked_up:
                key = pseudonym_key(recipient) if pseudonym_key is not None else None
                key_looked_up = True
            try:
                value = transform.apply(raw, event.occurred_at, key)
            except TransformError as exc:
                errors.append(ConditionError(rule.ref, recipient, "transform",
                                             f"{derivation.name}: {exc}"))
                continue
            derived.setdefault(derivation.name, value)
            made.append(derivation.name)
        given.append((rule.ref, names.union(made) if made else names))
    refs = tuple(dict.fromkeys(rule.ref for rule in rules))
    return Grant(
        recipient=recipient,
        fields_shared=frozenset(shared),
        fields_withheld=present - shared,
        derived=derived,
        agreements=tuple(sorted({ref.agreement for ref in refs})),
        rules=refs,
        given=tuple(given),
    )
