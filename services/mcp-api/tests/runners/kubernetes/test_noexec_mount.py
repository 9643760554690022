"""`kubernetes.workspace_noexec_mount`: the workspace volumeMount gets bindMountOptions
[noexec, nosuid, nodev] (KEP-5855, alpha in Kubernetes 1.37); off, /diagnostics says that noexec
relies on Landlock's EXECUTE right."""

from __future__ import annotations

import httpx
import kubernetes_validate
import pytest
from kube_emulator import NS
from mcp_api.app import create_app
from mcp_api.runners.kubernetes.pods import WORKSPACE_DIR, PodOptions, runner_pod
from mcp_api.runners.kubernetes.pss import check_restricted
from mcp_api.settings import Settings
from mcp_helpers import TEST_KEY

pytestmark = pytest.mark.anyio


def mounts(pod: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}


def test_on_adds_bind_mount_options_to_the_workspace_mount_only():
    settings = Settings(kubernetes={"workspace_noexec_mount": True})
    options = PodOptions.from_settings(settings.kubernetes, settings.sandbox)
    pod = runner_pod("agent-runner-x", "agent-runner-x", options)
    by_path = mounts(pod)
    assert by_path[WORKSPACE_DIR]["bindMountOptions"] == ["noexec", "nosuid", "nodev"]
    assert all("bindMountOptions" not in m for path, m in by_path.items() if path != WORKSPACE_DIR)
    assert check_restricted(pod) == []  # still Pod Security "restricted"
    # Exactly the 1.37 field: valid for a 1.37 API server, unknown to 1.36 (hence off by default).
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, "1.36.0", strict=True)


def test_off_by_default_leaves_the_mount_plain():
    options = PodOptions.from_settings(Settings().kubernetes, Settings().sandbox)
    assert options.workspace_noexec_mount is False
    pod = runner_pod("agent-runner-x", "agent-runner-x", options)
    assert "bindMountOptions" not in mounts(pod)[WORKSPACE_DIR]
    kubernetes_validate.validate(pod, "1.36.0", strict=True)


@pytest.mark.parametrize("noexec_mount", [False, True])
async def test_diagnostics_say_what_makes_the_workspace_noexec(emulator, tmp_path, noexec_mount):
    settings = Settings(
        data_dir=tmp_path / "data", dev_api_key=TEST_KEY, runner={"backend": "kubernetes"},
        kubernetes={"api_url": str(emulator.url), "namespace": NS, "warm_pool_size": 0,
                    "workspace_noexec_mount": noexec_mount},
        profiles={"namespace": NS},
    )  # fmt: skip
    emulator.resources["secure-agent.dev/v1alpha1/agentprofiles"] = {}  # the CRD is installed
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8080") as http:
            response = await http.get("/diagnostics", headers={"authorization": f"Bearer {TEST_KEY}"})
    assert response.status_code == 200, response.text
    body = response.json()
    noexec = body["workspace_noexec"]
    if noexec_mount:
        assert noexec["mount"].startswith("bindMountOptions [noexec, nosuid, nodev]")
        assert body["runner_backend"]["workspace_noexec"] == "bindMountOptions+landlock"
    else:
        assert "noexec relies on Landlock's EXECUTE right" in noexec["landlock"]
        assert "SECURE_AGENT_KUBERNETES__WORKSPACE_NOEXEC_MOUNT is off" in noexec["mount"]
        assert body["runner_backend"]["workspace_noexec"] == "landlock"
