"""Runner NetworkPolicy and least-privilege RBAC, built as data (the Helm chart renders the same),
and the per-AgentProfile egress NetworkPolicy that egress.py keeps in the runner namespace.

`python -m mcp_api.runners.kubernetes.manifests DIR` writes the example manifests to DIR (k8s/).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .pods import APP, APP_LABEL, PROFILE_LABEL, label_value, short_hash

# The label that marks the NetworkPolicies egress.py owns: it lists, patches and deletes only these.
MANAGED_BY_LABEL = "secure-agent.dev/managed-by"
MANAGED_BY = "secure-agent-mcp-api"
EGRESS_POLICY_PREFIX = "agent-runner-egress-"
PROFILE_ANNOTATION = "secure-agent.dev/profile"  # the profile's full name, for humans
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def runner_network_policy(
    namespace: str,
    *,
    mcp_api_namespace: str,
    mcp_api_labels: dict[str, str],
    port: int = 8700,
    egress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Ingress only from mcp-api pods on the runner port; egress denied unless rules are given
    (each `{"cidr": "10.0.0.0/8", "except": [...], "ports": [{"port": 443, "protocol": "TCP"}]}`)."""
    egress_rules = []
    for rule in egress or []:
        block: dict[str, Any] = {"cidr": rule["cidr"]}
        if rule.get("except"):
            block["except"] = list(rule["except"])
        entry: dict[str, Any] = {"to": [{"ipBlock": block}]}
        if rule.get("ports"):
            entry["ports"] = [
                {"protocol": p.get("protocol", "TCP"), "port": p["port"]} for p in rule["ports"]
            ]
        egress_rules.append(entry)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "agent-runner", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: APP}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": mcp_api_namespace}
                            },
                            "podSelector": {"matchLabels": dict(mcp_api_labels)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
            "egress": egress_rules,
        },
    }


def egress_policy_name(profile: str) -> str:
    """The NetworkPolicy name of a profile's egress: an object name must be a lowercase DNS subdomain,
    a profile's label value may not be one (uppercase, `_`): then a hash stands in."""
    label = label_value(profile)
    return EGRESS_POLICY_PREFIX + (label if _DNS_SUBDOMAIN.fullmatch(label) else f"h-{short_hash(label)}")


def egress_rule(cidr: str, ports: Iterable[int] = (), protocol: str = "TCP") -> dict[str, Any]:
    """One NetworkPolicy egress rule: to the network, on the ports (none: every port)."""
    rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": cidr}}]}
    if ports:
        rule["ports"] = [{"protocol": protocol, "port": port} for port in ports]
    return rule


def profile_egress_policy(namespace: str, profile: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The egress a profile's runner pods get on top of the default-deny policy: its rules and
    nothing else (no implicit DNS). It selects the pods by the profile label pods.py sets, and is
    labelled as ours (MANAGED_BY_LABEL) so egress.py never touches a policy it did not create."""
    label = label_value(profile)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": egress_policy_name(profile),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, PROFILE_LABEL: label},
            "annotations": {PROFILE_ANNOTATION: profile},
        },
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: APP, PROFILE_LABEL: label}},
            "policyTypes": ["Egress"],
            "egress": [dict(rule) for rule in rules],
        },
    }


def runner_rbac(
    runner_namespace: str, *, service_account: str, service_account_namespace: str
) -> list[dict[str, Any]]:
    """A Role in the runner namespace: pods create/get/list/watch/patch/delete, the per-pod token
    Secrets create/get/delete, and the per-profile egress NetworkPolicies (egress.py)
    get/list/create/patch/delete (it polls and follows profile changes: no watch). Nothing cluster-wide, nothing else."""
    name = "secure-agent-runner-manager"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": runner_namespace},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods"],
                "verbs": ["create", "get", "list", "watch", "patch", "delete"],
            },
            # Per-pod token Secrets: a replica claiming another replica's warm pod reads its token.
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "delete"]},
            # One egress NetworkPolicy per AgentProfile that lists spec.sandbox.egress (egress.py);
            # only those labelled MANAGED_BY_LABEL are ever patched or deleted.
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["networkpolicies"],
                "verbs": ["get", "list", "create", "patch", "delete"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": runner_namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": service_account, "namespace": service_account_namespace}
        ],
    }
    return [role, binding]


def example_manifests() -> dict[str, list[dict[str, Any]]]:
    ns = "secure-agent-runners"
    return {
        "runner-networkpolicy.yaml": [
            runner_network_policy(
                ns,
                mcp_api_namespace="secure-agent",
                mcp_api_labels={APP_LABEL: "mcp-api"},
            )
        ],
        "runner-rbac.yaml": runner_rbac(
            ns, service_account="secure-agent-mcp-api", service_account_namespace="secure-agent"
        ),
    }


def render(docs: list[dict[str, Any]]) -> str:
    header = "# Generated by `python -m mcp_api.runners.kubernetes.manifests k8s`; do not edit.\n"
    return header + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, docs in example_manifests().items():
        (directory / name).write_text(render(docs))


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "k8s"))
