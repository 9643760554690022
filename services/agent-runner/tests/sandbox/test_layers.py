"""Each layer on its own, in a forked child of the test process.

run_command stacks every layer, so a denial there could come from any of them. Here one layer is
applied at a time to a process that would otherwise be allowed (these tests run as root: without
the layer, every probe below succeeds), which proves that layer by itself.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_runner.sandbox import _syscalls as sc
from agent_runner.sandbox import cgroups, landlock, namespaces, privileges, seccomp
from agent_runner.sandbox.policy import (
    DEFAULT_DENIED_PATHS,
    DEFAULT_DEVICE_PATHS,
    DEFAULT_EXEC_PATHS,
    DEFAULT_READ_ONLY_PATHS,
    NOBODY,
)
from agent_runner.sandbox.probe import landlock_abi

ABI = landlock_abi()[0]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="proves the layer against a root process")


def in_child(fn: Callable[[], dict]) -> dict:
    """Run fn in a forked child and return its JSON-able result (or raise its error here)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            out = json.dumps({"ok": fn()})
        except BaseException:
            out = json.dumps({"error": traceback.format_exc()})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    reply = json.loads(data)
    if "error" in reply:
        raise AssertionError(reply["error"])
    return reply["ok"]


def errno_of(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def read(path: str) -> None:
    with open(path, "rb") as f:
        f.read(1)


def write(path: str) -> None:
    with open(path, "w") as f:
        f.write("x")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    shutil.copy("/bin/true", path / "t")
    (path / "t").chmod(0o755)
    return path


@root_only
@pytest.mark.skipif(ABI < 1, reason="kernel without Landlock")
def test_landlock_alone(ws: Path, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        abstract = f"\0sa-layer-{os.getpid()}"
        unix.bind(abstract)
        unix.listen(1)
        port, parent = tcp.getsockname()[1], os.getpid()

        def probe() -> dict:
            spec = landlock.LandlockSpec(
                exec_paths=DEFAULT_EXEC_PATHS,
                read_only_paths=DEFAULT_READ_ONLY_PATHS,
                device_paths=DEFAULT_DEVICE_PATHS,
                writable_paths=(str(ws),),
                denied_paths=DEFAULT_DENIED_PATHS,
            )
            ruleset = landlock.create_ruleset(spec)
            privileges.no_new_privs()
            landlock.restrict_self(ruleset.fd)
            return {
                "shadow": errno_of(lambda: read("/etc/shadow")),  # root reads it, but for the carve-out
                "passwd": errno_of(lambda: read("/etc/passwd")),
                "write_outside": errno_of(lambda: write(str(outside))),
                "write_inside": errno_of(lambda: write(str(ws / "in.txt"))),
                "exec_workspace": errno_of(lambda: subprocess.run([str(ws / "t")], check=False)),
                "exec_system": errno_of(lambda: subprocess.run(["/bin/true"], check=True)),
                "tcp": errno_of(lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close()),
                "abstract": errno_of(lambda: socket.socket(socket.AF_UNIX).connect(abstract)),
                "signal_parent": errno_of(lambda: os.kill(parent, 0)),
            }

        out = in_child(probe)
    assert out["shadow"] == errno.EACCES
    assert out["passwd"] == 0
    assert out["write_outside"] == errno.EACCES
    assert out["write_inside"] == 0
    assert out["exec_workspace"] == errno.EACCES
    assert out["exec_system"] == 0
    assert out["tcp"] == (errno.EACCES if ABI >= 4 else 0)
    assert out["abstract"] == (errno.EPERM if ABI >= 6 else 0)
    assert out["signal_parent"] == (errno.EPERM if ABI >= 6 else 0)
    assert not outside.exists()


@root_only
def test_seccomp_alone():
    def probe() -> dict:
        # A private mount namespace first: were the filter to let mount through, nothing leaks.
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        privileges.no_new_privs()
        seccomp.install(seccomp.prepare(allow_network=False, allow_unix=True))
        return {
            "mount": errno_of(lambda: sc.mount("tmpfs", "/mnt", "tmpfs", 0)),
            "unshare": errno_of(lambda: sc.unshare(sc.CLONE_NEWUTS)),
            "inet": errno_of(lambda: socket.socket(socket.AF_INET).close()),
            "unix": errno_of(lambda: socket.socket(socket.AF_UNIX).close()),
            "memfd": errno_of(lambda: os.memfd_create("x")),
            "ptrace": 0 if sc.libc.ptrace(0, 0, 0, 0) == 0 else ctypes.get_errno(),
            "fork": errno_of(lambda: os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)),
        }

    out = in_child(probe)
    assert out == {
        "mount": errno.EPERM,
        "unshare": errno.EPERM,
        "inet": errno.EPERM,
        "unix": 0,
        "memfd": errno.EPERM,
        "ptrace": errno.EPERM,
        "fork": 0,
    }


def test_seccomp_bpf_is_native_and_compact():
    bpf = seccomp.compile_bpf(seccomp.rules())
    assert len(bpf) % 8 == 0
    assert 20 < len(bpf) // 8 < 4096  # the kernel's limit is 4096 instructions


@root_only
def test_network_namespace_alone():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def probe() -> dict:
            sc.unshare(sc.CLONE_NEWNET)
            return {
                "connect": errno_of(lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close())
            }

        out = in_child(probe)
    assert out["connect"] == errno.ENETUNREACH  # a new namespace's loopback is down and empty


@root_only
def test_noexec_mount_alone(ws: Path):
    loader = next(
        (p for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1") if os.path.exists(p)), None
    )

    def probe() -> dict:
        sc.unshare(sc.CLONE_NEWNS)
        namespaces.setup_mounts(namespaces.MountPlan(binds=[namespaces.Bind(str(ws), str(ws))]))
        out = {"exec": errno_of(lambda: subprocess.run([str(ws / "t")], check=False))}
        if loader:
            out["loader"] = subprocess.run([loader, str(ws / "t")], capture_output=True).returncode
        return out

    out = in_child(probe)
    assert out["exec"] == errno.EACCES
    if loader:
        assert out["loader"] == 127  # "failed to map segment from shared object"


@root_only
def test_masks_hide_a_tree_but_keep_the_way_to_the_workspace(tmp_path: Path):
    secret_dir = tmp_path / "hidden"
    ws = secret_dir / "deep" / "ws"
    ws.mkdir(parents=True)
    (secret_dir / "secret.txt").write_text("SECRET")

    def probe() -> dict:
        sc.unshare(sc.CLONE_NEWNS)
        namespaces.setup_mounts(
            namespaces.MountPlan(binds=[namespaces.Bind(str(ws), str(ws))], masks=[str(secret_dir)])
        )
        return {
            "secret": errno_of(lambda: read(str(secret_dir / "secret.txt"))),
            "listing": sorted(os.listdir(secret_dir)),
            "ws": errno_of(lambda: write(str(ws / "f"))),
        }

    out = in_child(probe)
    assert out == {"secret": errno.ENOENT, "listing": ["deep"], "ws": 0}
    assert (ws / "f").read_text() == "x"


@root_only
def test_idmapped_workspace_is_the_sandbox_uids_and_stays_the_runners_on_disk(ws: Path):
    (ws / "runner-file").write_text("from the runner")
    userns = namespaces.make_idmap_userns(0, 0, NOBODY, NOBODY)
    try:

        def probe() -> dict:
            sc.unshare(sc.CLONE_NEWNS)
            namespaces.setup_mounts(namespaces.MountPlan(binds=[namespaces.Bind(str(ws), str(ws), userns)]))
            seen = os.stat(ws / "runner-file").st_uid
            os.chdir(ws)  # the path above it is 0700 root: nobody could not walk it
            privileges.Dropper(NOBODY, NOBODY).drop()
            write("runner-file")  # owned by "us" now
            write("command-file")
            return {"seen": seen, "uid": os.getuid(), "new_seen": os.stat("command-file").st_uid}

        out = in_child(probe)
    finally:
        os.close(userns)
    assert out == {"seen": NOBODY, "uid": NOBODY, "new_seen": NOBODY}
    assert (ws / "command-file").stat().st_uid == 0  # on disk: the runner's
    assert (ws / "runner-file").read_text() == "x"


@root_only
def test_dropping_capabilities_keeps_no_capability():
    def probe() -> dict:
        privileges.Dropper(None, None).drop()
        status = Path("/proc/self/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        return {k: fields[k].strip() for k in ("Uid", "CapEff", "CapPrm", "CapBnd", "CapAmb")}

    out = in_child(probe)
    assert out["Uid"].split()[0] == "0"
    assert {out[k] for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")} == {"0000000000000000"}


@root_only
def test_cgroup_kill_takes_the_whole_group(tmp_path: Path):
    support, reason = cgroups.setup(f"secure-agent-test-{os.getpid()}")
    if not (support.kill_dir or support.freezer_dir):
        pytest.skip(f"no cgroup kill here: {reason}")
    try:
        group = cgroups.CommandCgroup(
            support, "k", {"memory_bytes": 64 << 20, "max_processes": 8, "cpu_quota": 1.0}
        )
        fds = group.open_procs()
        pid = os.fork()
        if pid == 0:
            cgroups.CommandCgroup.join(fds)
            os.setsid()
            if os.fork() == 0:
                os.setsid()  # a grandchild in its own session: invisible to process-group kills
                os.execv("/bin/sleep", ["sleep", "100"])
            os.execv("/bin/sleep", ["sleep", "100"])
        for fd in fds:
            os.close(fd)
        deadline = time.monotonic() + 5
        while len(group.members()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        members = group.members()
        assert len(members) == 2
        assert group.kill()
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL
        for _ in range(200):
            if not group.members():
                break
            time.sleep(0.01)
        assert group.members() == []
        group.remove()
    finally:
        support.cleanup()
