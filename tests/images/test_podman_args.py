"""mcp_api.runners.kubernetes.podman: the pod spec -> podman arguments mapping (no engine needed)."""

from __future__ import annotations

import copy
import json
import os
from decimal import Decimal

import pytest
from mcp_api.runners.kubernetes import pods
from mcp_api.runners.kubernetes.podman import podman_run, quantity, quantity_bytes, write_secret


@pytest.fixture
def seccomp_root(tmp_path):
    profile = tmp_path / "profiles" / "agent-runner.json"
    profile.parent.mkdir()
    profile.write_text("{}")
    return tmp_path


def pod(**options):
    return pods.runner_pod(
        "runner-a", "runner-a-token", pods.PodOptions(**options), tenant="t", workspace="w"
    )


def render(seccomp_root, spec=None, **kwargs):
    kwargs.setdefault("secret_dirs", {"runner-a-token": "/secrets/a"})
    return podman_run(spec or pod(), seccomp_root=seccomp_root, **kwargs)


def pairs(options: list[str], flag: str) -> list[str]:
    return [options[i + 1] for i, o in enumerate(options) if o == flag]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1Gi", 2**30), ("256Mi", 256 * 2**20), ("64M", 64 * 10**6), ("100m", Decimal("0.1")), ("1", 1),
     ("1.5", Decimal("1.5")), ("2e3", 2000), ("1k", 1000), (512, 512)],
)  # fmt: skip
def test_quantity(text, value):
    assert quantity(text) == value


def test_quantity_rejects_garbage():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity("lots")
    assert quantity_bytes("1.5Ki") == 1536


def test_security_context(seccomp_root):
    run = render(seccomp_root)
    o = run.options
    assert pairs(o, "--user") == ["10001:10001"]
    assert "--read-only" in o and "--read-only-tmpfs=false" in o
    assert pairs(o, "--cap-drop") == ["ALL"] and "--cap-add" not in o
    assert pairs(o, "--security-opt") == [
        "no-new-privileges", f"seccomp={seccomp_root / 'profiles' / 'agent-runner.json'}",
    ]  # fmt: skip
    assert "--privileged" not in o
    assert "--group-add" not in o  # fsGroup == runAsGroup


def test_resources_volumes_process(seccomp_root):
    run = render(
        seccomp_root, volume_sources={"workspace": "/srv/ws"}, publish={8700: 18700}, pids_limit=99, name="x"
    )
    o = run.options
    assert pairs(o, "--memory") == [str(2**30)] and pairs(o, "--memory-swap") == [str(2**30)]
    assert pairs(o, "--memory-reservation") == [str(256 * 2**20)]
    assert pairs(o, "--cpus") == ["1"] and pairs(o, "--cpu-shares") == ["102"]
    assert pairs(o, "--pids-limit") == ["99"]
    assert pairs(o, "--tmpfs") == ["/tmp:rw,noexec,nosuid,nodev,size=67108864,mode=1777"]
    assert pairs(o, "--volume") == [
        "/srv/ws:/workspace:rw,noexec,nosuid,nodev",
        "/secrets/a:/var/run/secrets/agent-runner:ro,noexec,nosuid,nodev",
    ]
    assert pairs(o, "--publish") == ["127.0.0.1:18700:8700/tcp"]
    assert pairs(o, "--entrypoint") == [json.dumps(["python3", "-m", "agent_runner", "serve"])]
    assert pairs(o, "--env") == ["TMPDIR=/tmp", "HOME=/tmp"]
    assert pairs(o, "--stop-timeout") == ["10"] and pairs(o, "--timeout") == ["86400"]
    assert pairs(o, "--restart") == ["no"] and pairs(o, "--name") == ["x"]
    assert pairs(o, "--pull") == ["missing"]
    assert run.image == "secure-agent/agent-runner:latest"
    assert run.args[:2] == ["--workspace", "/workspace"] and "--token-file" in run.args
    assert run.argv[:2] == ["podman", "run"] and run.argv[-len(run.args) - 1] == run.image
    assert sorted(run.unmapped) == [
        "containers.runner.readinessProbe", "resources.limits.ephemeral-storage",
        "volumes.workspace.emptyDir.sizeLimit",
    ]  # fmt: skip


