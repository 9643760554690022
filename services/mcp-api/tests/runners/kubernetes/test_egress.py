"""Per-AgentProfile runner egress (runners/kubernetes/egress.py) against kmock over real HTTP: one
NetworkPolicy per profile listing spec.sandbox.egress, with exactly its rules, patched when the
profile changes, deleted when its egress is emptied or the profile removed; two replicas converge
on one object; a NetworkPolicy we did not create is never touched; API errors are retried."""

from __future__ import annotations

import asyncio

import kubernetes_validate
import pytest
from kube_emulator import NS
from mcp_api.profiles.service import ProfileService
from mcp_api.runners.kubernetes.backend import KubernetesRunnerBackend
from mcp_api.runners.kubernetes.egress import EgressPolicies, merge_patch
from mcp_api.runners.kubernetes.launcher import KubeApi, api_client
from mcp_api.runners.kubernetes.manifests import (
    MANAGED_BY_LABEL,
    egress_policy_name,
    egress_rule,
    profile_egress_policy,
    runner_rbac,
)
from mcp_api.runners.kubernetes.pods import APP, APP_LABEL, PROFILE_LABEL, PodOptions, label_value
from mcp_api.settings import Settings

pytestmark = pytest.mark.anyio
WEB = {"tenants": ["acme"], "sandbox": {"egress": [{"cidr": "203.0.113.0/24", "ports": [443]}]}}


@pytest.fixture
async def netpols(emulator):
    """The emulator, knowing NetworkPolicies; every test must leave none behind."""
    emulator.resources["networking.k8s.io/v1/networkpolicies"] = {}
    yield emulator
    leftover = [p["metadata"]["name"] for p in emulator.live("networkpolicies", NS)]
    assert leftover == [], f"NetworkPolicies left behind: {leftover}"


def replica(emulator, tmp_path, name: str = "a") -> tuple[EgressPolicies, ProfileService]:
    """One mcp-api replica's view: its own API client and its own profile registry."""
    kube = KubeApi(api_client(str(emulator.url)), NS, retries=3, timeout_s=5.0, backoff_s=0.01)
    service = ProfileService(Settings(data_dir=tmp_path / f"data-{name}"))
    return EgressPolicies(kube, service, interval_s=60.0), service


def policies(emulator) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in emulator.live("networkpolicies", NS)}


def spec_of(emulator, profile: str) -> dict:
    return policies(emulator)[egress_policy_name(profile)]["spec"]


async def test_policy_follows_the_profile_create_patch_delete(netpols, tmp_path):
    egress, service = replica(netpols, tmp_path)
    service.registry.apply("default", {})  # no egress: no policy
    service.registry.apply("web", WEB)
    result = await egress.sync_once()
    assert result.created == ["agent-runner-egress-web"] and list(policies(netpols)) == result.created
    policy = policies(netpols)["agent-runner-egress-web"]
    assert policy["metadata"]["labels"] == {MANAGED_BY_LABEL: "secure-agent-mcp-api", PROFILE_LABEL: "web"}
    # Exactly the profile's rules for exactly its runner pods: no DNS, no other destination.
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {APP_LABEL: APP, PROFILE_LABEL: "web"}},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        ],
    }
    version = policy["metadata"]["resourceVersion"]
    assert (await egress.sync_once()).patched == []  # nothing changed: no write
    assert policies(netpols)["agent-runner-egress-web"]["metadata"]["resourceVersion"] == version

    # Changed: rules replaced (one dropped, DNS added because the profile asks for it).
    service.registry.apply("web", {"tenants": ["acme"], "sandbox": {"egress": [
        {"cidr": "10.96.0.10/32", "ports": [53], "protocol": "UDP"},
        {"cidr": "10.96.0.10/32", "ports": [53]},
        {"cidr": "2001:db8::/32"},
    ]}})  # fmt: skip
    assert (await egress.sync_once()).patched == ["agent-runner-egress-web"]
    assert spec_of(netpols, "web")["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.96.0.10/32"}}], "ports": [{"protocol": "UDP", "port": 53}]},
        {"to": [{"ipBlock": {"cidr": "10.96.0.10/32"}}], "ports": [{"protocol": "TCP", "port": 53}]},
        {"to": [{"ipBlock": {"cidr": "2001:db8::/32"}}]},
    ]
    # An invalid change keeps the last good spec, and so the policy.
    service.registry.apply("web", {"sandbox": {"egress": [{"cidr": "10.0.0.1/8"}]}})
    assert (await egress.sync_once()).patched == []
    assert len(spec_of(netpols, "web")["egress"]) == 3

    # Egress emptied: the policy goes (default-deny applies again).
    service.registry.apply("web", {"tenants": ["acme"], "sandbox": {"egress": []}})
    assert (await egress.sync_once()).deleted == ["agent-runner-egress-web"]
    assert policies(netpols) == {}
    # Back, then the profile removed: created, then deleted.
    service.registry.apply("web", WEB)
    assert (await egress.sync_once()).created == ["agent-runner-egress-web"]
    service.registry.remove("web")
    assert (await egress.sync_once()).deleted == ["agent-runner-egress-web"]


