"""NetworkPolicies: runner pods are default-deny with ingress only from mcp-api on the runner port and
egress only what the profile allows; mcp-api admits only the ingress controller (plus Prometheus and
the test pod) and reaches only DNS, the API server, runners, databases and providers. The runner
policy is the one mcp_api.runners.kubernetes.manifests builds (the code's source of truth)."""

from __future__ import annotations

import pytest
from chart_helpers import CASES, NAMESPACE, of_kind, one, pod_specs, render, render_case
from mcp_api.runners.kubernetes.manifests import runner_network_policy
from mcp_api.runners.kubernetes.pods import APP, APP_LABEL


def _policies(docs):
    return {d["metadata"]["name"]: d for d in of_kind(docs, "NetworkPolicy")}


@pytest.mark.parametrize("case", CASES)
def test_runner_default_deny(case: str) -> None:
    deny = _policies(render_case(case))["sa-secure-agent-runner-default-deny"]
    assert deny["spec"] == {
        "podSelector": {"matchLabels": {APP_LABEL: APP}},
        "policyTypes": ["Ingress", "Egress"],
    }


@pytest.mark.parametrize("case", CASES)
def test_runner_policy_matches_the_code(case: str) -> None:
    docs = render_case(case)
    policy = _policies(docs)["sa-secure-agent-runner"]
    runner_ns = one(docs, "ConfigMap", "settings")["data"]["SECURE_AGENT_KUBERNETES__NAMESPACE"]
    assert policy["metadata"]["namespace"] == runner_ns
    mcp_labels = one(docs, "Deployment", "mcp-api")["spec"]["selector"]["matchLabels"]
    expected = runner_network_policy(runner_ns, mcp_api_namespace=NAMESPACE, mcp_api_labels=mcp_labels, egress=[])
    assert policy["spec"] == expected["spec"]


def test_runner_egress_is_left_to_the_profiles_own_policies() -> None:
    """The chart's runner policy allows no egress even when the default profile lists some: mcp-api
    keeps one NetworkPolicy per AgentProfile (runners/kubernetes/egress.py), so a restricted profile's
    pods never inherit the default profile's egress."""
    docs = render_case("production")
    assert one(docs, "AgentProfile")["spec"]["sandbox"]["egress"], "production values should list egress"
    assert _policies(docs)["sa-secure-agent-runner"]["spec"]["egress"] == []
    assert _policies(render_case("default"))["sa-secure-agent-runner"]["spec"]["egress"] == []


def test_mcp_api_policy() -> None:
    docs = render_case("production")
    spec = _policies(docs)["sa-secure-agent-mcp-api"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    peers = ingress["from"]
    assert peers[0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    }
    assert peers[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peers[2] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "secure-agent-test", "app.kubernetes.io/instance": "sa"}
        }
    }
    egress = spec["egress"]
    assert egress[0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert egress[1] == {
        "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.20.0.0/28"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
    }
    assert egress[2]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "secure-agent-runners"
    }
    assert egress[2]["ports"] == [{"protocol": "TCP", "port": 8700}]
    assert egress[3] == {
        "to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    assert egress[4]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}}}
    ]
    assert (
        egress[5]["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
        and "10.0.0.0/8" in egress[5]["to"][0]["ipBlock"]["except"]
    )
    assert egress[5]["ports"] == [{"protocol": "TCP", "port": 443}]
    assert len(egress) == 6


@pytest.mark.parametrize("case", CASES)
def test_no_rule_allows_everything(case: str) -> None:
    for policy in of_kind(render_case(case), "NetworkPolicy"):
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                assert rule.get(key), (policy["metadata"]["name"], direction, rule)
                assert rule.get("ports"), (policy["metadata"]["name"], direction, rule)


@pytest.mark.parametrize("case", CASES)
def test_every_chart_pod_is_covered_in_both_directions(case: str) -> None:
    docs = render_case(case)
    policies = of_kind(docs, "NetworkPolicy")
    for name, spec in pod_specs(docs):
        doc = next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == name)
        meta = doc["spec"]["template"]["metadata"] if "template" in doc["spec"] else doc["metadata"]
        labels = meta["labels"]
        covering = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                    and p["metadata"]["namespace"] == doc["metadata"]["namespace"]]  # fmt: skip
        types = {t for p in covering for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, name


def test_can_be_disabled() -> None:
    assert not of_kind(render(sets=("networkPolicy.enabled=false",)), "NetworkPolicy")


def test_gateway_scenario_admits_the_gateway_namespace_only() -> None:
    spec = _policies(render_case("gateway-api"))["sa-secure-agent-mcp-api"]["spec"]
    assert spec["ingress"][0]["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}
    }
