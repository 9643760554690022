"""Pure builders of the runner pod and its token Secret (plain dicts, ready for the API).

The per-pod token: mcp-api generates it, stores it in a Secret owned by the pod, and the pod mounts
it read-only at TOKEN_DIR with mode 0440, group fsGroup 10001. The runner reads it once at start
(`--token-file`). Commands the runner starts share its uid (the pod has no CAP_SETUID to change
it), so file modes do not protect the token from them; Landlock does: their read
set is the workspace, /tmp and system paths (/usr, /etc, ...), never TOKEN_DIR; and they start
after the runner has dropped every capability. The token is not in argv or the environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

APP_LABEL = "app.kubernetes.io/name"
APP = "agent-runner"
TENANT_LABEL = "secure-agent.dev/tenant-hash"
WORKSPACE_LABEL = "secure-agent.dev/workspace-hash"
PROFILE_LABEL = "secure-agent.dev/profile"
# Hash of the pod options (the profile's spec as pods see it): a warm pod started under an older
# spec of the same profile is never claimed, and a workspace pod of an older spec is replaced.
SPEC_LABEL = "secure-agent.dev/pod-spec"
# volumeMounts[].bindMountOptions (KEP-5855, alpha in 1.37 behind the VolumeBindMountOptions gate).
WORKSPACE_BIND_MOUNT_OPTIONS = ["noexec", "nosuid", "nodev"]
STATE_LABEL = "secure-agent.dev/state"  # warm | claimed
WORKSPACE_ANNOTATION = "secure-agent.dev/workspace"  # "tenant/workspace", for humans and reconcile
CLAIMED_AT_ANNOTATION = "secure-agent.dev/claimed-at"
# Renewed by the mcp-api replica holding a claimed pod; the reconciler removes pods whose holder died.
HEARTBEAT_ANNOTATION = "secure-agent.dev/heartbeat"
RUNNER_UID = 10001
TOKEN_DIR = "/var/run/secrets/agent-runner"  # noqa: S105 - a path
TOKEN_KEY = "token"  # noqa: S105 - a key name
WORKSPACE_DIR = "/workspace"
# The pod's private, memory-backed emptyDir, not a shared host /tmp.
TMP_DIR = "/tmp"  # noqa: S108  # nosec B108 - the pod's own memory emptyDir
# The runner listens on the pod IP; the NetworkPolicy admits only mcp-api to that port.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104 - pod IP, NetworkPolicy-guarded


def short_hash(value: str) -> str:
    """A label-safe, non-reversible id (labels are visible to anyone who may list pods)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PodOptions:
    namespace: str = "secure-agent-runners"
    image: str = "secure-agent/agent-runner:latest"
    image_pull_policy: str = "IfNotPresent"
    port: int = 8700
    seccomp: str = "Localhost"  # or RuntimeDefault
    seccomp_localhost_profile: str = "profiles/agent-runner.json"
    runtime_class_name: str | None = None
    service_account_name: str | None = None
    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    ephemeral_storage_limit: str = "2Gi"
    workspace_size_limit: str = "1Gi"
    workspace_pvc: str | None = None
    tmp_size_limit: str = "64Mi"
    active_deadline_s: int = 86400
    owner: dict[str, Any] | None = None  # {"apiVersion","kind","name","uid"}
    profile: str = "default"
    sandbox_json: str = "{}"
    workspace_noexec_mount: bool = False  # bindMountOptions on the workspace mount (see SPEC_LABEL note)

    @classmethod
    def from_settings(cls, k8s: Any, sandbox: Any = None) -> PodOptions:
        owner = None
        if k8s.owner_name and k8s.owner_uid and k8s.owner_kind and k8s.owner_api_version:
            owner = {
                "apiVersion": k8s.owner_api_version, "kind": k8s.owner_kind,
                "name": k8s.owner_name, "uid": k8s.owner_uid,
            }  # fmt: skip
        fields = {f: getattr(k8s, f) for f in cls.__dataclass_fields__ if hasattr(k8s, f)}
        fields["owner"] = owner
        if sandbox is not None:
            fields["sandbox_json"] = json.dumps(sandbox.model_dump(mode="json"), sort_keys=True)
        return cls(**fields)


def spec_hash(options: PodOptions) -> str:
    fields = dataclasses.asdict(options)
    fields.pop("owner")  # the same for every replica of a release; not part of what a pod runs
    return short_hash(json.dumps(fields, sort_keys=True, default=str))


