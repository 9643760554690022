"""AgentProfile CRs against kmock's Kubernetes emulator over real HTTP (no cluster can run here).

kmock stores objects and streams watch events but runs no admission and does not maintain
metadata.generation: the tests set generation as the API server would (+1 per spec change).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kmock
import pytest
from kubernetes import client as k8s
from mcp_api.profiles import crd
from mcp_api.profiles.model import GROUP, KIND, PLURAL, VERSION
from mcp_api.profiles.registry import ProfileRegistry
from mcp_api.profiles.watch import ProfileWatcher

pytestmark = pytest.mark.anyio
NS = "secure-agent"
RES = kmock.resource(GROUP, VERSION, PLURAL)


class GoneOnceEmulator(kmock.KubernetesEmulator):
    """Answers the first watch with an ERROR event 410 (resourceVersion too old), as etcd compaction does."""

    gone_events = 1

    async def _serve_watch(self, request):
        if self.gone_events > 0:
            self.gone_events -= 1
            yield b""
            yield {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version: 1 (42)",
                },
            }
            return
        async for event in super()._serve_watch(request):
            yield event


@asynccontextmanager
async def cluster(
    cls=kmock.KubernetesEmulator,
) -> AsyncIterator[tuple[kmock.KubernetesEmulator, k8s.ApiClient]]:
    async with cls() as emulator, kmock.Server(emulator) as server:
        emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
            kind=KIND,
            singular="agentprofile",
            namespaced=True,
            subresources={"status"},
            verbs={"list", "watch", "get", "create", "patch", "delete"},
        )
        emulator.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False)
        emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
            kind="CustomResourceDefinition", namespaced=False
        )
        emulator.objects[kmock.resource("", "v1", "namespaces"), None, NS] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS},
        }
        definition = crd.build_crd()
        emulator.objects[
            kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            None,
            definition["metadata"]["name"],
        ] = definition
        api_client = k8s.ApiClient(k8s.Configuration(host=str(server.url).rstrip("/")))
        try:
            yield emulator, api_client
        finally:
            api_client.close()


def profile(name: str, spec: dict, generation: int = 1) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": NS, "generation": generation},
        "spec": spec,
    }


async def create(api_client, body):
    api = k8s.CustomObjectsApi(api_client)
    return await asyncio.to_thread(api.create_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, body)


async def patch(api_client, name, body):
    api = k8s.CustomObjectsApi(api_client)
    return await asyncio.to_thread(api.patch_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, name, body)


async def get(api_client, name):
    api = k8s.CustomObjectsApi(api_client)
    return await asyncio.to_thread(api.get_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, name)


async def eventually(check, within=5.0):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result = await check()
            if result:
                return result
        except (AssertionError, KeyError, TypeError):
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.03)


def conditions(obj) -> dict:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}


@asynccontextmanager
async def watching(api_client, registry):
    watcher = ProfileWatcher(api_client, registry, NS, read_timeout_s=0.5, backoff_s=0.05)
    await watcher.start()
    try:
        assert await watcher.wait_synced(5)
        yield watcher
    finally:
        await watcher.stop()


async def test_create_modify_invalid_and_recover():
    registry = ProfileRegistry()
    async with cluster() as (_, api), watching(api, registry) as watcher:
        await create(api, profile("acme", {"tenants": ["acme"], "sandbox": {"poolSize": 2}}))

        async def ready(generation):
            async def check():
                obj = await get(api, "acme")
                conds = conditions(obj)
                return (
                    obj
                    if (
                        obj["status"]["observedGeneration"] == generation
                        and conds["Ready"]["status"] == "True"
                    )
                    else None
                )

            return await eventually(check)

        obj = await ready(1)
        conds = conditions(obj)
        assert conds["Invalid"]["status"] == "False" and conds["Ready"]["reason"] == "Applied"
        assert (
            conds["Ready"]["lastTransitionTime"].endswith("Z") and conds["Ready"]["observedGeneration"] == 1
        )
        assert registry.effective("acme").spec.sandbox.pool_size == 2

        # A valid change applies live.
        await patch(api, "acme", {"metadata": {"generation": 2}, "spec": {"sandbox": {"poolSize": 5}}})
        obj = await ready(2)
        assert registry.effective("acme").spec.sandbox.pool_size == 5
        assert obj["status"]["appliedGeneration"] == 2

        # An invalid spec: Invalid=True with the reason, the last good spec (generation 2) stays in force.
        await patch(
            api,
            "acme",
            {"metadata": {"generation": 3}, "spec": {"sandbox": {"poolSize": -1, "seccomp": "Unconfined"}}},
        )

        async def invalid():
            obj = await get(api, "acme")
            return obj if obj["status"]["observedGeneration"] == 3 else None

        obj = await eventually(invalid)
        conds = conditions(obj)
        assert conds["Invalid"]["status"] == "True" and conds["Invalid"]["reason"] == "ValidationFailed"
        assert "spec.sandbox.poolSize" in conds["Invalid"]["message"]
        assert "spec.sandbox.seccomp" in conds["Invalid"]["message"]
        assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "LastGoodSpecInForce"
        assert obj["status"]["appliedGeneration"] == 2
        effective = registry.effective("acme")
        assert (effective.spec.sandbox.pool_size, effective.generation) == (5, 2)

        # Fixed again: applied, Invalid back to False.
        await patch(
            api,
            "acme",
            {
                "metadata": {"generation": 4},
                "spec": {"sandbox": {"poolSize": 1, "seccomp": "RuntimeDefault"}},
            },
        )
        obj = await ready(4)
        assert conditions(obj)["Invalid"]["status"] == "False"
        assert registry.effective("acme").spec.sandbox.seccomp == "RuntimeDefault"

        # Our own status writes do not loop: idle re-watches (kmock replays every object) write nothing.
        writes = watcher.status_writes
        await asyncio.sleep(1.2)
        assert watcher.status_writes == writes and watcher.watches >= 2 and watcher.failures == 0

        # Deleting the CR removes the profile.
        capi = k8s.CustomObjectsApi(api)
        await asyncio.to_thread(capi.delete_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, "acme")

        async def removed():
            return registry.effective("acme").name == "<built-in>"

        await eventually(removed)


async def test_never_valid_profile_is_not_ready():
    registry = ProfileRegistry()
    async with cluster() as (_, api):
        await create(
            api, profile("broken", {"tenants": ["acme"], "sandbox": {"egress": [{"cidr": "nonsense"}]}})
        )
        async with watching(api, registry):

            async def check():
                return conditions(await get(api, "broken")).get("Ready")

            ready = await eventually(check)
            assert (ready["status"], ready["reason"]) == ("False", "NoValidSpec")
            invalid = conditions(await get(api, "broken"))["Invalid"]
            assert invalid["status"] == "True" and "spec.sandbox.egress.0.cidr" in invalid["message"]
            assert registry.effective("acme").name == "<built-in>"


async def test_watch_restarts_after_410_gone():
    registry = ProfileRegistry()
    async with cluster(GoneOnceEmulator) as (emulator, api):
        await create(api, profile("default", {"sandbox": {"poolSize": 1}}))
        async with watching(api, registry) as watcher:
            # The first watch got 410: the watcher listed again and watches anew.
            async def relisted():
                return watcher.lists >= 2 and emulator.gone_events == 0

            await eventually(relisted)
            await patch(api, "default", {"metadata": {"generation": 2}, "spec": {"sandbox": {"poolSize": 9}}})

            async def applied():
                return registry.effective("x").spec.sandbox.pool_size == 9

            await eventually(applied)
            assert watcher.watches >= 2


async def test_watch_request_answered_410_relists():
    registry = ProfileRegistry()
    async with cluster() as (emulator, api):
        await create(api, profile("default", {"sandbox": {"poolSize": 1}}))
        emulator["watch", RES][:1] << kmock.KubernetesError(status=410, reason="Expired", message="too old")
        async with watching(api, registry) as watcher:

            async def relisted():
                return watcher.lists >= 2

            await eventually(relisted)
            assert watcher.failures == 0  # 410 is an expected restart, not an error
            await patch(api, "default", {"metadata": {"generation": 2}, "spec": {"sandbox": {"poolSize": 4}}})

            async def applied():
                return registry.effective("x").spec.sandbox.pool_size == 4

            await eventually(applied)


async def test_api_errors_back_off_and_resync():
    registry = ProfileRegistry()
    async with cluster() as (emulator, api):
        await create(api, profile("default", {"sandbox": {"poolSize": 1}}))
        # The first two lists fail with 500; the watcher retries and syncs.
        emulator["list", RES][:2] << kmock.KubernetesError(status=500, reason="InternalError", message="etcd")
        async with watching(api, registry) as watcher:
            assert watcher.lists >= 1 and watcher.failures == 2
            assert registry.effective("x").spec.sandbox.pool_size == 1


async def test_stop_interrupts_an_idle_watch_promptly():
    registry = ProfileRegistry()
    async with cluster() as (_, api):
        watcher = ProfileWatcher(api, registry, NS, read_timeout_s=30)
        await watcher.start()
        assert await watcher.wait_synced(5)

        async def watching_now():
            return watcher._resp is not None

        await eventually(watching_now)
        started = asyncio.get_running_loop().time()
        await watcher.stop()
        assert asyncio.get_running_loop().time() - started < 3