async def test_hand_edits_of_our_policy_are_repaired(netpols, tmp_path):
    egress, service = replica(netpols, tmp_path)
    service.registry.apply("web", WEB)
    await egress.sync_once()
    name = egress_policy_name("web")
    await asyncio.to_thread(
        egress.net.patch_namespaced_network_policy, name, NS,
        {"spec": {"podSelector": {"matchLabels": {"extra": "x"}}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
                  "policyTypes": ["Egress", "Ingress"]}},
    )  # fmt: skip
    assert (await egress.sync_once()).patched == [name]
    assert (
        spec_of(netpols, "web")
        == profile_egress_policy(NS, "web", [egress_rule("203.0.113.0/24", [443])])["spec"]
    )
    service.registry.remove("web")
    await egress.sync_once()


async def test_two_replicas_converge_on_one_policy_without_errors(netpols, tmp_path):
    a, service_a = replica(netpols, tmp_path, "a")
    b, service_b = replica(netpols, tmp_path, "b")
    specs = [WEB, {"sandbox": {"egress": [{"cidr": "198.51.100.0/24", "ports": [80, 443]}]}}, WEB]
    for spec in specs:
        for service in (service_a, service_b):
            service.registry.apply("web", spec)
            service.registry.apply("db", {"sandbox": {"egress": [{"cidr": "10.1.0.0/16", "ports": [5432]}]}})
        # Many rounds at once: creates meet 409 and read, patches meet 409 on resourceVersion and re-read.
        results = await asyncio.gather(*(r.sync_once() for _ in range(4) for r in (a, b)))
        assert sum(len(r.created) for r in results) <= 2 and not any(r.foreign for r in results)
        assert set(policies(netpols)) == {"agent-runner-egress-web", "agent-runner-egress-db"}
        assert spec_of(netpols, "web")["egress"] == [
            egress_rule(rule["cidr"], rule.get("ports", [])) for rule in spec["sandbox"]["egress"]
        ]
    for service in (service_a, service_b):
        service.registry.remove("web")
        service.registry.remove("db")
    results = await asyncio.gather(a.sync_once(), b.sync_once(), a.sync_once(), b.sync_once())
    assert sorted(n for r in results for n in r.deleted) == [
        "agent-runner-egress-db",
        "agent-runner-egress-web",
    ]
    assert policies(netpols) == {}


