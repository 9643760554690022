"""Write charts/secure-agent/values.schema.json (`--check`: only compare, exit 1 on drift).

The chart's own values are described here by hand (strict: additionalProperties false, enums,
minimums). `settings` is generated from mcp-api's Settings model (services/mcp-api/.../settings.py),
so a misspelt or invented setting fails `helm install`, and settings that are secrets (or that the
chart decides itself) are left out: `secrets` and the chart's values carry them.
Run with the project venv: `.venv/bin/python charts/secure-agent/hack/gen_schema.py`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[1]
SCHEMA_PATH = CHART / "values.schema.json"

# Settings the chart sets from its own values (never from `settings`).
CHART_MANAGED = {
    "host", "port", "data_dir", "public_url", "allowed_hosts", "trusted_proxies",
    "runner.backend",
    "profiles.namespace",
    "kubernetes.namespace", "kubernetes.in_cluster", "kubernetes.image", "kubernetes.image_pull_policy",
    "kubernetes.port", "kubernetes.seccomp", "kubernetes.seccomp_localhost_profile",
    "kubernetes.runtime_class_name", "kubernetes.service_account_name", "kubernetes.warm_pool_size", "kubernetes.profile",
    "kubernetes.cpu_request", "kubernetes.cpu_limit", "kubernetes.memory_request", "kubernetes.memory_limit",
    "kubernetes.ephemeral_storage_limit", "kubernetes.workspace_size_limit", "kubernetes.tmp_size_limit",
    "kubernetes.active_deadline_s",
}  # fmt: skip
# Secrets: only through `secrets` (a Secret), never in the settings ConfigMap.
SECRET_SETTINGS = {
    "dev_api_key", "database_url", "request_state_keys", "redis_url", "logging.tenant_hash_key",
    "tracing.otlp_headers", "agent.providers.*.api_key",
}  # fmt: skip


def _strip(node: Any) -> Any:
    """pydantic's JSON Schema made strict for values: no titles/defaults, objects closed."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("title", "default", "format", "writeOnly"):
                continue
            if key == "properties":  # property names are data, not keywords
                out[key] = {name: _strip(sub) for name, sub in value.items()}
            else:
                out[key] = _strip(value)
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **extra}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _drop(schema: dict[str, Any], path: str) -> None:
    head, _, rest = path.partition(".")
    if head == "*":
        target = schema.get("additionalProperties")
        if isinstance(target, dict):
            _drop(target, rest)
        return
    props = schema.get("properties", {})
    if not rest:
        props.pop(head, None)
        if head in schema.get("required", []):
            schema["required"].remove(head)
        return
    node = props.get(head)
    if isinstance(node, dict):
        _drop(node, rest)


def settings_schema() -> dict[str, Any]:
    from mcp_api.settings import Settings

    raw = Settings.model_json_schema()
    schema = _strip(_inline({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {})))
    for path in sorted(CHART_MANAGED | SECRET_SETTINGS):
        _drop(schema, path)
    # Nested models may be given partly: nothing is required below `settings` except provider kinds.
    schema["description"] = (
        "mcp-api settings (SECURE_AGENT_*), generated from mcp_api.settings.Settings; secrets and "
        "chart-managed settings are not accepted here."
    )
    schema["type"] = "object"
    schema["additionalProperties"] = False
    return schema


def _obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, **extra}


