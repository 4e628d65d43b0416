"""Convert Kubernetes CRDs into the JSON schemas kubeconform reads (the openapi2jsonschema way).

Usage: python scripts/crd_to_jsonschema.py OUT_DIR CRD.yaml [CRD.yaml ...]
Writes OUT_DIR/<kind>_<version>.json (lower case) for every served version, to be used as
`kubeconform -schema-location 'OUT_DIR/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'`.

Made strict, as the API server's pruning would be silent: `additionalProperties: false` wherever
a schema lists its properties (unless it says `x-kubernetes-preserve-unknown-fields`);
`x-kubernetes-int-or-string` becomes an integer-or-string type. `apiVersion`, `kind` and
`metadata` are required and typed, as the API server requires.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


def convert(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kind = crd["spec"]["names"]["kind"]
    group = crd["spec"]["group"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        properties["metadata"] = {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                         r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "maxLength": 253},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind",
                                     "metadata"})
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schemas[f"{kind.lower()}_{version['name']}.json"] = schema
    return schemas


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for source in argv[1:]:
        for name, schema in convert(yaml.safe_load(Path(source).read_text())).items():
            (out / name).write_text(json.dumps(schema, indent=1))
            print(f"{source} -> {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