def test_anonymous_volume_pvc_and_bind_mount_options(seccomp_root):
    o = render(seccomp_root, noexec_volumes=False).options
    assert "--mount" in o and pairs(o, "--mount") == ["type=volume,destination=/workspace,rw"]
    assert pairs(o, "--tmpfs") == ["/tmp:rw,size=67108864,mode=1777"]
    spec = pod(workspace_pvc="claim-1", workspace_noexec_mount=True)
    with pytest.raises(ValueError, match="PVC"):
        render(seccomp_root, spec)
    o = render(seccomp_root, spec, volume_sources={"workspace": "vol1"}, noexec_volumes=False).options
    assert "vol1:/workspace:rw,noexec,nosuid,nodev" in pairs(o, "--volume")


def test_runtime_default_and_missing_profile(seccomp_root, tmp_path):
    o = render(seccomp_root, pod(seccomp="RuntimeDefault")).options
    assert pairs(o, "--security-opt") == ["no-new-privileges"]
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "nowhere")


def test_refuses_what_it_cannot_prove(seccomp_root):
    spec = pod()
    root = copy.deepcopy(spec)
    root["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    with pytest.raises(ValueError, match="runAsNonRoot"):
        render(seccomp_root, root)
    unknown = copy.deepcopy(spec)
    unknown["spec"]["containers"][0]["securityContext"]["procMount"] = "Unmasked"
    with pytest.raises(ValueError, match="procMount"):
        render(seccomp_root, unknown)
    host_path = copy.deepcopy(spec)
    host_path["spec"]["volumes"][0] = {"name": "workspace", "hostPath": {"path": "/"}}
    with pytest.raises(ValueError, match="not supported"):
        render(seccomp_root, host_path)
    env_from = copy.deepcopy(spec)
    env_from["spec"]["containers"][0]["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {}}})
    with pytest.raises(ValueError, match="literal"):
        render(seccomp_root, env_from)
    with pytest.raises(ValueError, match="secret"):
        podman_run(spec, seccomp_root=seccomp_root)


def test_privileged_fields_are_mapped_not_dropped(seccomp_root):
    spec = pod()
    spec["spec"].update(hostNetwork=True, hostPID=True, hostIPC=True)
    sc = spec["spec"]["containers"][0]["securityContext"]
    sc.update(
        privileged=True, allowPrivilegeEscalation=True, capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}
    )
    spec["spec"]["securityContext"]["supplementalGroups"] = [20, 10001]
    o = render(seccomp_root, spec).options
    assert "--privileged" in o and pairs(o, "--cap-add") == ["NET_ADMIN"]
    assert "no-new-privileges" not in pairs(o, "--security-opt")
    assert (
        pairs(o, "--network") == ["host"] and pairs(o, "--pid") == ["host"] and pairs(o, "--ipc") == ["host"]
    )
    assert pairs(o, "--group-add") == ["20"]


def test_write_secret(tmp_path):
    options = pods.PodOptions()
    spec = pods.runner_pod("runner-a", "runner-a-token", options)
    secret = pods.token_secret("runner-a-token", "s" * 40, options)
    secret["data"] = {"extra": "aGk="}
    target = write_secret(secret, tmp_path / "secret", pod=spec)
    token = target / pods.TOKEN_KEY
    assert token.read_text() == "s" * 40 and (target / "extra").read_bytes() == b"hi"
    assert token.stat().st_mode & 0o777 == 0o440
    if os.geteuid() == 0:
        assert token.stat().st_gid == pods.RUNNER_UID and target.stat().st_gid == pods.RUNNER_UID
    assert target.stat().st_mode & 0o777 == 0o750


def test_unknown_pod_fields_are_refused_placement_is_listed(seccomp_root):
    spec = pods.runner_pod("runner-a", "runner-a-token", pods.PodOptions(runtime_class_name="gvisor"))
    spec["spec"]["nodeSelector"] = {"pool": "runners"}
    run = render(seccomp_root, spec)
    assert {"spec.runtimeClassName", "spec.nodeSelector"} <= set(run.unmapped)
    for mutate, match in [
        (lambda s: s["spec"].update(shareProcessNamespace=True), "shareProcessNamespace"),
        (lambda s: s["spec"].update(automountServiceAccountToken=True), "automountServiceAccountToken"),
        (lambda s: s["spec"]["containers"][0].update(lifecycle={}), "lifecycle"),
        (lambda s: s["spec"]["containers"][0]["volumeMounts"][0].update(subPath="x"), "subPath"),
        (lambda s: s["spec"]["volumes"][2]["secret"].update(items=[]), "secretName and defaultMode"),
    ]:
        bad = copy.deepcopy(spec)
        mutate(bad)
        with pytest.raises(ValueError, match=match):
            render(seccomp_root, bad)
