"""The runner pod watch (podwatch.py) against kmock over real HTTP: it follows pods, recovers from
410 Gone (as an HTTP status and as an ERROR event) and from a cut stream, and the backend acts on a
deletion at once: a command whose pod is deleted fails with a clear tool error, no pod is leaked."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace

import kmock
import pytest
from agent_runner import protocol as p
from kube_emulator import NS, Emulator, Kubelet
from mcp.server.mcpserver.exceptions import ToolError
from mcp_api.auth.principal import Principal, current_principal
from mcp_api.mcp.tools.calls import run_op
from mcp_api.runners.kubernetes.launcher import KubeApi, api_client
from mcp_api.runners.kubernetes.pods import APP, APP_LABEL, PodOptions, runner_pod
from mcp_api.runners.kubernetes.podwatch import PodWatcher
from runners.kubernetes.test_backend import RunnerPods, free_port, make_backend

pytestmark = pytest.mark.anyio


class GoneEventEmulator(Emulator):
    """Can answer a watch with an ERROR event 410 (resourceVersion compacted), as etcd does."""

    gone_events = 0

    async def _serve_watch(self, request):
        if self.gone_events > 0:
            self.gone_events -= 1
            yield b""
            yield {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                               "code": 410, "reason": "Expired",
                                               "message": "too old resource version: 1 (42)"}}  # fmt: skip
            return
        async for event in super()._serve_watch(request):
            yield event


@pytest.fixture
async def emulator():
    emu = GoneEventEmulator()
    emu.resources["v1/pods"] = {}
    emu.resources["v1/secrets"] = {}
    async with kmock.Server(emu):
        yield emu
        leftover = [pod["metadata"]["name"] for pod in emu.live("pods", NS)]
        assert leftover == [], f"pods left behind: {leftover}"


@pytest.fixture
def kube(emulator) -> KubeApi:
    return KubeApi(api_client(str(emulator.url)), NS, retries=3, timeout_s=5.0, backoff_s=0.01)


@pytest.fixture
async def watcher(kube):
    w = PodWatcher(kube.core, NS, {APP_LABEL: APP}, read_timeout_s=5, backoff_s=0.02)
    deleted: list[str] = []
    w.on_delete.append(deleted.append)
    w.start()
    assert await asyncio.to_thread(w.synced.wait, 5)
    w.deleted = deleted  # type: ignore[attr-defined]
    yield w
    await w.stop()


async def until(check, within: float = 5.0):
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def cut_stream(watcher: PodWatcher) -> None:
    """Cut the open watch stream as the network would. Waits for the stream to be open first: a cut
    while the watch request is still being made would find nothing to cut, and the test would only
    see the read timeout (5 s, its own deadline) end it."""
    await until(lambda: watcher._resp is not None)
    watcher.restart_stream()


async def new_pod(kube: KubeApi, name: str) -> None:
    await kube.create_pod(runner_pod(name, name, PodOptions(namespace=NS)))


async def test_watch_sees_creation_readiness_and_deletion(kube, watcher):
    await new_pod(kube, "agent-runner-a")
    await until(lambda: watcher.get("agent-runner-a") is not None)
    await kube.patch_pod("agent-runner-a", {"metadata": {"labels": {"x": "1"}}})
    await until(lambda: (watcher.get("agent-runner-a")["metadata"]["labels"]).get("x") == "1")
    await kube.delete_pod("agent-runner-a")
    await until(lambda: watcher.deleted == ["agent-runner-a"])
    assert watcher.get("agent-runner-a") is None and watcher.lists == 1


async def test_watch_recovers_from_410_as_http_status(emulator, kube, watcher):
    emulator.faults.append(("GET", "watch=true", 410))  # the next watch request gets 410 Gone
    watches = watcher.watches
    await cut_stream(watcher)  # the watch is re-made, meets the 410
    await until(lambda: watcher.expired == 1 and watcher.lists == 2)
    assert watcher.watches > watches and watcher.failures == 0
    # Recovered: later changes still arrive.
    await new_pod(kube, "agent-runner-b")
    await until(lambda: watcher.get("agent-runner-b") is not None)
    await kube.delete_pod("agent-runner-b")
    await until(lambda: "agent-runner-b" in watcher.deleted)


async def test_watch_recovers_from_410_as_error_event_and_resyncs_deletions(emulator, kube, watcher):
    await new_pod(kube, "agent-runner-c")
    await until(lambda: watcher.get("agent-runner-c") is not None)
    emulator.gone_events = 1
    await cut_stream(watcher)
    await until(lambda: watcher.expired == 1 and watcher.lists == 2)
    assert watcher.get("agent-runner-c") is not None  # the relist kept what exists
    # A pod that vanished while no watch was open is reported as deleted by the next relist.
    watcher.pods["agent-runner-ghost"] = {"metadata": {"name": "agent-runner-ghost"}}
    emulator.gone_events = 1
    await cut_stream(watcher)
    await until(lambda: "agent-runner-ghost" in watcher.deleted)
    await kube.delete_pod("agent-runner-c")
    await until(lambda: "agent-runner-c" in watcher.deleted)


async def test_watch_recovers_from_a_cut_stream_and_from_errors(emulator, kube, watcher):
    watches = watcher.watches
    await cut_stream(watcher)
    # A cut stream is watched again from the last resourceVersion, without a relist.
    # (The cut surfaces as a clean end of the stream or as a ProtocolError: either way, no relist.)
    await until(lambda: watcher.watches > watches)
    assert watcher.lists == 1 and watcher.failures == 0
    emulator.faults.append(("GET", "watch=true", 500))
    await cut_stream(watcher)
    await until(lambda: watcher.failures >= 1 and watcher.lists == 2)  # an error: back off, relist
    await new_pod(kube, "agent-runner-d")
    await until(lambda: watcher.get("agent-runner-d") is not None)
    await kube.delete_pod("agent-runner-d")
    await until(lambda: "agent-runner-d" in watcher.deleted)


@pytest.fixture
async def kubelet(kube):
    k = Kubelet(kube)
    k.start()
    yield k
    await k.stop()


@pytest.fixture
async def pods(kube, kubelet, tmp_path):
    r = RunnerPods(kube, kubelet, tmp_path, free_port())
    yield r
    await r.close()


async def test_pod_deleted_under_a_running_command_gives_a_clear_tool_error(emulator, kube, pods):
    backend = make_backend(kube, pods)
    services = SimpleNamespace(runners=backend, limiter=None)
    token = current_principal.set(Principal("acme", "k1", frozenset({"exec"})))
    try:
        await backend.client_for("acme", "main")
        name = backend._held[("acme", "main")].pod
        assert backend.watcher is not None and backend.watcher.synced.is_set()
        request = p.RunCommandRequest(argv=["sleep", "30"])
        running = asyncio.ensure_future(
            run_op(services, "run_command", "exec", "main", "exec/run", request, request_timeout=45)
        )
        await asyncio.sleep(0.5)  # the command is running in the pod's runner
        await kube.delete_pod(name)
        await pods.kill(name)  # what the kubelet does to a deleted pod's containers
        with pytest.raises(ToolError, match="workspace runner is unavailable, retry shortly"):
            await asyncio.wait_for(running, 10)
        # The watch told the backend: the next call gets a new pod now, not after the 30 s re-check.
        await until(lambda: backend._held[("acme", "main")].checked == float("-inf"))
        fresh = await backend.client_for("acme", "main")
        assert backend._held[("acme", "main")].pod != name
        assert (await fresh.health()).status == "ok"
        assert [pod["metadata"]["name"] for pod in emulator.live("pods", NS)] == [
            backend._held[("acme", "main")].pod
        ]
    finally:
        current_principal.reset(token)
        with contextlib.suppress(Exception):
            await backend.aclose()
