"""Launcher, warm pool, reconciler and backend against kmock's Kubernetes emulator over real HTTP.
kmock schedules nothing: the `kubelet` fixture marks pods Running/Ready by patching their status
through the API. Each test ends with no runner pod left (checked by the `emulator` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from kube_emulator import NS, delete_all
from mcp_api.observability import metrics
from mcp_api.runners.base import RunnerStartError
from mcp_api.runners.kubernetes.launcher import KubeApiError, PodLauncher
from mcp_api.runners.kubernetes.pods import HEARTBEAT_ANNOTATION, STATE_LABEL, WORKSPACE_LABEL, short_hash
from mcp_api.runners.kubernetes.pool import WarmPool
from mcp_api.runners.kubernetes.reconcile import Reconciler

pytestmark = pytest.mark.anyio


def launcher(kube, options, **kw):
    return PodLauncher(kube, options, ready_timeout_s=kw.pop("ready_timeout_s", 5.0), poll_s=0.02)


def pool(kube, options, size=2, replica="r1"):
    return WarmPool(
        kube, launcher(kube, options), options, size=size, launcher_id=replica, refill_interval_s=0.05
    )


def _sample(histogram) -> float:
    return histogram.labels("kubernetes")._sum.get()


# --- launcher -------------------------------------------------------------------------------------
async def test_launch_creates_pod_and_owned_token_secret(emulator, kube, options, kubelet):
    launched = await launcher(kube, options).launch(tenant="acme", workspace="main")
    assert launched.base_url == f"http://127.0.0.1:{options.port}"
    pod = await kube.get_pod(launched.name)
    assert pod["metadata"]["labels"][WORKSPACE_LABEL] == short_hash("acme/main")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    (secret,) = emulator.live("secrets", NS)
    assert secret["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1", "kind": "Pod", "name": launched.name, "uid": pod["metadata"]["uid"],
    }  # fmt: skip
    assert await kube.read_token(launched.name) == launched.token
    await kube.delete_pod(launched.name)
    await kube.delete_secret(launched.name)


async def test_pod_never_ready_is_deleted_with_a_clear_error(emulator, kube, options, kubelet):
    kubelet.ready = False
    with pytest.raises(RunnerStartError, match="not ready after"):
        await launcher(kube, options, ready_timeout_s=0.3).launch(tenant="a", workspace="w")
    assert emulator.live("secrets", NS) == []


async def test_image_pull_failure_fails_fast_and_cleans_up(emulator, kube, options, kubelet):
    kubelet.status_override = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "runner",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
            }  # fmt: skip
        ],
    }
    with pytest.raises(RunnerStartError, match="ImagePullBackOff"):
        await launcher(kube, options, ready_timeout_s=30).launch()


async def test_pod_deleted_while_starting(emulator, kube, options, kubelet):
    kubelet.ready = False
    kubelet.on_pod = lambda pod: kube.delete_pod(pod["metadata"]["name"])
    with pytest.raises(RunnerStartError, match="deleted before it became ready"):
        await launcher(kube, options).launch()


async def test_429_and_5xx_are_retried(emulator, kube, options, kubelet):
    emulator.faults += [("POST", "/pods", 429), ("POST", "/pods", 503), ("GET", "/pods/", 500)]
    launched = await launcher(kube, options).launch()
    assert emulator.faults == []
    await kube.delete_pod(launched.name)


async def test_persistent_api_error_is_clear_and_leaks_nothing(emulator, kube, options, kubelet):
    emulator.faults += [("POST", "/secrets", 403)]
    with pytest.raises(RunnerStartError, match="403"):
        await launcher(kube, options).launch()
    emulator.faults += [("GET", "/pods", 503)] * 10
    with pytest.raises(KubeApiError, match="503"):
        await kube.list_pods({})
    emulator.faults.clear()


async def test_api_unreachable_is_a_clear_error(kube, options):
    from mcp_api.runners.kubernetes.launcher import KubeApi, api_client

    dead = KubeApi(api_client("http://127.0.0.1:9"), NS, retries=1, timeout_s=1, backoff_s=0.01)
    with pytest.raises(KubeApiError, match="unreachable"):
        await dead.list_pods({})


# --- warm pool ------------------------------------------------------------------------------------
async def test_refill_claim_and_refill_again(emulator, kube, options, kubelet):
    p = pool(kube, options, size=2)
    assert await p.refill() == 2
    assert await p.refill() == 0
    warm = await p.warm_pods()
    assert len(warm) == 2 and all(w["metadata"]["labels"][STATE_LABEL] == "warm" for w in warm)
    before = _sample(metrics.RUNNER_CLAIM_SECONDS)
    claimed = await p.claim("acme", "main")
    assert claimed is not None and claimed.token
    assert _sample(metrics.RUNNER_CLAIM_SECONDS) > before
    pod = await kube.get_pod(claimed.name)
    assert pod["metadata"]["labels"][STATE_LABEL] == "claimed"
    assert pod["metadata"]["labels"][WORKSPACE_LABEL] == short_hash("acme/main")
    await asyncio.sleep(0.2)  # the claim kicked a background refill
    assert len(await p.warm_pods()) == 2
    await p.drain()
    await kube.delete_pod(claimed.name)


async def test_claim_race_exactly_one_wins(emulator, kube, options, kubelet):
    """Two replicas (two pools, separate token caches) race for the single warm pod."""
    a, b = pool(kube, options, size=1, replica="a"), pool(kube, options, size=0, replica="b")
    await a.refill()
    a.kick = b.kick = lambda: None  # no refill: one pod, two claimers
    results = await asyncio.gather(a.claim("t1", "w"), b.claim("t2", "w"))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].token == await kube.read_token(winners[0].name)  # b reads it from the Secret
    pod = await kube.get_pod(winners[0].name)
    assert pod["metadata"]["labels"][STATE_LABEL] == "claimed"
    await delete_all(kube)


async def test_claim_race_many_claimers_many_pods(emulator, kube, options, kubelet):
    pools = [pool(kube, options, size=3, replica=f"r{i}") for i in range(4)]
    await pools[0].refill()
    for p in pools:
        p.kick = lambda: None
    results = await asyncio.gather(*(p.claim(f"t{i}", "w") for i, p in enumerate(pools)))
    names = [r.name for r in results if r is not None]
    assert len(names) == 3 and len(set(names)) == 3
    await delete_all(kube)


async def test_stale_resource_version_conflicts(emulator, kube, options, kubelet):
    p = pool(kube, options, size=1)
    await p.refill()
    (pod,) = await p.warm_pods()
    stale = pod["metadata"]["resourceVersion"]
    await kube.patch_pod(pod["metadata"]["name"], {"metadata": {"labels": {"x": "1"}}})
    from mcp_api.runners.kubernetes.launcher import Conflict

    with pytest.raises(Conflict):
        await kube.patch_pod(
            pod["metadata"]["name"], {"metadata": {"resourceVersion": stale, "labels": {"y": "1"}}}
        )
    await p.drain()


async def test_empty_pool_claims_nothing(emulator, kube, options, kubelet):
    assert await pool(kube, options, size=0).claim("t", "w") is None


async def test_refill_replaces_failed_and_trims_surplus(emulator, kube, options, kubelet):
    a, b = pool(kube, options, size=2, replica="a"), pool(kube, options, size=2, replica="b")
    await asyncio.gather(a.refill(), b.refill())  # both replicas saw an empty pool
    assert len(await a.warm_pods()) == 4
    await a.refill()
    await b.refill()
    assert len(await a.warm_pods()) == 2
    victim = (await a.warm_pods())[0]["metadata"]["name"]
    await asyncio.to_thread(
        kube.core.patch_namespaced_pod_status,
        victim,
        NS,
        {"status": {"phase": "Failed", "reason": "Evicted"}},
    )
    await a.refill()
    names = {w["metadata"]["name"] for w in await a.warm_pods()}
    assert victim not in names and len(names) == 2
    await delete_all(kube)


async def test_refill_counts_start_failures(emulator, kube, options, kubelet):
    kubelet.ready = False
    p = WarmPool(kube, launcher(kube, options, ready_timeout_s=0.2), options, size=2, launcher_id="x")
    before = metrics.RUNNER_START_FAILURES.labels("kubernetes")._value.get()
    assert await p.refill() == 0
    assert metrics.RUNNER_START_FAILURES.labels("kubernetes")._value.get() == before + 2


# --- reconciler -----------------------------------------------------------------------------------
async def test_reconciler_removes_orphans_only(emulator, kube, options, kubelet):
    p = pool(kube, options, size=0)
    la = launcher(kube, options)
    held = await la.launch(tenant="a", workspace="held")
    orphan = await la.launch(tenant="a", workspace="orphan")
    dead = await la.launch(tenant="a", workspace="dead")
    warm = await la.launch()
    await asyncio.to_thread(
        kube.core.patch_namespaced_pod_status, dead.name, NS, {"status": {"phase": "Failed"}}
    )
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    await kube.patch_pod(orphan.name, {"metadata": {"annotations": {HEARTBEAT_ANNOTATION: old}}})
    await kube.patch_pod(held.name, {"metadata": {"annotations": {HEARTBEAT_ANNOTATION: old}}})
    r = Reconciler(kube, held=lambda: {held.name}, claim_grace_s=60, ready_timeout_s=60)
    assert sorted(await r.run_once()) == sorted([orphan.name, dead.name])
    assert await r.run_once() == []
    del p, warm
    await delete_all(kube)


async def test_reconciler_removes_pods_stuck_not_ready(emulator, kube, options, kubelet):
    kubelet.ready = False
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent-runner-stuck", "labels": {"app.kubernetes.io/name": "agent-runner"},
                     "creationTimestamp": (datetime.now(UTC) - timedelta(minutes=10)).isoformat()},
        "spec": {"containers": [{"name": "runner", "image": "x"}]},
    }  # fmt: skip
    await kube.create_pod(pod)
    r = Reconciler(kube, held=set, ready_timeout_s=60)
    # kmock keeps our creationTimestamp; a real server sets it, the logic is the same.
    assert await r.run_once() == ["agent-runner-stuck"]


async def test_cancelled_launch_leaks_no_pod(emulator, kube, options, kubelet):
    kubelet.ready = False
    task = asyncio.ensure_future(launcher(kube, options, ready_timeout_s=30).launch())
    for _ in range(200):
        if emulator.live("pods", NS):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.live("pods", NS) == [] and emulator.live("secrets", NS) == []


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02, 0.05])
async def test_launch_cancelled_at_any_point_leaks_nothing(emulator, kube, options, kubelet, delay):
    kubelet.ready = False
    task = asyncio.ensure_future(launcher(kube, options, ready_timeout_s=30).launch())
    await asyncio.sleep(delay)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.live("pods", NS) == [] and emulator.live("secrets", NS) == []
