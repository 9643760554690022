from __future__ import annotations

import pytest
from kube_emulator import NS, Emulator, Kubelet, running
from mcp_api.runners.kubernetes.launcher import KubeApi, api_client
from mcp_api.runners.kubernetes.pods import PodOptions


@pytest.fixture
async def emulator():
    async with running() as emu:
        yield emu
        # Every test must leave no runner pod (and no token Secret) behind.
        leftover = [p["metadata"]["name"] for p in emu.live("pods", NS)]
        assert leftover == [], f"pods left behind: {leftover}"


@pytest.fixture
def options() -> PodOptions:
    return PodOptions(
        namespace=NS, owner={"apiVersion": "apps/v1", "kind": "Deployment", "name": "mcp", "uid": "u1"}
    )


@pytest.fixture
def kube(emulator: Emulator) -> KubeApi:
    return KubeApi(api_client(str(emulator.url)), NS, retries=3, timeout_s=5.0, backoff_s=0.01)


@pytest.fixture
async def kubelet(kube: KubeApi):
    k = Kubelet(kube)
    k.start()
    yield k
    await k.stop()
