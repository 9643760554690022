"""The runner pod's constraints as `podman run` (or `docker run`) arguments.

`runner_pod()` (pods.py) is what the Kubernetes backend asks a cluster for. No cluster can run on a
developer machine or in CI, so `podman_run(pod, ...)` renders the same pod as one container with the
same constraints, derived from the pod spec itself (nothing here restates a limit):

| pod spec                                            | podman                                       |
|-----------------------------------------------------|----------------------------------------------|
| runAsUser / runAsGroup / fsGroup / supplementalGroups | --user uid:gid, --group-add                |
| runAsNonRoot                                        | refused unless the uid is set and not 0      |
| readOnlyRootFilesystem                              | --read-only --read-only-tmpfs=false          |
| capabilities drop / add                             | --cap-drop / --cap-add                       |
| allowPrivilegeEscalation: false                     | --security-opt no-new-privileges             |
| seccompProfile Localhost / RuntimeDefault / Unconfined | --security-opt seccomp=ROOT/PROFILE / (default) / unconfined |
| limits.memory, requests.memory                      | --memory (= --memory-swap: no swap), --memory-reservation |
| limits.cpu, requests.cpu                            | --cpus, --cpu-shares (as the kubelet computes them) |
| emptyDir medium Memory                              | --tmpfs DIR:size=sizeLimit,mode=1777 + mount options |
| emptyDir, persistentVolumeClaim                     | -v SOURCE:DIR (a host directory or volume the caller gives) |
| secret                                              | -v DIR:MOUNT:ro (write_secret() fills DIR with the Secret's data) |
| volumeMounts readOnly / bindMountOptions            | ro / those options                           |
| command / args / env                                | --entrypoint / arguments / -e                 |
| terminationGracePeriodSeconds, activeDeadlineSeconds, restartPolicy | --stop-timeout, --timeout, --restart |
| hostNetwork / hostPID / hostIPC                     | --network / --pid / --ipc host               |

Not in the pod spec but node settings, hence parameters: the pids limit (kubelet `podPidsLimit`)
and the directory Localhost seccomp profiles are resolved against (kubelet `<root>/seccomp`).
Stricter than a cluster, by default: writable volumes are mounted noexec,nosuid,nodev
(`noexec_volumes`), which a cluster can express only through the alpha `bindMountOptions`; the
runner's Landlock ruleset denies commands the execute right there in either case.
Not mapped (listed in `PodmanRun.unmapped`): ephemeral-storage limits, emptyDir sizeLimit on disk,
probes, node placement and runtimeClassName; nor is the NetworkPolicy (not part of the pod). Any
other field this module does not understand is refused, never ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

KUBELET_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"
DEFAULT_PIDS_LIMIT = 1024
HARDENED_MOUNT_OPTIONS = ("noexec", "nosuid", "nodev")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
            "E": Decimal(10**18)}  # fmt: skip
_PULL = {"IfNotPresent": "missing", "Never": "never", "Always": "always"}
# Fields rendered below, fields that need nothing here (the podman default already is what they
# ask for), and fields that only place a pod on a node or pick its runtime (listed as unmapped).
_SPEC_KEYS = {
    "containers", "volumes", "securityContext", "restartPolicy", "terminationGracePeriodSeconds",
    "activeDeadlineSeconds", "hostNetwork", "hostPID", "hostIPC",
}  # fmt: skip
_SPEC_SATISFIED = {"automountServiceAccountToken": False, "enableServiceLinks": False}
_SPEC_PLACEMENT = {
    "runtimeClassName", "nodeSelector", "tolerations", "affinity", "priorityClassName",
    "schedulerName", "topologySpreadConstraints", "serviceAccountName",
}  # fmt: skip
_CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "ports", "resources",
    "securityContext", "volumeMounts", "workingDir", "terminationMessagePath", "terminationMessagePolicy",
}  # fmt: skip
_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
_SECURITY_KEYS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile",
    "readOnlyRootFilesystem", "capabilities", "allowPrivilegeEscalation", "privileged",
}  # fmt: skip


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("1Gi", "64Mi", "100m", "1.5", "2e3") as a number."""
    text = str(value).strip()
    try:
        for suffix, factor in _BINARY.items():
            if text.endswith(suffix):
                return Decimal(text[: -len(suffix)]) * factor
        if text and text[-1] in _DECIMAL:
            return Decimal(text[:-1]) * _DECIMAL[text[-1]]
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from None


def quantity_bytes(value: str | int) -> int:
    return math.ceil(quantity(value))


@dataclass
class PodmanRun:
    """`podman run` arguments for one container of a pod: `[*argv]` is the whole command line."""

    options: list[str]
    image: str
    args: list[str]
    unmapped: list[str] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return ["podman", "run", *self.options, self.image, *self.args]