async def test_a_stale_view_resolves_through_409_and_a_fresh_read(netpols, tmp_path):
    """The two races of two replicas, made deterministic: B creates what A just created (409 ->
    read -> already right), and B patches from a resourceVersion A has since replaced (409 -> read
    again -> patch from the new one)."""
    from mcp_api.runners.kubernetes.egress import SyncResult, desired_policies

    a, service_a = replica(netpols, tmp_path, "a")
    b, service_b = replica(netpols, tmp_path, "b")
    for service in (service_a, service_b):
        service.registry.apply("web", WEB)
    await a.sync_once()
    result = SyncResult()
    manifest = desired_policies(service_b, NS)["agent-runner-egress-web"]
    await b._ensure(manifest, None, result)  # B never saw A's object
    assert result == SyncResult()  # nothing to do after the 409
    stale = policies(netpols)["agent-runner-egress-web"]
    service_a.registry.apply("web", {"sandbox": {"egress": [{"cidr": "192.0.2.0/24"}]}})
    await a.sync_once()
    service_b.registry.apply("web", {"sandbox": {"egress": [{"cidr": "192.0.2.0/25"}]}})
    manifest = desired_policies(service_b, NS)["agent-runner-egress-web"]
    await b._ensure(manifest, stale, result)  # patch with A's old resourceVersion: 409, re-read, patch
    assert result.patched == ["agent-runner-egress-web"]
    assert spec_of(netpols, "web")["egress"] == [egress_rule("192.0.2.0/25")]
    for service in (service_a, service_b):
        service.registry.remove("web")
    await asyncio.gather(a.sync_once(), b.sync_once())


async def test_a_policy_we_did_not_create_is_never_touched(netpols, tmp_path, caplog):
    egress, service = replica(netpols, tmp_path)
    name = egress_policy_name("web")
    theirs = profile_egress_policy(NS, "web", [egress_rule("0.0.0.0/0")])
    del theirs["metadata"]["labels"][MANAGED_BY_LABEL]  # same name, same selector, not ours
    lookalike = profile_egress_policy(NS, "other", [egress_rule("192.0.2.0/24")])
    lookalike["metadata"].update(name="operator-egress", labels={"team": "net"})
    lookalike["spec"]["podSelector"]["matchLabels"][PROFILE_LABEL] = "web"
    for obj in (theirs, lookalike):
        await asyncio.to_thread(egress.net.create_namespaced_network_policy, NS, obj)
    before = policies(netpols)

    service.registry.apply("web", WEB)
    result = await egress.sync_once()
    assert result.foreign == [name] and not (result.created or result.patched or result.deleted)
    assert "is not managed by mcp-api" in caplog.text
    service.registry.remove("web")
    assert await egress.sync_once() == type(result)()
    assert policies(netpols) == before  # neither was patched (same resourceVersion) nor deleted
    for obj in (name, "operator-egress"):
        await asyncio.to_thread(egress.net.delete_namespaced_network_policy, obj, NS)


async def test_nothing_is_deleted_before_the_profiles_were_read(netpols, tmp_path, monkeypatch):
    first, service = replica(netpols, tmp_path, "first")
    service.registry.apply("web", WEB)
    await first.sync_once()
    # A replica starting up: its registry is still empty, its profile source not read yet.
    starting, starting_service = replica(netpols, tmp_path, "starting")
    monkeypatch.setattr(starting_service, "synced", lambda: False)
    assert await starting.sync_once() == type(await starting.sync_once())()
    assert list(policies(netpols)) == ["agent-runner-egress-web"]
    # Read, and the profile is gone (deleted while no replica ran): its policy goes.
    monkeypatch.setattr(starting_service, "synced", lambda: True)
    assert (await starting.sync_once()).deleted == ["agent-runner-egress-web"]


