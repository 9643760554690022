"""Which controls apply to a policy on this machine: decided once, reported as is.

`gather_facts()` probes (in the fork server, which has the privileges commands are started
with); `decide()` is a pure function of the policy and those facts, so the same decision drives
both what the child process does and what `active_controls()` reports. Nothing is reported that
is not applied, and a control the policy demands (`use_namespaces=True`, `use_cgroups=True`)
that this machine cannot give is an error, not a silent downgrade.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .namespaces import blocked_ancestors, normalize_masks

# The minimum: a command must be confined by Landlock *and* seccomp, or by namespaces.
MINIMUM = "Landlock and seccomp, or namespaces"


@dataclass
class Facts:
    euid: int
    sys_admin: bool
    landlock_abi: int
    landlock_reason: str
    seccomp: bool
    seccomp_reason: str
    namespaces: bool
    namespaces_reason: str
    idmap: bool
    idmap_reason: str
    cgroup: dict[str, str]  # CgroupSupport.describe()
    cgroup_usable: bool
    cgroup_reason: str
    workspace_owner: tuple[int, int]
    tmp_owner: tuple[int, int]


@dataclass
class Plan:
    landlock_abi: int
    seccomp: bool
    allow_unix: bool
    namespaces: bool
    netns: bool
    idmap: bool
    uid: int | None  # None: keep the runner's uid
    gid: int | None
    drop_caps: bool
    masks: list[str]
    cgroups: bool
    nproc_uid: int | None  # count this uid's tasks into RLIMIT_NPROC; None for uid 0 (not enforced)
    minimum_ok: bool
    unconfined: bool
    errors: list[str] = field(default_factory=list)
    controls: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _owned_by(owner: tuple[int, int], uid: int) -> bool:
    return owner[0] == uid


def decide(policy: dict[str, Any], facts: Facts) -> Plan:
    errors: list[str] = []
    root = facts.euid == 0
    allow_network = bool(policy["allow_network"])
    ws, tmp = str(policy["workspace"]), str(policy["tmp_dir"])

    # Namespaces.
    want_ns = policy["use_namespaces"]
    if want_ns is False:
        namespaces, ns_note = False, "off (disabled by policy)"
    elif not (root and facts.sys_admin):
        namespaces, ns_note = False, "off (runner is not root with CAP_SYS_ADMIN)"
    elif not facts.namespaces:
        namespaces, ns_note = False, f"off ({facts.namespaces_reason})"
    else:
        namespaces, ns_note = True, "on"
    if want_ns is True and not namespaces:
        errors.append(f"use_namespaces=true but namespaces are unavailable: {ns_note}")
    netns = namespaces and not allow_network

    # Who the command runs as.
    drop_uid, drop_gid = policy["drop_to_uid"], policy["drop_to_gid"]
    idmap = namespaces and drop_uid is not None and facts.idmap
    uid = gid = None
    drop_caps = root
    if not root:
        uid_note = f"n/a (runner runs as uid {facts.euid}; commands keep it)"
    elif drop_uid is None:
        uid_note = "off (disabled by policy; uid 0 without capabilities)"
    elif idmap:
        uid, gid = drop_uid, drop_gid
        uid_note = f"on ({drop_uid}:{drop_gid}, workspace idmapped)"
    elif _owned_by(facts.workspace_owner, drop_uid) and _owned_by(facts.tmp_owner, drop_uid):
        uid, gid = drop_uid, drop_gid
        uid_note = f"on ({drop_uid}:{drop_gid}, workspace owned by it)"
    else:
        why = facts.idmap_reason if namespaces else "no mount namespace for an idmapped workspace"
        uid_note = f"off ({why}; uid 0 without capabilities)"

    # Masks: the configured ones plus ancestors the sandbox uid could not traverse.
    masks: list[str] = []
    if namespaces:
        masks = [m for m in policy["masked_paths"] if not (allow_network and m == "/run")]
        if uid is not None:
            masks += blocked_ancestors(ws, uid, gid) + blocked_ancestors(tmp, uid, gid)
        masks = normalize_masks(masks)
    elif uid is not None:
        for path in (ws, tmp):
            for blocked in blocked_ancestors(path, uid, gid):
                errors.append(
                    f"uid {uid} cannot reach {path}: {blocked} is not searchable for it "
                    "(make the workspace's parent directories o+x, or enable namespaces)"
                )

    allow_unix = policy["allow_unix_sockets"]
    if allow_unix == "auto":
        # Socket files are guarded by their modes and paths only (Landlock does not cover
        # connect() on them): allowed only where /tmp and /run are masked (/run stays visible
        # with the network allowed, its sockets then being the lesser exposure) and the command
        # runs as a uid that owns none of the host's sockets.
        masked = set(masks)
        allow_unix = (
            namespaces and uid is not None and "/tmp" in masked and ("/run" in masked or allow_network)  # noqa: S108  # nosec B108 - compared with the masked paths, nothing is written there
        )

    want_cg = policy["use_cgroups"]
    cgroups = want_cg is not False and root and facts.cgroup_usable
    if want_cg is True and not cgroups:
        errors.append(
            f"use_cgroups=true but no cgroup is usable: {facts.cgroup_reason or 'runner is not root'}"
        )

    final_uid = uid if uid is not None else facts.euid
    nproc_uid = final_uid if final_uid != 0 else None

    landlock_ok = facts.landlock_abi >= 1
    minimum_ok = (landlock_ok and facts.seccomp) or namespaces
    unconfined = not minimum_ok and bool(policy["allow_unconfined"])

    tree_kill = []
    if namespaces:
        tree_kill.append("pid namespace")
    if cgroups and facts.cgroup.get("cgroup_kill", "off") != "off":
        tree_kill.append(facts.cgroup["cgroup_kill"])
    if not namespaces:
        tree_kill.append("subreaper descendant scan")

    abi = facts.landlock_abi
    controls = {
        "mode": "UNCONFINED (allow_unconfined override)"
        if unconfined
        else ("confined" if minimum_ok else f"refused (needs {MINIMUM})"),
        "landlock": f"abi{abi}" if landlock_ok else f"off ({facts.landlock_reason})",
        "landlock_fs": "on (workspace and tmp: read-write, no execute)" if landlock_ok else "off",
        "landlock_net": (
            "off (network allowed)"
            if allow_network
            else "on (tcp bind/connect denied)"
            if abi >= 4
            else f"unsupported (abi{abi} < 4)"
        ),
        "landlock_scope": "on (signals, abstract unix sockets)"
        if abi >= 6
        else f"unsupported (abi{abi} < 6)",
        "seccomp": "on" if facts.seccomp else f"off ({facts.seccomp_reason})",
        "socket_families": "unix, netlink" if allow_unix else "netlink only",
        "netns": "on" if netns else ("off (network allowed)" if namespaces else ns_note),
        "pidns": "on" if namespaces else ns_note,
        "mountns": "on" if namespaces else ns_note,
        "ipcns": "on" if namespaces else ns_note,
        "utsns": "on" if namespaces else ns_note,
        "noexec_mount": "on" if namespaces else ns_note,
        "idmap_mount": "on" if idmap else ("off" if not namespaces else f"off ({facts.idmap_reason})"),
        "masked_paths": ",".join(masks) if masks else "off",
        "uid_drop": uid_note,
        "capabilities": "dropped" if drop_caps or uid is not None else "none held",
        "no_new_privs": "on",
        "rlimits": "cpu,data,fsize,nofile,nproc,core"
        + ("" if nproc_uid is not None else " (nproc not enforced for uid 0)"),
        **(facts.cgroup if cgroups else {"cgroup": "off", "cgroup_kill": "off"}),
        "tree_kill": " + ".join(tree_kill),
    }
    if not cgroups and want_cg is not False:
        controls["cgroup"] = f"off ({facts.cgroup_reason or 'runner is not root'})"
    return Plan(
        landlock_abi=abi,
        seccomp=facts.seccomp,
        allow_unix=bool(allow_unix),
        namespaces=namespaces,
        netns=netns,
        idmap=idmap,
        uid=uid,
        gid=gid,
        drop_caps=drop_caps,
        masks=masks,
        cgroups=cgroups,
        nproc_uid=nproc_uid,
        minimum_ok=minimum_ok,
        unconfined=unconfined,
        errors=errors,
        controls=controls,
    )


def owner(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid
