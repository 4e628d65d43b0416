"""`broker agreements explain`: what each recipient would get of a sample event, and why.

Shared fields are listed by name only (the sample may be real personal data); derived values are
shown, pseudonyms computed with a throw-away key, as they differ per recipient and per key.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from broker.agreements.check import FieldCatalogue
from broker.agreements.evaluate import (
    AgreementSet,
    Decision,
    EventView,
    RuleOutcome,
    RuleRef,
    SubjectContext,
)
from broker.agreements.model import Derivation
from broker.errors import BrokerError


class EventFileError(BrokerError):
    """A sample event file that cannot be read; names the file and what to fix."""


class Converter(FieldCatalogue, Protocol):
    """A catalogue that also converts EVENTS.md JSON field values (`SchemaRegistry` does)."""

    def validate_fields(self, event_type: str, fields: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Explanation:
    """A decision together with the per-rule outcomes that led to it."""

    event: EventView
    now: datetime
    decision: Decision
    trace: list[RuleOutcome]


def read_event(path: Path, converter: Converter, issuer: str | None = None) -> EventView:
    """Read one event in the EVENTS.md JSON form (plus `issuer`) and convert its field values."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EventFileError(f"{path}: cannot read ({exc.__class__.__name__}); "
                             "give a readable JSON file") from None
    except json.JSONDecodeError as exc:
        raise EventFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); "
                             "correct the JSON") from None
    if not isinstance(raw, dict):
        raise EventFileError(f"{path}: not a JSON object; use the form in EVENTS.md")
    issued_by = issuer or raw.get("issuer")
    missing = [k for k in ("event_type", "occurred_at") if not isinstance(raw.get(k), str)]
    if not isinstance(issued_by, str):
        missing.append("issuer")
    if missing or not isinstance(issued_by, str):
        raise EventFileError(f"{path}: missing {', '.join(missing)}; add them "
                             "(or pass --issuer for the issuer)")
    try:
        occurred_at = datetime.fromisoformat(raw["occurred_at"])
    except ValueError:
        occurred_at = None
    if occurred_at is None or occurred_at.tzinfo is None:
        raise EventFileError(f"{path}: occurred_at is not an ISO 8601 UTC time; "
                             "write it like 2026-11-24T18:05:00Z")
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        raise EventFileError(f"{path}: `fields` is not a JSON object; use the form in EVENTS.md")
    return EventView(
        event_id=str(raw.get("event_id") or "explain"),
        event_type=raw["event_type"],
        issuer=issued_by,
        subject=str(raw.get("subject", "")),
        occurred_at=occurred_at.astimezone(UTC),
        # Raises FieldValueError (a BrokerError naming the field, never the value).
        fields=converter.validate_fields(raw["event_type"], fields),
    )


def explain(
    agreements: AgreementSet,
    event: EventView,
    *,
    now: datetime,
    context: SubjectContext | None = None,
) -> Explanation:
    """Decide for `event` as the router would, with illustrative pseudonym keys and a trace."""
    keys: dict[str, bytes] = {}
    trace: list[RuleOutcome] = []
    decision = agreements.decide(
        event,
        now=now,
        context=context,
        pseudonym_key=lambda recipient: keys.setdefault(recipient, secrets.token_bytes(32)),
        trace=trace,
    )
    return Explanation(event, now, decision, trace)


def render(explanation: Explanation, agreements: AgreementSet, console: Console) -> None:
    """Print one table per recipient, then the rules that did not grant, then errors."""
    event, decision = explanation.event, explanation.decision
    derivations = _derivations(agreements)
    console.print(
        f"[bold]{event.event_type}[/] from [bold]{event.issuer}[/], occurred "
        f"{event.occurred_at.isoformat()}, decided at {explanation.now.isoformat()}"
    )
    if not decision.grants:
        console.print("[bold red]No recipient receives this event[/] (deny by default).")
    for recipient, grant in decision.grants.items():
        table = Table(
            title=f"{recipient} receives, under {', '.join(grant.agreements)}",
            title_justify="left",
        )
        table.add_column("field")
        table.add_column("disclosure")
        table.add_column("value")
        table.add_column("agreement")
        table.add_column("rule")
        reasons = grant.reasons  # worked out from the rules applied: once per grant
        for name in sorted(grant.fields_shared):
            table.add_row(name, "[green]shared[/] (issuer-signed)", "", *_why(reasons[name]))
        for name, value in sorted(grant.derived.items()):
            how = derivations.get((reasons[name][0], name))
            keyed = how is not None and how.transform == "pseudonym"
            shown = f"{str(value)[:16]}… (illustrative key)" if keyed else str(value)
            label = f"[cyan]derived[/] {how.transform}({how.field})" if how else "[cyan]derived[/]"
            table.add_row(name, label, shown, *_why(reasons[name]))
        for name in sorted(grant.fields_withheld):
            table.add_row(f"[dim]{name}[/]", "[red]withheld[/]", "", "", "")
        console.print(table)
    not_granted = [o for o in explanation.trace if o.outcome != "matched"]
    if not_granted:
        table = Table(title="Rules considered that grant nothing", title_justify="left")
        for column in ("recipient", "agreement", "rule", "outcome"):
            table.add_column(column)
        for outcome in not_granted:
            table.add_row(outcome.recipient, outcome.rule.agreement, outcome.rule.rule,
                          outcome.outcome)
        console.print(table)
    for error in decision.errors:
        console.print(f"[bold red]error[/]: {error}")
    console.print("Any agency not listed above receives nothing (deny by default).")


def _why(refs: tuple[RuleRef, ...]) -> tuple[str, str]:
    """Agreement and rule columns for the rules that grant one item."""
    return (", ".join(dict.fromkeys(ref.agreement for ref in refs)),
            ", ".join(ref.rule for ref in refs))


def _derivations(agreements: AgreementSet) -> dict[tuple[RuleRef, str], Derivation]:
    return {
        (RuleRef(version.key, rule.name), derivation.name): derivation
        for version in agreements.versions()
        for rule in version.agreement.rules
        for derivation in rule.derive
    }
