"""AgentProfiles on Kubernetes: a warm pool per profile sized by spec.sandbox.poolSize, pods carrying
the profile's overrides (SandboxSpec.kubernetes_overrides()), claims that only take a pod of the
caller's profile, and a changed profile that applies to the next call. kmock + real runner processes."""

from __future__ import annotations

import asyncio
import json

import pytest
from kube_emulator import NS
from mcp_api.profiles.service import ProfileService
from mcp_api.runners.kubernetes.backend import KubernetesRunnerBackend
from mcp_api.runners.kubernetes.pods import PROFILE_LABEL, STATE_LABEL, PodOptions
from mcp_api.runners.kubernetes.profiles import ProfilePods
from mcp_api.settings import Settings
from runners.kubernetes.test_backend import RunnerPods, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pods(kube, kubelet, tmp_path):
    r = RunnerPods(kube, kubelet, tmp_path, free_port())
    yield r
    await r.close()


def backend_for(kube, pods, tmp_path) -> tuple[KubernetesRunnerBackend, ProfileService]:
    settings = Settings(
        data_dir=tmp_path / "data", kubernetes={"namespace": NS, "port": pods.port, "warm_pool_size": 0}
    )
    service = ProfileService(settings)
    hooks = ProfilePods(service)
    backend = KubernetesRunnerBackend(
        kube, PodOptions.from_settings(settings.kubernetes, settings.sandbox), pool_size=0,
        start_timeout_s=15, ready_timeout_s=15, refill_interval_s=0.05, poll_s=0.02,
        profile_for=hooks.for_tenant, pod_profiles=hooks.all,
    )  # fmt: skip
    return backend, service


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


async def warm_by_profile(emulator, want: dict[str, int]) -> dict[str, list[dict]]:
    for _ in range(500):
        pods = [p for p in emulator.live("pods", NS) if p["metadata"]["labels"].get(STATE_LABEL) == "warm"]
        by: dict[str, list[dict]] = {}
        for pod in pods:
            by.setdefault(pod["metadata"]["labels"][PROFILE_LABEL], []).append(pod)
        ready = {k: [p for p in v if (p.get("status") or {}).get("podIP")] for k, v in by.items()}
        if {k: len(v) for k, v in ready.items()} == want and len(pods) == sum(want.values()):
            return ready
        await asyncio.sleep(0.02)
    raise AssertionError(f"warm pods never became {want}: {[p['metadata']['labels'] for p in pods]}")


async def test_pools_per_profile_overrides_and_claims_of_the_callers_profile(emulator, kube, pods, tmp_path):
    backend, service = backend_for(kube, pods, tmp_path)
    service.registry.apply("default", {"sandbox": {"poolSize": 1}})
    service.registry.apply(
        "gvisor",
        {"tenants": ["acme"], "sandbox": {"poolSize": 1, "image": "runner:gvisor", "runtimeClassName": "gvisor",
                                          "resources": {"limits": {"memory": "512Mi"}},
                                          "limits": {"max_output_bytes": 4096}}},
    )  # fmt: skip
    try:
        backend.start_background()
        warm = await warm_by_profile(emulator, {"default": 1, "gvisor": 1})
        (gv,) = warm["gvisor"]
        (df,) = warm["default"]
        # The profile's pod fields override the replica's settings; the rest stays.
        assert container(gv)["image"] == "runner:gvisor" and gv["spec"]["runtimeClassName"] == "gvisor"
        assert container(gv)["resources"]["limits"]["memory"] == "512Mi"
        assert container(gv)["resources"]["limits"]["cpu"] == "1"  # the settings' cpu_limit
        sandbox = json.loads(container(gv)["args"][container(gv)["args"].index("--sandbox") + 1])
        assert sandbox["max_output_bytes"] == 4096
        assert (
            container(df)["image"] == "secure-agent/agent-runner:latest"
            and "runtimeClassName" not in df["spec"]
        )

        # A claim takes a warm pod of the caller's profile only.
        await backend.client_for("acme", "main")
        assert backend._held[("acme", "main")].pod == gv["metadata"]["name"]
        await backend.client_for("bob", "main")
        assert backend._held[("bob", "main")].pod == df["metadata"]["name"]
        status = await backend.status()
        assert set(status.detail["pools"]) == {"default", "gvisor"}

        # The profile changes: the next call gets a pod of the new spec; old-spec pods go away.
        old = backend._held[("acme", "main")].pod
        service.registry.apply(
            "gvisor", {"tenants": ["acme"], "sandbox": {"poolSize": 1, "image": "runner:gvisor-2"}}
        )
        await backend.client_for("acme", "main")
        new = backend._held[("acme", "main")].pod
        assert new != old
        live = {p["metadata"]["name"]: p for p in emulator.live("pods", NS)}
        assert old not in live and container(live[new])["image"] == "runner:gvisor-2"
        warm = await warm_by_profile(emulator, {"default": 1, "gvisor": 1})
        assert container(warm["gvisor"][0])["image"] == "runner:gvisor-2"
        # bob's profile did not change: his pod stays.
        assert backend._held[("bob", "main")].pod == df["metadata"]["name"]

        # A profile removed: its pool goes (the tenant falls back to the default profile's pods).
        service.registry.remove("gvisor")
        await warm_by_profile(emulator, {"default": 1})
    finally:
        await backend.aclose()


async def test_invalid_profile_change_keeps_the_pods_of_the_last_good_spec(emulator, kube, pods, tmp_path):
    backend, service = backend_for(kube, pods, tmp_path)
    service.registry.apply("default", {"sandbox": {"image": "runner:good"}})
    try:
        await backend.client_for("acme", "main")
        pod = backend._held[("acme", "main")].pod
        result = service.registry.apply("default", {"sandbox": {"image": "runner:bad", "poolSize": -3}})
        assert not result.valid
        await backend.client_for("acme", "main")
        assert backend._held[("acme", "main")].pod == pod
        (live,) = emulator.live("pods", NS)
        assert container(live)["image"] == "runner:good"
    finally:
        await backend.aclose()
