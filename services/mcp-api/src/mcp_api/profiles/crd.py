"""Generate the AgentProfile CRD from the pydantic model (the one source).

`python -m mcp_api.profiles.crd` writes `k8s/crds/agentprofile.yaml` (`--check` only compares);
tests fail when the committed file differs from what this module renders.

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3.0 subset, so
`to_structural` inlines `$ref`/`$defs`, turns `anyOf [X, null]` into `nullable: true`, rewrites
numeric `exclusiveMinimum/Maximum`, drops what Kubernetes rejects or would act on (`title`,
`default` — the model fills defaults in, so changing a default needs no CR migration —,
`additionalProperties: false`, `uniqueItems`) and marks free-form values
`x-kubernetes-preserve-unknown-fields: true` (only `params` maps and mixed-type scalars).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from .model import GROUP, KIND, PLURAL, SINGULAR, VERSION, AgentProfileSpec, AgentProfileStatus

ROOT = Path(__file__).resolve().parents[5]
CRD_PATH = ROOT / "k8s" / "crds" / "agentprofile.yaml"
CHART_CRD_PATH = ROOT / "charts" / "secure-agent" / "crds" / "agentprofile.yaml"
HEADER = "# Generated from mcp_api.profiles.model by `python -m mcp_api.profiles.crd`. Do not edit.\n"

_DROP = {"title", "default", "$defs", "uniqueItems", "examples"}
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
    return node


def _scalar_values(branch: dict[str, Any]) -> list[Any] | None:
    if "const" in branch:
        return [branch["const"]]
    if "enum" in branch:
        return list(branch["enum"])
    if branch.get("type") == "boolean":
        return [True, False]
    return None


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    if "anyOf" in node or "oneOf" in node:
        branches = [_resolve(b, defs) for b in node.get("anyOf", node.get("oneOf", []))]
        outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        nullable = any(b.get("type") == "null" for b in branches)
        branches = [b for b in branches if b.get("type") != "null"]
        if len(branches) == 1:
            out = _convert({**branches[0], **outer}, defs)
        else:
            # Mixed types (e.g. bool | "auto"): no single structural type; allow the listed values
            # when every branch is an enumeration, else any value (the model validates it anyway).
            out = {k: v for k, v in _convert({**outer, "type": "object"}, defs).items() if k != "type"}
            values = [_scalar_values(b) for b in branches]
            if all(v is not None for v in values):
                out["enum"] = [x for v in values for x in v]
            out[PRESERVE] = True
        if nullable:
            out["nullable"] = True
        return out

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$ref":
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out["properties"] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out[PRESERVE] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs)
            # `false` is dropped: Kubernetes prunes unknown fields instead.
        else:
            out[key] = value
    if out.get("type") is None and not out.get(PRESERVE) and "enum" not in out:
        out[PRESERVE] = True  # `Any`
    if "enum" in out and "type" not in out and not out.get(PRESERVE):
        kinds = {type(v) for v in out["enum"]}
        out["type"] = (
            {str: "string", bool: "boolean", int: "integer", float: "number"}.get(kinds.pop(), "string")
            if len(kinds) == 1
            else None
        )
        if out["type"] is None:
            del out["type"]
            out[PRESERVE] = True
    return out


def to_structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema as a Kubernetes structural OpenAPI v3 schema."""
    return _convert(schema, schema.get("$defs", {}))


def spec_schema() -> dict[str, Any]:
    return to_structural(AgentProfileSpec.model_json_schema(by_alias=True, mode="validation"))


def status_schema() -> dict[str, Any]:
    return to_structural(AgentProfileStatus.model_json_schema(by_alias=True, mode="validation"))


def open_api_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Operator-style config of secure-agent tenants: sandbox, tools, exec policy, model "
        "roles and quotas. mcp-api applies changes live and reports them in status.conditions.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "secure-agent", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["ap", "agentprof"],
                "categories": ["secure-agent"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Invalid",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Invalid")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Invalid")].reason',
                            "priority": 1,
                        },
                        {"name": "Pool", "type": "integer", "jsonPath": ".spec.sandbox.poolSize"},
                        {
                            "name": "Seccomp",
                            "type": "string",
                            "jsonPath": ".spec.sandbox.seccomp",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


def render_crd() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)


def default_outputs() -> list[Path]:
    """k8s/crds/, plus the Helm chart's crds/ once the chart exists."""
    return [CRD_PATH] + ([CHART_CRD_PATH] if CHART_CRD_PATH.parent.parent.is_dir() else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, action="append", help="default: k8s/crds (+ chart)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file differs")
    args = parser.parse_args(argv)
    text = render_crd()
    stale = 0
    for output in args.output or default_outputs():
        if args.check:
            if not output.exists() or output.read_text() != text:
                print(f"{output} is stale: run python -m mcp_api.profiles.crd", file=sys.stderr)
                stale = 1
            continue
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(f"wrote {output}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
