"""`broker acl render --target strimzi`: valid KafkaUser resources carrying the generator's rules.

Validated against Strimzi's own CRD (shared/reference/strimzi/044-Crd-kafkauser.yaml), made
strict: a field the CRD does not define would be pruned silently by the Kubernetes API server,
so here it is an error.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from broker.config import BrokerConfig, load_config
from broker.kafka.acl import (
    GROUP,
    LITERAL,
    PREFIXED,
    TOPIC,
    TRANSACTIONAL_ID,
    Acl,
    registry_acls,
    strimzi_users,
)
from broker.scaffold import DEMO_AGENCIES, write_deployment

CRD = Path(__file__).resolve().parents[4] / "shared/reference/strimzi/044-Crd-kafkauser.yaml"
# A Kubernetes object name (DNS-1123 subdomain); Strimzi names the SCRAM principal after it.
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists the properties."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    if not CRD.is_file():
        pytest.skip(f"the Strimzi CRD is not at {CRD}")
    loaded: dict[str, Any] = yaml.safe_load(CRD.read_text())
    return loaded


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BrokerConfig:
    # The demo registry plus an id with upper case and `_`, which a Kubernetes name cannot hold.
    agencies = {**DEMO_AGENCIES, "council.E09000022_test": "Lambeth (test)"}
    directory = tmp_path_factory.mktemp("strimzi")
    return load_config(write_deployment(directory, bootstrap_servers="x:1", agencies=agencies))


def _validator(crd: dict[str, Any]) -> tuple[str, jsonschema.Draft7Validator]:
    served = [v for v in crd["spec"]["versions"] if v.get("served")]
    assert served, "the CRD serves no version"
    version = next((v for v in served if v.get("storage")), served[0])
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return f"{crd['spec']['group']}/{version['name']}", jsonschema.Draft7Validator(schema)


def test_every_user_validates_against_the_kafkauser_crd(
    crd: dict[str, Any], config: BrokerConfig
) -> None:
    api_version, validator = _validator(crd)
    users = strimzi_users(config, cluster="prod-cluster")
    assert users
    for user in users:
        errors = sorted(validator.iter_errors(user), key=lambda e: list(e.absolute_path))
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
        assert user["apiVersion"] == api_version
        assert user["kind"] == crd["spec"]["names"]["kind"]
        assert K8S_NAME.match(user["metadata"]["name"]), user["metadata"]["name"]
        assert len(user["metadata"]["name"]) <= 253
        assert user["metadata"]["labels"] == {"strimzi.io/cluster": "prod-cluster"}
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"


def test_a_rendering_the_crd_would_refuse_is_caught(crd: dict[str, Any]) -> None:
    """The check above can fail: Kafka's word `prefixed`, an unknown field, a bad operation."""
    _, validator = _validator(crd)
    good = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": "police.met"},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    {
                        "resource": {"type": "topic", "name": "feed.", "patternType": "prefix"},
                        "operations": ["Read"],
                        "host": "*",
                    }
                ],
            },
        },
    }
    assert validator.is_valid(good)
    for path, value in (
        (("patternType",), "prefixed"),
        (("type",), "transactional-id"),
        (("colour",), "blue"),
    ):
        bad = copy.deepcopy(good)
        bad["spec"]["authorization"]["acls"][0]["resource"][path[0]] = value
        assert not validator.is_valid(bad), path
    bad = copy.deepcopy(good)
    bad["spec"]["authorization"]["acls"][0]["operations"] = ["Delete-Records"]
    assert not validator.is_valid(bad)


_RESOURCES = {"topic": TOPIC, "group": GROUP, "transactionalId": TRANSACTIONAL_ID}
_PATTERNS = {"literal": LITERAL, "prefix": PREFIXED}


def test_the_users_carry_exactly_the_registry_rules(config: BrokerConfig) -> None:
    rendered: set[Acl] = set()
    for user in strimzi_users(config):
        principal = user["metadata"]["name"]
        for rule in user["spec"]["authorization"]["acls"]:
            assert rule.get("type", "allow") == "allow"
            assert rule["host"] == "*"
            resource = rule["resource"]
            for operation in rule["operations"]:
                rendered.add(
                    Acl(
                        principal=principal,
                        resource=_RESOURCES[resource["type"]],
                        pattern=_PATTERNS[resource.get("patternType", "literal")],
                        name=resource["name"],
                        operation=operation.lower(),
                    )
                )
    assert rendered == set(registry_acls(config))
    # One KafkaUser per principal, named as the principal clients authenticate as.
    names = [user["metadata"]["name"] for user in strimzi_users(config)]
    assert len(names) == len(set(names))
    assert "council.e09000022-test" in names