STR = {"type": "string"}
BOOL = {"type": "boolean"}
MAP = {"type": "object"}
LIST = {"type": "array"}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
QUANTITY = {"type": ["string", "number"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"}
RESOURCES = _obj(
    {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    },
    required=["requests", "limits"],
)
IMAGE = _obj(
    {
        "registry": STR,
        "repository": STR,
        "tag": {"type": ["string", "number"]},
        "digest": {"type": "string", "pattern": r"^(sha256:[a-f0-9]{64})?$"},
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    }
)
SECCOMP_RESTRICTED = _obj(
    {"type": {"enum": ["RuntimeDefault", "Localhost"]}, "localhostProfile": STR}, required=["type"]
)
POD_SECURITY = {
    "type": "object",
    "properties": {
        "runAsNonRoot": {"const": True},
        "runAsUser": {"type": "integer", "minimum": 1},
        "runAsGroup": {"type": "integer", "minimum": 0},
        "fsGroup": {"type": "integer", "minimum": 0},
        "seccompProfile": SECCOMP_RESTRICTED,
    },
    "required": ["runAsNonRoot", "runAsUser", "seccompProfile"],
}
CONTAINER_SECURITY = {
    "type": "object",
    "properties": {
        "runAsNonRoot": {"const": True},
        "runAsUser": {"type": "integer", "minimum": 1},
        "runAsGroup": {"type": "integer", "minimum": 0},
        "allowPrivilegeEscalation": {"const": False},
        "privileged": {"const": False},
        "readOnlyRootFilesystem": {"const": True},
        "capabilities": {
            "type": "object",
            "properties": {"drop": {"type": "array", "contains": {"const": "ALL"}}, "add": {"maxItems": 0}},
            "required": ["drop"],
        },
        "seccompProfile": SECCOMP_RESTRICTED,
    },
    "required": ["runAsNonRoot", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"],
}
PROBE = {"type": "object", "minProperties": 1}
SELECTOR_PEER = _obj({"namespaceSelector": MAP, "podSelector": MAP}, minProperties=1)
EGRESS_RULE = _obj(
    {
        "cidr": STR,
        "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
        "protocol": {"enum": ["TCP", "UDP"]},
    },
    required=["cidr"],
)


def chart_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "secure-agent chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": MAP,
            "nameOverride": STR,
            "fullnameOverride": STR,
            "commonLabels": STRMAP,
            "imagePullSecrets": {"type": "array", "items": _obj({"name": STR}, required=["name"])},
            "publicUrl": {"type": "string", "pattern": r"^(https?://[^/\s]+/?)?$"},
            "allowedHosts": {"type": "array", "items": STR},
            "trustedProxies": {"type": "array", "items": STR},
            "settings": settings_schema(),
            "secrets": _obj(
                {
                    "existingSecret": STR,
                    "keys": _obj(
                        {
                            k: {"type": "string", "minLength": 1, "pattern": r"^[-._a-zA-Z0-9]+$"}
                            for k in (
                                "apiKey",
                                "requestStateKeys",
                                "tenantHashKey",
                                "databaseUrl",
                                "redisUrl",
                            )
                        },
                        required=["apiKey", "requestStateKeys", "tenantHashKey", "databaseUrl", "redisUrl"],
                    ),  # fmt: skip
                    "apiKey": {
                        "type": "string",
                        "pattern": r"^(sa_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{20,128})?$",
                        "description": "sa_<12 letters or digits>_<20-128 url-safe characters>, or empty.",
                    },
                    "requestStateKeys": {"type": "array", "items": {"type": "string", "minLength": 32}},
                    "tenantHashKey": STR,
                    "databaseUrl": {"type": "string", "pattern": r"^(postgresql(\+asyncpg)?://.+)?$"},
                    "redisUrl": {"type": "string", "pattern": r"^(rediss?://.+)?$"},
                    "providerApiKeys": STRMAP,
                }
            ),
            "database": _obj({"type": {"enum": ["sqlite", "postgresql"]}}),
            "redis": _obj({"enabled": BOOL}),
            "mcpApi": _obj(
                {
                    "image": IMAGE,
                    "command": {"type": "array", "items": STR},
                    "args": {"type": "array", "items": STR},
                    "replicaCount": {"type": "integer", "minimum": 0},
                    "workers": {"type": "integer", "minimum": 0, "maximum": 64},
                    "revisionHistoryLimit": {"type": "integer", "minimum": 0},
                    "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
                    "extraEnv": {"type": "array", "items": MAP},
                    "resources": RESOURCES,
                    "tmpSizeLimit": QUANTITY,
                    "dataVolume": _obj({"sizeLimit": QUANTITY, "existingClaim": STR}),
                    "podSecurityContext": POD_SECURITY,
                    "securityContext": CONTAINER_SECURITY,
                    "livenessProbe": PROBE,
                    "readinessProbe": PROBE,
                    "startupProbe": {"type": ["object", "null"]},
                    "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
                    "topologySpread": _obj(
                        {
                            "enabled": BOOL,
                            "maxSkew": {"type": "integer", "minimum": 1},
                            "whenUnsatisfiable": {"enum": ["ScheduleAnyway", "DoNotSchedule"]},
                            "topologyKeys": {"type": "array", "items": STR},
                        }
                    ),
                    "podAnnotations": STRMAP,
                    "podLabels": STRMAP,
                    "nodeSelector": STRMAP,
                    "tolerations": {"type": "array", "items": MAP},
                    "affinity": MAP,
                    "priorityClassName": STR,
                    "serviceAccount": _obj({"create": BOOL, "name": STR, "annotations": STRMAP}),
                },
                required=[
                    "resources",
                    "livenessProbe",
                    "readinessProbe",
                    "podSecurityContext",
                    "securityContext",
                ],
            ),
            "service": _obj(
                {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                    "port": PORT,
                    "annotations": STRMAP,
                }
            ),
            "ingress": _obj(
                {
                    "enabled": BOOL,
                    "className": STR,
                    "annotations": STRMAP,
                    "hosts": {
                        "type": "array",
                        "items": _obj(
                            {"host": {"type": "string", "format": "hostname", "minLength": 1}},
                            required=["host"],
                        ),
                    },  # fmt: skip
                    "tls": {
                        "type": "array",
                        "items": _obj(
                            {
                                "secretName": {"type": "string", "minLength": 1},
                                "hosts": {"type": "array", "items": STR, "minItems": 1},
                            },
                            required=["secretName", "hosts"],
                        ),  # fmt: skip
                    },
                    "nginx": _obj(
                        {
                            "enabled": BOOL,
                            "proxyBuffering": {"enum": ["on", "off"]},
                            "proxyRequestBuffering": {"enum": ["on", "off"]},
                            "proxyReadTimeout": {"type": "integer", "minimum": 60},
                            "proxySendTimeout": {"type": "integer", "minimum": 60},
                            "proxyConnectTimeout": {"type": "integer", "minimum": 1},
                            "proxyBodySize": {"type": "string", "pattern": r"^[0-9]+[kKmMgG]?$"},
                            "limitRps": {"type": "integer", "minimum": 0},
                            "limitConnections": {"type": "integer", "minimum": 0},
                            "sslRedirect": BOOL,
                        }
                    ),
                }
            ),
            "gatewayApi": _obj(
                {
                    "enabled": BOOL,
                    "parentRefs": {
                        "type": "array",
                        "items": _obj(
                            {
                                "name": STR,
                                "namespace": STR,
                                "sectionName": STR,
                                "port": PORT,
                                "group": STR,
                                "kind": STR,
                            },
                            required=["name"],
                        ),
                    },  # fmt: skip
                    "hostnames": {"type": "array", "items": STR},
                    "annotations": STRMAP,
                    "timeouts": _obj(
                        {
                            "request": {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
                            "backendRequest": {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
                        }
                    ),  # fmt: skip
                }
            ),
            "autoscaling": _obj(
                {
                    "enabled": BOOL,
                    "minReplicas": {"type": "integer", "minimum": 1},
                    "maxReplicas": {"type": "integer", "minimum": 1},
                    "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
                    "targetMemoryUtilizationPercentage": {"type": "integer", "minimum": 0, "maximum": 100},
                    "behavior": MAP,
                }
            ),
            "podDisruptionBudget": _obj(
                {
                    "enabled": BOOL,
                    "minAvailable": {
                        "type": ["integer", "string", "null"],
                        "minimum": 0,
                        "pattern": "^[0-9]+%$",
                    },
                    "maxUnavailable": {
                        "type": ["integer", "string", "null"],
                        "minimum": 1,
                        "pattern": "^[0-9]+%$",
                    },
                }
            ),
            "runners": _obj(
                {
                    "namespace": {"type": "string", "pattern": r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"},
                    "createNamespace": BOOL,
                    "image": IMAGE,
                    "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
                    "warmPoolSize": {"type": "integer", "minimum": 0, "maximum": 1000},
                    "runtimeClassName": STR,
                    "resources": _obj(
                        {
                            "requests": _obj(
                                {"cpu": QUANTITY, "memory": QUANTITY}, required=["cpu", "memory"]
                            ),
                            "limits": _obj(
                                {"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY},
                                required=["cpu", "memory", "ephemeral-storage"],
                            ),
                        },
                        required=["requests", "limits"],
                    ),
                    "workspaceSizeLimit": QUANTITY,
                    "tmpSizeLimit": QUANTITY,
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 60},
                    "serviceAccount": _obj({"create": BOOL, "name": STR}),
                }
            ),
            "agentProfile": _obj(
                {
                    "create": BOOL,
                    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                    "spec": {
                        "type": "object",
                        "description": "AgentProfile spec (validated by the CRD schema at install).",
                        "properties": {
                            "sandbox": {
                                "type": "object",
                                "properties": {"egress": {"type": "array", "items": EGRESS_RULE}},
                            }
                        },
                    },
                }
            ),
            "seccomp": _obj(
                {
                    "mode": {"enum": ["localhost", "spo", "runtimeDefault"]},
                    "installer": _obj(
                        {
                            "enabled": BOOL,
                            "image": IMAGE,
                            "kubeletDir": {"type": "string", "pattern": "^/"},
                            "resources": RESOURCES,
                            "tolerations": {"type": "array", "items": MAP},
                            "nodeSelector": STRMAP,
                            "priorityClassName": STR,
                        }
                    ),
                    "spo": _obj({"apiVersion": {"enum": ["security-profiles-operator.x-k8s.io/v1beta1"]}}),
                },
                required=["mode"],
            ),
            "rbac": _obj({"create": BOOL}),
            "networkPolicy": _obj(
                {
                    "enabled": BOOL,
                    "mcpApi": _obj(
                        {
                            "ingressFrom": SELECTOR_PEER,
                            "prometheusFrom": SELECTOR_PEER,
                            "dns": SELECTOR_PEER,
                            "apiServer": _obj(
                                {
                                    "cidrs": {"type": "array", "items": STR, "minItems": 1},
                                    "ports": {"type": "array", "items": PORT, "minItems": 1},
                                }
                            ),  # fmt: skip
                            "databases": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "cidr": STR,
                                        "namespaceSelector": MAP,
                                        "podSelector": MAP,
                                        "ports": {"type": "array", "items": PORT, "minItems": 1},
                                    },
                                    required=["ports"],
                                ),  # fmt: skip
                            },
                            "providers": _obj(
                                {
                                    "enabled": BOOL,
                                    "ports": {"type": "array", "items": PORT},
                                    "except": {"type": "array", "items": STR},
                                }
                            ),  # fmt: skip
                            "extraEgress": {"type": "array", "items": MAP},
                        }
                    ),
                }
            ),
            "serviceMonitor": _obj(
                {
                    "enabled": BOOL,
                    "namespace": STR,
                    "labels": STRMAP,
                    "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                    "scrapeTimeout": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                }
            ),  # fmt: skip
            "prometheusRule": _obj({"enabled": BOOL, "namespace": STR, "labels": STRMAP}),
            "grafanaDashboards": _obj(
                {
                    "enabled": BOOL,
                    "namespace": STR,
                    "label": {"type": "string", "minLength": 1},
                    "labelValue": STR,
                    "annotations": STRMAP,
                    "folder": STR,
                }
            ),  # fmt: skip
            "tests": _obj({"enabled": BOOL, "resources": RESOURCES}),
        },
        "required": ["mcpApi", "runners", "seccomp", "secrets"],
    }


def render() -> str:
    return json.dumps(chart_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is stale: run .venv/bin/python {Path(__file__).relative_to(CHART.parents[1])}",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
