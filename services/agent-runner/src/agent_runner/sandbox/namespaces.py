"""Namespaces and the command's view of the filesystem (used where the runner is root).

Each command gets new network, PID, mount, IPC and UTS namespaces (network only when the policy
forbids it). Inside its mount namespace:
- the workspace and the private tmp dir are bind mounts with noexec,nosuid,nodev, so nothing in
  them can be executed even through `ld.so ./binary` or an mmap(PROT_EXEC) of a file there;
- those binds are *idmapped*: files that the runner's uid owns on disk appear as owned by the
  sandbox uid, and files the command creates are stored as the runner's uid. The workspace stays
  writable for the unprivileged command without ever being chowned, and the runner keeps owning
  everything on disk;
- /tmp, /var/tmp and /run (and any ancestor of the workspace that the sandbox uid could not even
  traverse, e.g. a 0700 home) are hidden behind an empty tmpfs, with just the path down to the
  workspace recreated in it: other users' files and the host's socket files (X11, D-Bus,
  docker.sock) are out of sight;
- /dev/shm is the private tmp dir (POSIX semaphores and shared memory work, privately);
- /proc is a fresh instance that shows only the command's own processes.

The command is PID 1 of its PID namespace: when it exits, the kernel kills whatever it left
behind, daemonized grandchildren included, and killing it kills the whole tree.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _syscalls as sc

BASE_FLAGS = sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS
BIND_ATTRS = sc.MOUNT_ATTR_NOEXEC | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV
TMPFS_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
# Masks only hold the directories leading to the workspace.
TMPFS_OPTIONS = "mode=0755,size=64k,nr_inodes=256"
HOSTNAME = "sandbox"


def flags(netns: bool) -> int:
    return BASE_FLAGS | (sc.CLONE_NEWNET if netns else 0)


def run_in_child(fn: Callable[[], None]) -> tuple[bool, str]:
    """Run `fn` in a forked child (for probes that change the caller's namespaces).

    Returns (True, "") when fn returned, else (False, the error). The caller must not reap
    children asynchronously meanwhile (the fork server blocks SIGCHLD around this).
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            os.close(r)
            fn()
        except BaseException as exc:
            code = 1
            try:
                os.write(w, str(exc).encode(errors="replace")[:4000])
            except OSError:
                pass
        os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    message = b"".join(chunks).decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        return False, message or f"probe child failed (status {status})"
    return True, ""


def probe_namespaces(netns: bool) -> tuple[bool, str]:
    """Whether this process can create the namespaces and make its mounts private."""

    def attempt() -> None:
        sc.unshare(flags(netns))
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)

    return run_in_child(attempt)


def make_idmap_userns(inner_uid: int, inner_gid: int, outer_uid: int, outer_gid: int) -> int:
    """An fd of a user namespace mapping inner -> outer, for idmapped mounts.

    Through a mount idmapped with it, an on-disk owner `inner` shows as `outer`, and files that a
    process running as `outer` creates are stored as `inner`. The namespace is kept alive by the
    fd alone; the child that created it exits at once.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("could not create a user namespace for the idmapped mount")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(f"{inner_uid} {outer_uid} 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(f"{inner_gid} {outer_gid} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def probe_idmap(path: str, userns_fd: int) -> tuple[bool, str]:
    """Whether `path`'s filesystem takes an idmapped noexec bind (ext4, xfs, btrfs, tmpfs >= 6.3 do)."""

    def attempt() -> None:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        fd = sc.open_tree(path, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
        sc.mount_setattr(fd, BIND_ATTRS | sc.MOUNT_ATTR_IDMAP, userns_fd)

    return run_in_child(attempt)


def can_traverse(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocked_ancestors(path: str, uid: int, gid: int) -> list[str]:
    """The topmost ancestor of `path` that `uid`/`gid` cannot traverse (empty if none)."""
    parts = path.strip("/").split("/")
    current = ""
    for part in parts[:-1]:
        current += "/" + part
        try:
            st = os.stat(current)
        except OSError:
            return []
        if not can_traverse(st, uid, gid):
            return [current]
    return []


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    userns_fd: int = -1  # -1: no idmapping


@dataclass
class MountPlan:
    binds: list[Bind] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def normalize_masks(masks: list[str]) -> list[str]:
    """Existing directories only, canonical, and none inside another (the outer one hides it)."""
    real = sorted({os.path.realpath(m) for m in masks if os.path.isdir(m)}, key=len)
    out: list[str] = []
    for m in real:
        if m != "/" and not _covered(m, out):
            out.append(m)
    return out


def setup_mounts(plan: MountPlan) -> None:
    """Build the command's view; runs in the supervisor right after unshare(CLONE_NEWNS)."""
    # Nothing mounted from here on may propagate back to the host.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    # Clone the trees before the masks hide their paths.
    detached = []
    for bind in plan.binds:
        fd = sc.open_tree(bind.source, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
        attrs = BIND_ATTRS | (sc.MOUNT_ATTR_IDMAP if bind.userns_fd >= 0 else 0)
        sc.mount_setattr(fd, attrs, max(bind.userns_fd, 0))
        detached.append((bind, fd))
    for mask in plan.masks:
        sc.mount("tmpfs", mask, "tmpfs", TMPFS_FLAGS, TMPFS_OPTIONS)
    for bind, fd in sorted(detached, key=lambda item: item[0].target.count("/")):
        if _covered(bind.target, plan.masks):
            os.makedirs(bind.target, mode=0o755, exist_ok=True)
        sc.move_mount(fd, bind.target)
        os.close(fd)
    sc.sethostname(HOSTNAME)


def mount_proc() -> None:
    """A /proc of the command's own PID namespace (run as its PID 1, before dropping root)."""
    sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
