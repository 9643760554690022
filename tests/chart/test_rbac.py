"""ServiceAccounts and RBAC: the exact, minimal rules. mcp-api gets pods create/get/list/watch/patch/
delete, per-pod token Secrets create/get/delete and the per-profile egress NetworkPolicies
get/list/create/patch/delete in the runner namespace (the code's own manifests.runner_rbac, which
launcher.py and egress.py need), and agentprofiles get/list/watch + agentprofiles/status
patch in its namespace. Nothing cluster-wide; the runner ServiceAccount mounts no token."""

from __future__ import annotations

import pytest
from chart_helpers import CASES, NAMESPACE, of_kind, one, render, render_case
from mcp_api.runners.kubernetes.manifests import runner_rbac


def _rules(role):
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


@pytest.mark.parametrize("case", CASES)
def test_exact_rules(case: str) -> None:
    docs = render_case(case)
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "Role")}
    assert set(roles) == {"sa-secure-agent-runner-manager", "sa-secure-agent-agentprofiles"}
    runner_ns = one(docs, "ConfigMap", "settings")["data"]["SECURE_AGENT_KUBERNETES__NAMESPACE"]
    manager = roles["sa-secure-agent-runner-manager"]
    assert manager["metadata"]["namespace"] == runner_ns
    assert _rules(manager) == {
        ("", "pods", v) for v in ("create", "get", "list", "watch", "patch", "delete")
    } | {("", "secrets", v) for v in ("create", "get", "delete")} | {
        ("networking.k8s.io", "networkpolicies", v) for v in ("get", "list", "create", "patch", "delete")
    }
    profiles = roles["sa-secure-agent-agentprofiles"]
    assert profiles["metadata"]["namespace"] == NAMESPACE
    assert _rules(profiles) == {
        ("secure-agent.dev", "agentprofiles", v) for v in ("get", "list", "watch")
    } | {("secure-agent.dev", "agentprofiles/status", "patch")}
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")


@pytest.mark.parametrize("case", CASES)
def test_runner_role_is_the_codes(case: str) -> None:
    docs = render_case(case)
    code_role = runner_rbac("ns", service_account="x", service_account_namespace="y")[0]
    assert one(docs, "Role", "runner-manager")["rules"] == code_role["rules"]


@pytest.mark.parametrize("case", CASES)
def test_bindings_grant_only_the_mcp_api_service_account(case: str) -> None:
    docs = render_case(case)
    sa = one(docs, "Deployment", "mcp-api")["spec"]["template"]["spec"]["serviceAccountName"]
    for binding in of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        role = one(docs, "Role", binding["roleRef"]["name"])
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]


def test_service_accounts() -> None:
    docs = render_case("production")
    accounts = {a["metadata"]["name"]: a for a in of_kind(docs, "ServiceAccount")}
    assert accounts["sa-secure-agent-mcp-api"]["automountServiceAccountToken"] is True
    runner = accounts["sa-secure-agent-runner"]
    assert runner["automountServiceAccountToken"] is False
    assert runner["metadata"]["namespace"] == "secure-agent-runners"
    # mcp-api puts runner pods on that account (not the namespace's default one).
    env = one(docs, "ConfigMap", "settings")["data"]
    assert env["SECURE_AGENT_KUBERNETES__SERVICE_ACCOUNT_NAME"] == "sa-secure-agent-runner"


def test_rbac_can_be_disabled() -> None:
    docs = render(sets=("rbac.create=false",))
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
