"""The kubernetes RunnerBackend end to end: kmock for the API, the `kubelet` fixture for pod status,
and a real agent-runner process per pod on a loopback address (127.0.0.N stands in for the pod IP),
started with the token read from the pod's Secret, as the pod's `--token-file` would be."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sys
import time

import pytest
from agent_runner import protocol as p
from agent_runner.client import RunnerUnavailable
from kube_emulator import NS
from mcp_api.runners.base import RunnerLimitError, RunnerStartError
from mcp_api.runners.kubernetes.backend import KubernetesRunnerBackend
from mcp_api.runners.kubernetes.launcher import NotFound
from mcp_api.runners.kubernetes.pods import PodOptions

pytestmark = pytest.mark.anyio
_ips = itertools.count(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunnerPods:
    """Starts a real runner for each pod the kubelet sees; stops them at the end."""

    def __init__(self, kube, kubelet, tmp_path, port):
        self.kube, self.tmp, self.port = kube, tmp_path, port
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        kubelet.on_pod = self.start
        self.kubelet = kubelet

    async def start(self, pod):
        name = pod["metadata"]["name"]
        for _ in range(200):  # the Secret is created right after the pod
            try:
                token = await self.kube.read_token(name)
                break
            except NotFound:
                await asyncio.sleep(0.01)
        ip = f"127.0.0.{next(_ips) % 250 + 2}"
        self.kubelet.ip = ip
        ws = self.tmp / name
        ws.mkdir()
        token_file = self.tmp / f"{name}.token"
        token_file.write_text(token)
        token_file.chmod(0o400)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent_runner", "serve", "--workspace", str(ws), "--workspace-id", name,
            "--host", ip, "--port", str(self.port), "--token-file", str(token_file), "--sandbox", "{}",
        )  # fmt: skip
        self.procs[name] = proc

    async def kill(self, name):
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def close(self):
        for name in list(self.procs):
            await self.kill(name)


@pytest.fixture
async def pods(kube, kubelet, tmp_path):
    r = RunnerPods(kube, kubelet, tmp_path, free_port())
    yield r
    await r.close()


def make_backend(kube, pods, **kw) -> KubernetesRunnerBackend:
    options = PodOptions(namespace=NS, port=pods.port)
    kw.setdefault("pool_size", 0)
    return KubernetesRunnerBackend(
        kube, options, start_timeout_s=15, ready_timeout_s=15, refill_interval_s=0.05, poll_s=0.02, **kw
    )


async def test_cold_start_serves_the_runner_protocol(emulator, kube, pods):
    backend = make_backend(kube, pods)
    try:
        client = await backend.client_for("acme", "main")
        await client.call("files/write", p.WriteFileRequest(path="x.txt", content="hello"))
        assert (await backend.client_for("acme", "main")) is client
        assert await backend.list_workspaces("acme") == ["main"]
        assert await backend.list_workspaces("other") == []
        status = await backend.status()
        assert status.healthy and status.runners == 1 and status.detail["workspace_noexec"] == "landlock"
    finally:
        await backend.aclose()


async def test_warm_pod_is_claimed(emulator, kube, pods):
    backend = make_backend(kube, pods, pool_size=1)
    try:
        await backend.status()  # starts the pool
        for _ in range(300):
            if (await backend.status()).detail.get("warm") == 1:
                break
            await asyncio.sleep(0.02)
        (warm,) = await backend.pool.warm_pods()
        client = await backend.client_for("acme", "main")
        assert backend._held[("acme", "main")].pod == warm["metadata"]["name"]
        assert (await client.health()).status == "ok"
    finally:
        await backend.aclose()


async def test_second_replica_adopts_the_workspace_pod(emulator, kube, pods):
    a, b = make_backend(kube, pods), make_backend(kube, pods)
    try:
        ca = await a.client_for("acme", "main")
        await ca.call("files/write", p.WriteFileRequest(path="x.txt", content="from a"))
        cb = await b.client_for("acme", "main")
        assert a._held[("acme", "main")].pod == b._held[("acme", "main")].pod
        read = await cb.call("files/read", p.ReadFileRequest(path="x.txt"))
        assert read.content == "from a"
    finally:
        b._held.clear()  # a owns the pod's deletion in this test
        await b.aclose()
        await a.aclose()


async def test_pod_deleted_under_a_running_command(emulator, kube, pods):
    backend = make_backend(kube, pods)
    try:
        client = await backend.client_for("acme", "main")
        name = backend._held[("acme", "main")].pod
        await kube.delete_pod(name)
        await pods.kill(name)  # what the kubelet does to a deleted pod's containers
        with pytest.raises(RunnerUnavailable):
            await client.health()
        backend._held[("acme", "main")].checked = 0  # past the recheck interval
        fresh = await backend.client_for("acme", "main")
        assert fresh is not client and backend._held[("acme", "main")].pod != name
        assert (await fresh.health()).status == "ok"
    finally:
        await backend.aclose()


async def test_idle_runner_pods_are_reaped(emulator, kube, pods):
    backend = make_backend(kube, pods, idle_timeout_s=0.1)
    try:
        await backend.client_for("acme", "main")
        backend._held[("acme", "main")].last_used = time.monotonic() - 1
        await backend.housekeep_once()
        assert backend._held == {}
        assert emulator.live("pods", NS) == []
    finally:
        await backend.aclose()


async def test_ready_pod_whose_runner_never_answers_is_removed(emulator, kube, kubelet):
    kubelet.ip = "127.0.0.1"
    backend = KubernetesRunnerBackend(
        kube, PodOptions(namespace=NS, port=free_port()), pool_size=0, start_timeout_s=0.3, poll_s=0.02
    )
    try:
        with pytest.raises(RunnerStartError, match="did not answer"):
            await backend.client_for("acme", "main")
        assert emulator.live("pods", NS) == []
    finally:
        await backend.aclose()


async def test_tenant_limit(emulator, kube, pods):
    backend = make_backend(kube, pods, max_per_tenant=1)
    try:
        await backend.client_for("acme", "one")
        with pytest.raises(RunnerLimitError, match="limit"):
            await backend.client_for("acme", "two")
    finally:
        await backend.aclose()


async def test_settings_select_the_kubernetes_backend(emulator, kube, tmp_path):
    from mcp_api.deps import build_services
    from mcp_api.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        runner={"backend": "kubernetes"},
        kubernetes={"api_url": str(emulator.url), "namespace": NS, "warm_pool_size": 0, "image": "img:1"},
    )
    services = build_services(settings)
    try:
        assert isinstance(services.runners, KubernetesRunnerBackend)
        assert services.runners.options.image == "img:1" and services.runners.api.namespace == NS
        assert (await services.runners.status()).healthy
    finally:
        await services.aclose()