def label_value(name: str) -> str:
    """A profile name as a label value (at most 63 characters of [A-Za-z0-9._-])."""
    ok = len(name) <= 63 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()
    return name if ok and name[0].isalnum() and name[-1].isalnum() else f"h-{short_hash(name)}"


def pool_labels(options: PodOptions) -> dict[str, str]:
    return {APP_LABEL: APP, PROFILE_LABEL: label_value(options.profile), SPEC_LABEL: spec_hash(options)}


def workspace_labels(tenant: str, workspace: str) -> dict[str, str]:
    return {TENANT_LABEL: short_hash(tenant), WORKSPACE_LABEL: short_hash(f"{tenant}/{workspace}")}


def token_secret(name: str, token: str, options: PodOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": options.namespace, "labels": pool_labels(options)},
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def owned_by_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """ownerReference making a Secret go away with its pod."""
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}


def runner_pod(
    name: str,
    secret_name: str,
    options: PodOptions,
    *,
    tenant: str | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The runner pod. Without tenant/workspace it is a warm (unclaimed) pool pod; the workspace
    id is passed at claim time through labels, and the runner serves whichever workspace dir."""
    labels = {**pool_labels(options), STATE_LABEL: "warm"}
    annotations: dict[str, str] = {}
    workspace_id = "warm"
    if tenant is not None and workspace is not None:
        labels.update(workspace_labels(tenant, workspace))
        labels[STATE_LABEL] = "claimed"
        workspace_id = f"{tenant}/{workspace}"
        annotations[WORKSPACE_ANNOTATION] = workspace_id
    metadata: dict[str, Any] = {
        "name": name, "namespace": options.namespace, "labels": labels, "annotations": annotations,
    }  # fmt: skip
    if options.owner:
        metadata["ownerReferences"] = [{**options.owner, "controller": False, "blockOwnerDeletion": False}]
    if options.seccomp == "Localhost":
        seccomp = {"type": "Localhost", "localhostProfile": options.seccomp_localhost_profile}
    else:
        seccomp = {"type": "RuntimeDefault"}
    if options.workspace_pvc:
        workspace_volume = {
            "name": "workspace",
            "persistentVolumeClaim": {"claimName": options.workspace_pvc},
        }
    else:
        workspace_volume = {"name": "workspace", "emptyDir": {"sizeLimit": options.workspace_size_limit}}
    workspace_mount: dict[str, Any] = {"name": "workspace", "mountPath": WORKSPACE_DIR}
    if options.workspace_noexec_mount:
        # Off by default: an API server without the gate drops the field, one that knows it but has
        # the gate off rejects the pod. When off, Landlock's EXECUTE right is the noexec control.
        workspace_mount["bindMountOptions"] = list(WORKSPACE_BIND_MOUNT_OPTIONS)
    container = {
        "name": "runner",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["python3", "-m", "agent_runner", "serve"],
        "args": [
            "--workspace",
            WORKSPACE_DIR,
            "--workspace-id",
            workspace_id,
            "--host",
            ALL_INTERFACES,
            "--port",
            str(options.port),
            "--token-file",
            f"{TOKEN_DIR}/{TOKEN_KEY}",
            "--sandbox",
            options.sandbox_json,
        ],  # fmt: skip
        "ports": [{"name": "runner", "containerPort": options.port, "protocol": "TCP"}],
        "env": [{"name": "TMPDIR", "value": TMP_DIR}, {"name": "HOME", "value": TMP_DIR}],
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {
                "cpu": options.cpu_limit,
                "memory": options.memory_limit,
                "ephemeral-storage": options.ephemeral_storage_limit,
            },
        },  # fmt: skip
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": seccomp,
        },
        "readinessProbe": {
            "tcpSocket": {"port": options.port},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },  # fmt: skip
        "volumeMounts": [
            workspace_mount,
            {"name": "tmp", "mountPath": TMP_DIR},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": options.active_deadline_s,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": seccomp,
        },
        "containers": [container],
        "volumes": [
            workspace_volume,
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": options.tmp_size_limit}},
            {"name": "token", "secret": {"secretName": secret_name, "defaultMode": 0o440}},
        ],
    }
    if options.runtime_class_name:
        spec["runtimeClassName"] = options.runtime_class_name
    if options.service_account_name:  # a token-less account of its own, so no RoleBinding reaches it
        spec["serviceAccountName"] = options.service_account_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
