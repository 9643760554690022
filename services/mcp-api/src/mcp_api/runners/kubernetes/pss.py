"""A checker of the Pod Security Standards "restricted" profile (v1.30+ rules) for pod dicts.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ — the baseline rules plus the
restricted ones. Returns one human-readable violation per broken rule and field; [] means allowed.
"""

from __future__ import annotations

from typing import Any

RULES = (
    "hostNamespaces", "privileged", "capabilities", "hostPathVolumes", "hostPorts", "appArmor",
    "seLinux", "procMount", "seccomp", "sysctls", "volumeTypes", "privilegeEscalation",
    "runAsNonRoot", "runAsUser", "windowsHostProcess",
)  # fmt: skip

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]):
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(kind) or []:
            yield f"{kind}[{c.get('name', '?')}]", c


def check_restricted(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    out: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"hostNamespaces: spec.{field} must be unset or false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("windowsHostProcess: spec.securityContext.windowsOptions.hostProcess must be false")
    for vol in spec.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        if "hostPath" in kinds:
            out.append(f"hostPathVolumes: volume {vol.get('name')} uses hostPath")
        for k in kinds:
            if k not in ALLOWED_VOLUME_TYPES and k != "hostPath":
                out.append(f"volumeTypes: volume {vol.get('name')} has disallowed type {k}")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctls: {sysctl.get('name')} is not a safe sysctl")
    out += _selinux("spec.securityContext", psc)
    out += _apparmor("spec.securityContext", psc)
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(f"seccomp: spec.securityContext.seccompProfile.type {pod_seccomp!r} is not allowed")
    pod_non_root = psc.get("runAsNonRoot")
    if pod_non_root is False:
        out.append("runAsNonRoot: spec.securityContext.runAsNonRoot must not be false")
    if psc.get("runAsUser") == 0:
        out.append("runAsUser: spec.securityContext.runAsUser must not be 0")
    for where, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"privileged: {where}.securityContext.privileged must be false")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"windowsHostProcess: {where} must not be a host process")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"hostPorts: {where} uses hostPort {port['hostPort']}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"capabilities: {where} must drop ALL")
        extra = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            out.append(f"capabilities: {where} may add only NET_BIND_SERVICE, not {extra}")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"procMount: {where}.securityContext.procMount must be Default")
        out += _selinux(f"{where}.securityContext", sc)
        out += _apparmor(f"{where}.securityContext", sc)
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"privilegeEscalation: {where}.securityContext.allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if sc.get("runAsNonRoot") is False or non_root is not True:
            out.append(f"runAsNonRoot: {where} must run with runAsNonRoot true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"runAsUser: {where}.securityContext.runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(
                f"seccomp: {where} needs seccompProfile RuntimeDefault or Localhost (pod or container)"
            )
        if seccomp == "Localhost" and not (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get(
            "localhostProfile"
        ):
            out.append(f"seccomp: {where} has a Localhost seccompProfile without localhostProfile")
    return out


def _selinux(where: str, sc: dict[str, Any]) -> list[str]:
    opts = sc.get("seLinuxOptions") or {}
    out = []
    if opts.get("type", "") not in SELINUX_TYPES:
        out.append(f"seLinux: {where}.seLinuxOptions.type {opts.get('type')!r} is not allowed")
    if opts.get("user") or opts.get("role"):
        out.append(f"seLinux: {where}.seLinuxOptions user/role must be unset")
    return out


def _apparmor(where: str, sc: dict[str, Any]) -> list[str]:
    kind = (sc.get("appArmorProfile") or {}).get("type")
    if kind not in (None, "RuntimeDefault", "Localhost"):
        return [f"appArmor: {where}.appArmorProfile.type {kind!r} is not allowed"]
    return []