def podman_run(
    pod: Mapping[str, Any],
    *,
    container: str | None = None,
    volume_sources: Mapping[str, str] | None = None,
    secret_dirs: Mapping[str, str] | None = None,
    seccomp_root: str | os.PathLike[str] = KUBELET_SECCOMP_ROOT,
    pids_limit: int = DEFAULT_PIDS_LIMIT,
    publish: Mapping[int, int] | None = None,
    publish_address: str = "127.0.0.1",
    noexec_volumes: bool = True,
    name: str | None = None,
    detach: bool = True,
) -> PodmanRun:
    """Render `pod` (a Pod manifest as a dict) for podman.

    volume_sources: pod volume name -> host directory (or podman volume name) for emptyDir (disk)
    and persistentVolumeClaim volumes; an emptyDir without one becomes an anonymous volume.
    secret_dirs: Secret name -> host directory holding its files (see write_secret).
    publish: containerPort -> host port, bound on publish_address only.
    """
    spec = pod["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    if container is None:
        if len(containers) != 1:
            raise ValueError(f"the pod has {len(containers)} containers; name one of {sorted(containers)}")
        container = next(iter(containers))
    c = containers[container]
    unmapped: list[str] = []
    for key, value in spec.items():
        if key in _SPEC_PLACEMENT:
            unmapped.append(f"spec.{key}")
        elif key in _SPEC_SATISFIED:
            if value != _SPEC_SATISFIED[key]:
                raise ValueError(f"spec.{key}={value!r} cannot be rendered here")
        elif key not in _SPEC_KEYS:
            raise ValueError(f"pod spec field this renderer does not know: {key!r}")
    unknown_fields = set(c) - _CONTAINER_KEYS - set(_PROBES)
    if unknown_fields:
        raise ValueError(f"container fields this renderer does not know: {sorted(unknown_fields)}")
    volume_sources = dict(volume_sources or {})
    secret_dirs = dict(secret_dirs or {})
    pod_name = pod["metadata"]["name"]
    opts: list[str] = ["--name", name or f"{pod_name}-{container}", "--hostname", pod_name]
    if detach:
        opts.append("--detach")
    opts += ["--pull", _PULL.get(c.get("imagePullPolicy", "IfNotPresent"), "missing")]

    # Security context: the container's fields override the pod's.
    pod_sc = dict(spec.get("securityContext") or {})
    sc = {**{k: v for k, v in pod_sc.items() if k not in ("fsGroup", "supplementalGroups")},
          **(c.get("securityContext") or {})}  # fmt: skip
    unknown = (set(sc) | set(pod_sc)) - _SECURITY_KEYS
    if unknown:
        raise ValueError(f"securityContext fields this renderer does not know: {sorted(unknown)}")
    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    if sc.get("runAsNonRoot") and (uid is None or uid == 0):
        raise ValueError("runAsNonRoot needs a numeric, non-zero runAsUser to be provable here")
    if uid is not None:
        opts += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    groups = [pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []
    groups += list(pod_sc.get("supplementalGroups") or [])
    for group in dict.fromkeys(groups):
        if group != gid:
            opts += ["--group-add", str(group)]
    if sc.get("privileged"):
        opts.append("--privileged")
    if sc.get("readOnlyRootFilesystem"):
        # Only the pod's volumes are writable: no tmpfs of podman's own on /run, /tmp, /var/tmp.
        opts += ["--read-only", "--read-only-tmpfs=false"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        opts += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        opts += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    seccomp = sc.get("seccompProfile") or {"type": "RuntimeDefault"}
    if seccomp["type"] == "Localhost":
        profile = Path(seccomp_root) / seccomp["localhostProfile"]
        if not profile.is_file():
            raise FileNotFoundError(
                f"seccomp profile {seccomp['localhostProfile']!r} is not under {seccomp_root}"
            )
        opts += ["--security-opt", f"seccomp={profile}"]
    elif seccomp["type"] == "Unconfined":
        opts += ["--security-opt", "seccomp=unconfined"]
    elif seccomp["type"] != "RuntimeDefault":
        raise ValueError(f"unknown seccompProfile type {seccomp['type']!r}")

    # Resources, as the kubelet turns them into cgroup settings.
    resources = c.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    if "memory" in limits:
        memory = quantity_bytes(limits["memory"])
        opts += ["--memory", str(memory), "--memory-swap", str(memory)]
    if "memory" in requests:
        opts += ["--memory-reservation", str(quantity_bytes(requests["memory"]))]
    if "cpu" in limits:
        opts += ["--cpus", f"{quantity(limits['cpu']).normalize():f}"]
    if "cpu" in requests:
        opts += ["--cpu-shares", str(max(2, int(quantity(requests["cpu"]) * 1024)))]
    for resource in sorted(set(limits) - {"memory", "cpu"}):
        unmapped.append(f"resources.limits.{resource}")
    opts += ["--pids-limit", str(pids_limit)]

    # Volumes.
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in c.get("volumeMounts") or []:
        if set(mount) - {"name", "mountPath", "readOnly", "bindMountOptions"}:
            raise ValueError(
                f"volumeMount {mount['name']!r}: fields {sorted(set(mount))} are not all supported"
            )
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        options = ["ro" if mount.get("readOnly") else "rw"]
        options += list(mount.get("bindMountOptions") or [])
        if noexec_volumes:
            options += [o for o in HARDENED_MOUNT_OPTIONS if o not in options]
        if "emptyDir" in volume and (volume["emptyDir"] or {}).get("medium") == "Memory":
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            tmpfs = [*options, *([f"size={quantity_bytes(size)}"] if size else []), "mode=1777"]
            opts += ["--tmpfs", f"{path}:{','.join(tmpfs)}"]
        elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
            source = volume_sources.get(mount["name"])
            if source is None and "persistentVolumeClaim" in volume:
                raise ValueError(
                    f"volume {mount['name']!r} is a PVC: give its host directory in volume_sources"
                )
            if source is None:
                opts += ["--mount", f"type=volume,destination={path}," + ",".join(options)]
            else:
                opts += ["--volume", f"{source}:{path}:{','.join(options)}"]
            if (volume.get("emptyDir") or {}).get("sizeLimit"):
                unmapped.append(f"volumes.{mount['name']}.emptyDir.sizeLimit")
        elif "secret" in volume:
            if set(volume["secret"]) - {"secretName", "defaultMode"}:
                raise ValueError(f"volume {mount['name']!r}: only secretName and defaultMode are supported")
            secret = volume["secret"]["secretName"]
            if secret not in secret_dirs:
                raise ValueError(f"secret {secret!r}: give a directory with its files in secret_dirs")
            if not mount.get("readOnly"):
                options[0] = "ro"  # secret volumes are always read-only
            opts += ["--volume", f"{secret_dirs[secret]}:{path}:{','.join(options)}"]
        else:
            raise ValueError(
                f"volume {mount['name']!r}: kind {sorted(set(volume) - {'name'})} is not supported"
            )

    # Process.
    for env in c.get("env") or []:
        if "value" not in env:
            raise ValueError(f"env {env['name']!r}: only literal values are supported")
        opts += ["--env", f"{env['name']}={env['value']}"]
    if c.get("workingDir"):
        opts += ["--workdir", c["workingDir"]]
    if c.get("command"):
        opts += ["--entrypoint", json.dumps(c["command"])]
    if "terminationGracePeriodSeconds" in spec:
        opts += ["--stop-timeout", str(spec["terminationGracePeriodSeconds"])]
    if "activeDeadlineSeconds" in spec:
        opts += ["--timeout", str(spec["activeDeadlineSeconds"])]
    opts += [
        "--restart",
        {"Never": "no", "OnFailure": "on-failure", "Always": "always"}[spec.get("restartPolicy", "Always")],
    ]
    if spec.get("hostNetwork"):
        opts += ["--network", "host"]
    if spec.get("hostPID"):
        opts += ["--pid", "host"]
    if spec.get("hostIPC"):
        opts += ["--ipc", "host"]
    for port in c.get("ports") or []:
        host_port = (publish or {}).get(port["containerPort"])
        if host_port is not None:
            proto = port.get("protocol", "TCP").lower()
            opts += ["--publish", f"{publish_address}:{host_port}:{port['containerPort']}/{proto}"]
    for key, value in sorted((pod["metadata"].get("labels") or {}).items()):
        opts += ["--label", f"{key}={value}"]
    for probe in _PROBES:
        if probe in c:
            unmapped.append(f"containers.{container}.{probe}")
    return PodmanRun(options=opts, image=c["image"], args=list(c.get("args") or []), unmapped=unmapped)


def write_secret(
    secret: Mapping[str, Any], directory: str | os.PathLike[str], *, pod: Mapping[str, Any]
) -> Path:
    """Write a Secret's data into `directory` the way the kubelet projects it into `pod`: one file
    per key, mode `defaultMode` of the pod's volume, group fsGroup. Returns the directory."""
    import base64

    name = secret["metadata"]["name"]
    volume = next(
        v["secret"] for v in pod["spec"].get("volumes") or [] if v.get("secret", {}).get("secretName") == name
    )
    mode = volume.get("defaultMode", 0o644)
    group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    # Traversable by the pod's group only (as root, group fsGroup), like the kubelet's projection.
    if group is not None and os.geteuid() == 0:
        os.chown(target, 0, group)
    os.chmod(target, 0o750)  # noqa: S103  # nosec B103 - group-only traversal, like the kubelet projection
    data = {k: v.encode() for k, v in (secret.get("stringData") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()})
    for key, value in data.items():
        path = target / key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, value)
            if group is not None and os.geteuid() == 0:
                os.fchown(fd, 0, group)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    return target
