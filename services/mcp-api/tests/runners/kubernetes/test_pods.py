"""The pod-spec builder, and the Pod Security Standards "restricted" checker applied to it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from mcp_api.runners.kubernetes import manifests
from mcp_api.runners.kubernetes.pods import (
    APP_LABEL,
    TENANT_LABEL,
    TOKEN_DIR,
    WORKSPACE_LABEL,
    PodOptions,
    runner_pod,
    short_hash,
    token_secret,
)
from mcp_api.runners.kubernetes.pss import RULES, check_restricted
from mcp_api.settings import KubernetesSettings, SandboxSettings, Settings

ROOT = Path(__file__).resolve().parents[5]
OWNER = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "secure-agent-mcp-api", "uid": "1234"}

VARIANTS = {
    "warm": (PodOptions(), {}),
    "claimed": (PodOptions(owner=OWNER), {"tenant": "acme", "workspace": "main"}),
    "runtime-default": (PodOptions(seccomp="RuntimeDefault"), {}),
    "gvisor-pvc": (
        PodOptions(runtime_class_name="gvisor", workspace_pvc="ws-acme"),
        {"tenant": "t", "workspace": "w"},
    ),
    "from-settings": (PodOptions.from_settings(KubernetesSettings(), SandboxSettings()), {}),
}


def build(variant: str) -> dict:
    options, who = VARIANTS[variant]
    return runner_pod("agent-runner-x", "agent-runner-x", options, **who)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_generated_pod_passes_restricted(variant):
    assert check_restricted(build(variant)) == []


def test_pod_spec_hardening():
    pod = build("claimed")
    spec = pod["spec"]
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001 and sc["runAsGroup"] == 10001
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "Localhost", "localhostProfile": "profiles/agent-runner.json"}
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["activeDeadlineSeconds"] == 86400 and spec["restartPolicy"] == "Never"
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert c["resources"]["limits"]["memory"] == "1Gi"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["workspace"]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert volumes["token"]["secret"] == {"secretName": "agent-runner-x", "defaultMode": 0o440}
    assert "runtimeClassName" not in spec and "serviceAccountName" not in spec
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["token"] == {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}
    assert mounts["tmp"]["mountPath"] == "/tmp"


def test_labels_are_hashed_and_owner_is_the_release():
    meta = build("claimed")["metadata"]
    assert meta["labels"][APP_LABEL] == "agent-runner"
    assert meta["labels"][TENANT_LABEL] == short_hash("acme") != "acme"
    assert meta["labels"][WORKSPACE_LABEL] == short_hash("acme/main")
    assert "acme" not in json.dumps(meta["labels"])
    assert meta["ownerReferences"] == [{**OWNER, "controller": False, "blockOwnerDeletion": False}]
    assert "ownerReferences" not in build("warm")["metadata"]


def test_token_is_a_file_never_argv_or_env():
    pod = build("claimed")
    (c,) = pod["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--token-file") + 1] == f"{TOKEN_DIR}/token"
    assert not any("secretKeyRef" in json.dumps(e) for e in c["env"])
    secret = token_secret("agent-runner-x", "s3cret", PodOptions())
    assert secret["stringData"] == {"token": "s3cret"}
    # Commands cannot read it: TOKEN_DIR is in none of the sandbox's readable or executable paths.
    from agent_runner.sandbox.policy import DEFAULT_EXEC_PATHS, DEFAULT_READ_ONLY_PATHS

    assert not any(
        TOKEN_DIR.startswith(p.rstrip("/") + "/") for p in DEFAULT_READ_ONLY_PATHS + DEFAULT_EXEC_PATHS
    )


def test_options_variants():
    spec = build("gvisor-pvc")["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert {v["name"]: v for v in spec["volumes"]}["workspace"] == {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": "ws-acme"},
    }
    assert build("runtime-default")["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_runner_service_account_comes_from_settings_and_its_token_stays_unmounted():
    options = PodOptions.from_settings(KubernetesSettings(service_account_name="secure-agent-runner"))
    spec = runner_pod("agent-runner-x", "agent-runner-x", options)["spec"]
    assert check_restricted({"spec": spec, "metadata": {}}) == []
    assert spec["serviceAccountName"] == "secure-agent-runner"
    assert spec["automountServiceAccountToken"] is False


def test_sandbox_settings_reach_the_runner():
    options = PodOptions.from_settings(KubernetesSettings(port=9000), SandboxSettings(timeout_s=7))
    (c,) = runner_pod("p", "p", options)["spec"]["containers"]
    assert json.loads(c["args"][c["args"].index("--sandbox") + 1])["timeout_s"] == 7
    assert c["ports"][0]["containerPort"] == 9000


def test_seccomp_localhost_profile_is_the_generated_one():
    assert (ROOT / "policies/seccomp/agent-runner.json").is_file()
    assert PodOptions().seccomp_localhost_profile.endswith("agent-runner.json")


def test_settings_default_stays_local():
    assert Settings().runner.backend == "local"
    assert Settings(runner={"backend": "kubernetes"}).runner.backend == "kubernetes"


# --- the checker itself: one deliberately broken spec per rule -----------------------------------
def _container(pod):
    return pod["spec"]["containers"][0]


BREAKERS = {
    "hostNamespaces": lambda p: p["spec"].update(hostPID=True),
    "privileged": lambda p: _container(p)["securityContext"].update(privileged=True),
    "capabilities": lambda p: _container(p)["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]}),
    "hostPathVolumes": lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "hostPorts": lambda p: _container(p)["ports"][0].update(hostPort=8700),
    "appArmor": lambda p: _container(p)["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
    "seLinux": lambda p: p["spec"]["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
    "procMount": lambda p: _container(p)["securityContext"].update(procMount="Unmasked"),
    "seccomp": lambda p: _container(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    "sysctls": lambda p: p["spec"]["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    "volumeTypes": lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
    "privilegeEscalation": lambda p: _container(p)["securityContext"].pop("allowPrivilegeEscalation"),
    "runAsNonRoot": lambda p: _container(p)["securityContext"].update(runAsNonRoot=False),
    "runAsUser": lambda p: _container(p)["securityContext"].update(runAsUser=0),
    "windowsHostProcess": lambda p: p["spec"]["securityContext"].update(windowsOptions={"hostProcess": True}),
}


def test_one_breaker_per_rule():
    assert sorted(BREAKERS) == sorted(RULES)


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_checker_catches_each_broken_rule(rule):
    pod = copy.deepcopy(build("claimed"))
    BREAKERS[rule](pod)
    violations = check_restricted(pod)
    assert violations, f"{rule} not caught"
    assert all(v.startswith(f"{rule}:") for v in violations), violations


def test_checker_needs_seccomp_and_non_root_somewhere():
    pod = copy.deepcopy(build("warm"))
    pod["spec"]["securityContext"].pop("seccompProfile")
    _container(pod)["securityContext"].pop("seccompProfile")
    pod["spec"]["securityContext"].pop("runAsNonRoot")
    _container(pod)["securityContext"].pop("runAsNonRoot")
    rules = {v.split(":")[0] for v in check_restricted(pod)}
    assert rules == {"seccomp", "runAsNonRoot"}


# --- NetworkPolicy and RBAC -----------------------------------------------------------------------
def test_example_manifests_are_generated(tmp_path):
    for name, docs in manifests.example_manifests().items():
        assert (ROOT / "k8s" / name).read_text() == manifests.render(docs), f"regenerate k8s/{name}"


def test_network_policy_ingress_from_mcp_api_only_and_egress_denied():
    np = manifests.runner_network_policy(
        "r", mcp_api_namespace="sa", mcp_api_labels={"app": "mcp"}, port=8700
    )
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"] == []
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8700}]
    assert rule["from"][0]["podSelector"] == {"matchLabels": {"app": "mcp"}}
    allowed = manifests.runner_network_policy(
        "r",
        mcp_api_namespace="sa",
        mcp_api_labels={},
        egress=[{"cidr": "10.0.0.0/8", "ports": [{"port": 443}]}],
    )
    assert allowed["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    ]


def test_rbac_is_namespaced_and_minimal():
    role, binding = manifests.runner_rbac("r", service_account="sa", service_account_namespace="n")
    assert role["kind"] == "Role" and binding["kind"] == "RoleBinding"
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        ("pods",): {"create", "get", "list", "watch", "patch", "delete"},
        ("secrets",): {"create", "get", "delete"},
        ("networkpolicies",): {"get", "list", "create", "patch", "delete"},  # egress.py
    }
    groups = {r["resources"][0]: r["apiGroups"] for r in role["rules"]}
    assert groups == {"pods": [""], "secrets": [""], "networkpolicies": ["networking.k8s.io"]}
    assert yaml.safe_load(manifests.render([role]))["kind"] == "Role"