async def test_api_errors_are_retried(netpols, tmp_path):
    egress, service = replica(netpols, tmp_path)
    service.registry.apply("web", WEB)
    netpols.faults += [("GET", "/networkpolicies", 503), ("POST", "/networkpolicies", 429)]
    assert (await egress.sync_once()).created == ["agent-runner-egress-web"]
    service.registry.apply("web", {"sandbox": {"egress": [{"cidr": "203.0.113.0/24", "ports": [8443]}]}})
    netpols.faults += [("PATCH", "/networkpolicies/", 500), ("PATCH", "/networkpolicies/", 409)]
    assert (await egress.sync_once()).patched == ["agent-runner-egress-web"]
    assert spec_of(netpols, "web")["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8443}]
    service.registry.remove("web")
    netpols.faults.append(("DELETE", "/networkpolicies/", 502))
    assert (await egress.sync_once()).deleted == ["agent-runner-egress-web"]


async def test_backend_follows_profile_changes_in_the_background(netpols, kube, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", kubernetes={"namespace": NS, "warm_pool_size": 0})
    service = ProfileService(settings)
    backend = KubernetesRunnerBackend(
        kube, PodOptions.from_settings(settings.kubernetes, settings.sandbox), pool_size=0,
        watch_pods=False, egress=EgressPolicies(kube, service, interval_s=60.0),
    )  # fmt: skip

    async def until(predicate) -> None:
        for _ in range(250):
            if predicate(policies(netpols)):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"policies never got there: {policies(netpols)}")

    try:
        backend.start_background()
        # The registry's change notification wakes the reconciler (its interval is 60 s).
        service.registry.apply("web", WEB)
        await until(lambda p: "agent-runner-egress-web" in p)
        service.registry.apply("web", {"sandbox": {"egress": [{"cidr": "192.0.2.0/24"}]}})
        await until(lambda p: p["agent-runner-egress-web"]["spec"]["egress"] == [egress_rule("192.0.2.0/24")])
        service.registry.remove("web")
        await until(lambda p: p == {})
    finally:
        await backend.aclose()
    assert service.registry._listeners == []  # stopped following the profiles


def test_from_settings_wires_the_reconciler(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", runner={"backend": "kubernetes"},
        kubernetes={"api_url": "http://127.0.0.1:9", "in_cluster": False},
    )  # fmt: skip
    profiles = ProfileService(settings)
    # Before the AgentProfile watch has listed once, the reconciler changes nothing.
    assert profiles.synced() is False
    backend = KubernetesRunnerBackend.from_settings(settings, profiles=profiles)
    assert (
        isinstance(backend.egress, EgressPolicies)
        and backend.egress.namespace == settings.kubernetes.namespace
    )
    assert KubernetesRunnerBackend.from_settings(settings).egress is None


def test_generated_policy_is_valid_kubernetes_strict():
    policy = profile_egress_policy("runners", "Web_Profile", [
        egress_rule("10.96.0.10/32", [53], "UDP"), egress_rule("203.0.113.0/24", [443, 8443]),
        egress_rule("2001:db8::/32"),
    ])  # fmt: skip
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(policy, version, strict=True)
    # Not a DNS subdomain as a name: hashed; the selector uses the pods' own label value.
    assert policy["metadata"]["name"].startswith("agent-runner-egress-h-")
    assert policy["spec"]["podSelector"]["matchLabels"][PROFILE_LABEL] == label_value("Web_Profile")
    assert egress_policy_name("x" * 80).startswith("agent-runner-egress-h-")
    assert len(egress_policy_name("x" * 80)) <= 63


def test_runner_role_grants_what_the_reconciler_calls():
    (role, _) = runner_rbac("r", service_account="s", service_account_namespace="n")
    (rule,) = [r for r in role["rules"] if r["apiGroups"] == ["networking.k8s.io"]]
    assert rule["resources"] == ["networkpolicies"]
    assert set(rule["verbs"]) == {"get", "list", "create", "patch", "delete"}


def test_merge_patch_removes_what_the_desired_object_lacks():
    assert merge_patch({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"x": 1}, "b": [2]}) == {
        "a": {"y": None},
        "b": [2],
    }
    assert merge_patch({"a": 1}, {"a": 1}) == {}
