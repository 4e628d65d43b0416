"""Bounded parsing (issue 15, part 6): YAML aliases refused in every file the broker reads, and a
cost limit on CEL conditions checked by `agreements check` and enforced at evaluation.

No timing is asserted: "quickly" is shown by the refusal happening before any expansion (an
alias bomb that were expanded would not finish within the suite's timeout).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from agreement_samples import NOW, VALID, missing_event

from broker.agreements import AgreementError, check_dir, load_agreements
from broker.agreements.conditions import (
    ASSUMED_LIST_SIZE,
    MAX_CONDITION_CHARS,
    MAX_CONDITION_COST,
    ConditionTooCostly,
    compile_condition,
)
from broker.agreements.evaluate import AgreementSet
from broker.agreements.loader import MAX_YAML_BYTES, YamlLimitError, parse_yaml
from broker.agreements.model import Agreement
from broker.cli import main
from broker.config import ConfigError, load_config
from broker.schemas import SchemaRegistry

# The issue's 567-byte "billion laughs": nine levels of nine aliases, 9**9 strings if expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
).ljust(567, "#")
TEN = "[0,1,2,3,4,5,6,7,8,9]"
# The issue's 190-character condition: five nested comprehensions over ten items (10**5 steps).
NESTED_CEL = (
    f'risk_level == "high" && {TEN}.all(a, {TEN}.all(b, {TEN}.all(c, {TEN}.all(d, '
    f"{TEN}.all(e, a+b+c+d+e != -10)))))"
)


def test_the_samples_are_the_issues() -> None:
    assert len(ALIAS_BOMB.encode()) == 567
    assert len(NESTED_CEL) == 190


def test_an_alias_bomb_in_an_agreement_is_refused_naming_file_and_line(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    directory = write(bomb=ALIAS_BOMB)
    (problem,) = check_dir(directory, registry=registry)
    assert problem.file.name == "bomb.yaml" and problem.line == 2
    assert "alias (*a)" in problem.message and "not allowed" in problem.message


def test_the_command_says_so_in_one_line(
    write: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write(bomb=ALIAS_BOMB)
    assert main(["agreements", "check", str(directory)]) == 1
    out = capsys.readouterr()
    assert "bomb.yaml:2: refused: uses an alias" in out.out + out.err
    assert "Traceback" not in out.out + out.err


def test_merge_keys_are_aliases_too(write: Callable[..., Path], registry: SchemaRegistry) -> None:
    text = VALID.replace("contacts:\n", "defaults: &d {role: DPO}\ncontacts:\n").replace(
        "  - {role: DPO, agency:", "  - {<<: *d, agency:"
    )
    (problem,) = check_dir(write(merged=text), registry=registry)
    assert "alias (*d)" in problem.message


def test_an_anchor_without_alias_is_harmless(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    assert check_dir(write(ok=VALID.replace("title:", "title: &t")), registry=registry) == []


def test_deep_nesting_and_oversized_yaml_are_refused() -> None:
    with pytest.raises(YamlLimitError, match="nested too deeply"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(YamlLimitError, match=f"over the limit of {MAX_YAML_BYTES}"):
        parse_yaml("a: " + "b" * MAX_YAML_BYTES)


def test_an_alias_bomb_in_the_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match=r"config.yaml:2: refused: uses an alias"):
        load_config(path)


def test_an_alias_in_the_ssda903_specification_is_refused(tmp_path: Path) -> None:
    from connectors.council.exceptions import Ssda903Error
    from connectors.council.ssda903.spec import Ssda903Spec

    path = tmp_path / "spec.yml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(Ssda903Error, match="at line 2: refused: uses an alias"):
        Ssda903Spec.load(path)


def test_the_nested_condition_is_refused_by_check_naming_file_line_and_rule(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    text = VALID.replace('when: risk_level == "high"', f"when: '{NESTED_CEL}'")
    (problem,) = check_dir(write(costly=text), registry=registry)
    assert problem.file.name == "costly.yaml" and problem.line == 16
    assert "rule `missing`" in problem.message
    assert "111110" in problem.message and str(MAX_CONDITION_COST) in problem.message


def test_the_router_loader_refuses_it_too(registry: SchemaRegistry) -> None:
    data = yaml.safe_load(VALID.replace('when: risk_level == "high"', f"when: '{NESTED_CEL}'"))
    agreement = Agreement.model_validate(data)
    with pytest.raises(AgreementError, match="rule missing: condition costs up to"):
        AgreementSet.of([(agreement, Path("costly.yaml"))])


def test_cost_bound_counts_literals_and_assumes_event_lists() -> None:
    assert compile_condition('risk_level == "high"').cost == 0
    assert compile_condition(f"{TEN}.exists(x, x == 3)").cost == 10
    assert compile_condition(f"{TEN}.all(a, {TEN}.all(b, a >= b || true))").cost == 110
    per_list = ASSUMED_LIST_SIZE
    assert compile_condition("exploitation_concerns.exists(x, x == 'a')").cost == per_list
    # A macro name inside a string literal is text, not a loop.
    assert compile_condition("'x.all(y, true)' == risk_level").cost == 0


def test_too_long_a_condition_is_refused() -> None:
    with pytest.raises(ConditionTooCostly, match="characters is over the limit"):
        compile_condition(" || ".join(["risk_level == 'high'"] * (MAX_CONDITION_CHARS // 10)))


def test_evaluation_enforces_the_limit_with_the_events_real_lists(
    write: Callable[..., Path], registry: SchemaRegistry
) -> None:
    pairs = "exploitation_concerns.exists(a, exploitation_concerns.exists(b, a == b))"
    agreements = load_agreements(
        write(pairs=VALID.replace('when: risk_level == "high"', f"when: '{pairs}'")), registry
    )
    normal = missing_event(registry, exploitation_concerns=["trafficking"])
    assert agreements.decide(normal, now=NOW).grants  # within the limit: matched
    many = missing_event(registry, exploitation_concerns=["trafficking"] * 200)  # 200*201 steps
    decision = agreements.decide(many, now=NOW)
    assert decision.grants == {}  # fails closed for that recipient
    (error,) = decision.errors
    assert "cost limit" in error.reason and "40200" in error.reason
