"""The container proof of the runner pod (issue #5).

The pod is the one the Kubernetes backend asks for: `runner_pod()` of mcp_api.runners.kubernetes.pods.
`podman_run()` renders its constraints (securityContext, resources, volumes, command) as podman
arguments, with the generated seccomp profile (agent_runner.sandbox.seccomp_profile, committed as
policies/seccomp/agent-runner.json) as the Localhost profile. The agent-runner image is started with
exactly those arguments, then:

- mcp-api's own client (agent_runner.client.RunnerClient over TCP, bearer token from the mounted
  Secret) gets health, the sandbox status (confined: Landlock + seccomp; namespaces and cgroups off,
  as the runner is uid 10001 without capabilities) and runs commands;
- a command run by the runner cannot read the token (Landlock), write outside the workspace and tmp,
  open inet sockets, mount, or execute files it wrote (workspace or /tmp);
- inside the container (podman exec: the container's constraints without the runner's own sandbox),
  syscalls the pod profile denies fail with EPERM (clone3 with ENOSYS) while the same image with
  seccomp unconfined performs them; the root filesystem is read-only (EROFS); a file in the noexec
  /tmp or workspace cannot be executed (126); all capabilities are gone and no_new_privs is set;
- the memory limit OOM-kills a process that outgrows it (137), a runner command too (SIGKILL), and
  the runner survives both; the pids limit stops a fork loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from agent_runner.client import RunnerClient
from agent_runner.sandbox.seccomp_profile import render
from images_helpers import ENGINE_CWD, ROOT, engine_env, free_port, needs_engine, podman, unique_name
from mcp_api.runners.kubernetes import pods
from mcp_api.runners.kubernetes.podman import podman_run, write_secret

# The first test to use `images` pays for the session build (every step, ~1-3 min here).
pytestmark = [needs_engine, pytest.mark.integration, pytest.mark.timeout(900)]

MEMORY_LIMIT = "256Mi"
PIDS_LIMIT = 256
UID = pods.RUNNER_UID

# Syscalls the pod's seccomp profile denies, called directly (ctypes) so nothing in Python's own
# wrappers can mask the answer. Prints {name: "ok" | errno name}.
SYSCALL_PROBE = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(fn):
    try:
        r = fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok" if r is None or r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def sys_(nr, *args):
    return lambda: libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
print(json.dumps({
    "memfd_create": call(lambda: os.close(os.memfd_create("probe"))),
    "unshare_newuser": call(sys_(272, 0x10000000)),
    "personality_linux32": call(sys_(135, 0x0008)),
    "clone3": call(sys_(435, 0, 0)),
    "socket_ax25": call(lambda: socket.socket(3, 1).close()),
}))
"""
PROFILE_DENIES = {
    "memfd_create": "EPERM", "unshare_newuser": "EPERM", "personality_linux32": "EPERM",
    "clone3": "ENOSYS", "socket_ax25": "EPERM",
}  # fmt: skip

# Filesystem and process facts of whoever runs it. Prints one JSON object.
FS_PROBE = r"""
import errno, json, os, subprocess
def attempt(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
tmp = os.environ.get("TMPDIR", "/tmp")
def write(path):
    return attempt(lambda: open(path, "w").close())
def script(path):
    try:
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho ran\n")
        os.chmod(path, 0o755)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return subprocess.run(["/bin/sh", "-c", path], capture_output=True).returncode
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({
    "uid": status["Uid"].split(), "gid": status["Gid"].split(), "groups": status["Groups"].split(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "write_root": write("/probe"), "write_usr": write("/usr/probe"), "write_etc": write("/etc/probe"),
    "write_workspace": write("/workspace/probe.txt"), "write_tmp": write(tmp + "/probe.txt"),
    "exec_tmp": script(tmp + "/probe.sh"), "exec_workspace": script("/workspace/probe.sh"),
    "read_token": attempt(lambda: open(os.environ.get("TOKEN_PATH", "/var/run/secrets/agent-runner/token")).read()),
    "inet_socket": attempt(lambda: __import__("socket").socket().close()),
}))
"""


@pytest.fixture(scope="module")
def runner(images, tmp_path_factory):
    """The runner pod, rendered for podman and started; yields what the tests need."""
    work = tmp_path_factory.mktemp("runner-pod")
    name = unique_name("runner")
    options = pods.PodOptions(
        image=images.tags["agent-runner"], image_pull_policy="Never", memory_limit=MEMORY_LIMIT
    )
    pod = pods.runner_pod(name, f"{name}-token", options, tenant="acme", workspace="main")
    token = secrets.token_urlsafe(32)
    secret = pods.token_secret(f"{name}-token", token, options)

    # The node side of the pod: its seccomp profile (generated), its Secret and its workspace volume.
    seccomp_root = work / "seccomp"
    profile = seccomp_root / options.seccomp_localhost_profile
    profile.parent.mkdir(parents=True)
    profile.write_text(render())
    assert profile.read_text() == (ROOT / "policies" / "seccomp" / "agent-runner.json").read_text()
    secret_dir = write_secret(secret, work / "secret", pod=pod)
    workspace = work / "workspace"
    workspace.mkdir()
    os.chown(workspace, UID, pod["spec"]["securityContext"]["fsGroup"])
    workspace.chmod(0o770)

    port = free_port()
    run = podman_run(
        pod,
        seccomp_root=seccomp_root,
        volume_sources={"workspace": str(workspace)},
        secret_dirs={f"{name}-token": str(secret_dir)},
        publish={options.port: port},
        pids_limit=PIDS_LIMIT,
        name=name,
    )
    started = subprocess.run(
        run.argv, env=engine_env(), capture_output=True, text=True, timeout=120, cwd=ENGINE_CWD
    )
    try:
        assert started.returncode == 0, started.stderr
        client_args = {"token": token, "base_url": f"http://127.0.0.1:{port}", "timeout": 30.0}

        async def ready():
            async with RunnerClient(**client_args) as client:
                return await client.wait_ready(timeout=30)

        try:
            health = asyncio.run(ready())
        except Exception:
            logs = podman("logs", name, check=False)
            raise AssertionError(
                f"runner did not come up: {logs.stdout[-3000:]}{logs.stderr[-3000:]}"
            ) from None
        yield {"name": name, "pod": pod, "run": run, "client_args": client_args, "health": health,
               "workspace": workspace, "profile": profile}  # fmt: skip
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def call(runner, op: str, request: dict, timeout: float = 60):
    async def go():
        async with RunnerClient(**runner["client_args"]) as client:
            return await client.call(op, request, request_timeout=timeout)

    return asyncio.run(go())


def run_command(runner, argv: list[str], timeout_s: float = 30):
    result = call(runner, "exec/run", {"argv": argv, "timeout_s": timeout_s}, timeout=timeout_s + 30)
    assert result.status == "finished"
    return result.result


def test_container_has_the_pod_constraints(runner):
    """What podman applied is what the pod spec says (read back from the container, not our argv)."""
    host = json.loads(podman("inspect", runner["name"]).stdout)[0]["HostConfig"]
    container = runner["pod"]["spec"]["containers"][0]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 256 * 2**20 and host["MemorySwap"] == 256 * 2**20
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["NanoCpus"] == 1_000_000_000
    # Every capability podman would grant is dropped (CapEff and CapBnd are 0: see below).
    assert {c.upper().removeprefix("CAP_") for c in host["CapDrop"]} >= {
        "CHOWN",
        "DAC_OVERRIDE",
        "SETUID",
        "SETGID",
    }
    assert not host.get("CapAdd")
    assert "no-new-privileges" in " ".join(host["SecurityOpt"])
    assert f"seccomp={runner['profile']}" in host["SecurityOpt"]
    tmpfs = host["Tmpfs"]["/tmp"]
    assert {"noexec", "nosuid", "nodev", "size=67108864"} <= set(tmpfs.split(","))
    binds = {b.split(":")[1]: b.split(":")[2] for b in host["Binds"]}
    assert "ro" in binds[pods.TOKEN_DIR].split(",")
    assert "noexec" in binds[pods.WORKSPACE_DIR].split(",")
    health = runner["health"]
    assert health.workspace_id == "acme/main" and health.resolver == "openat2"
    assert container["args"][container["args"].index("--port") + 1] == "8700"


def test_runner_sandbox_inside_the_container(runner):
    """The runner is confined enough to run commands without any override: Landlock and seccomp are
    on; namespaces, cgroups and the uid drop are off (uid 10001 without capabilities), as reported."""
    status = call(runner, "sandbox/status", {})
    assert status.minimum_ok is True and status.unconfined is False
    controls = status.controls
    assert controls["mode"] == "confined"
    assert controls["landlock"].startswith("abi") and controls["seccomp"] == "on"
    assert controls["no_new_privs"] == "on" and controls["capabilities"] == "none held"
    assert controls["netns"].startswith("off") and controls["cgroup"].startswith("off")


def test_commands_run_by_the_runner_are_confined(runner):
    outcome = run_command(runner, ["python3", "-c", FS_PROBE])
    assert outcome.exit_code == 0, outcome.stderr
    facts = json.loads(outcome.stdout)
    assert facts["uid"] == [str(UID)] * 4
    assert facts["cap_eff"] == "0000000000000000" and facts["no_new_privs"] == "1" and facts["seccomp"] == "2"
    # The token the runner authenticates with is out of its commands' reach (same uid: Landlock).
    assert facts["read_token"] == "EACCES"
    assert facts["write_workspace"] == "ok" and facts["write_tmp"] == "ok"
    for path in ("write_root", "write_usr", "write_etc"):
        assert facts[path] in ("EROFS", "EACCES"), (path, facts[path])
    assert facts["exec_workspace"] == 126 and facts["exec_tmp"] == 126
    assert facts["inet_socket"] == "EPERM"
    syscalls = json.loads(run_command(runner, ["python3", "-c", SYSCALL_PROBE]).stdout)
    assert syscalls == PROFILE_DENIES, syscalls
    assert run_command(runner, ["cat", "/workspace/probe.txt"]).exit_code == 0


def test_container_constraints_without_the_runner(runner, images):
    """podman exec: the container's own constraints (profile, caps, read-only root, noexec mounts)."""
    facts = json.loads(podman("exec", runner["name"], "python3", "-c", FS_PROBE).stdout)
    assert facts["uid"] == [str(UID)] * 4 and facts["gid"] == [str(UID)] * 4
    assert facts["cap_eff"] == "0000000000000000" and facts["cap_bnd"] == "0000000000000000"
    assert facts["no_new_privs"] == "1" and facts["seccomp"] == "2"
    assert facts["write_root"] == facts["write_usr"] == facts["write_etc"] == "EROFS"
    assert facts["write_workspace"] == "ok" and facts["write_tmp"] == "ok"
    assert facts["exec_tmp"] == 126 and facts["exec_workspace"] == 126  # noexec mounts
    assert facts["read_token"] == "ok"  # the runner itself needs it; its commands cannot (above)
    denied = json.loads(podman("exec", runner["name"], "python3", "-c", SYSCALL_PROBE).stdout)
    assert denied == PROFILE_DENIES, denied
    # Control: the same image, user and flags but seccomp unconfined performs those syscalls, so the
    # EPERMs above come from the pod's profile.
    control = podman(
        "run", "--rm", "--user", f"{UID}:{UID}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--security-opt", "seccomp=unconfined", "--entrypoint", "python3", images.tags["agent-runner"],
        "-c", SYSCALL_PROBE,
    )  # fmt: skip
    allowed = json.loads(control.stdout.strip().splitlines()[-1])
    assert allowed["memfd_create"] == allowed["unshare_newuser"] == allowed["personality_linux32"] == "ok", (
        allowed
    )
    assert allowed["clone3"] != "ENOSYS" and allowed["socket_ax25"] != "EPERM", allowed


def test_memory_and_pids_limits(runner):
    hog = "b = b'x' * (400 << 20); print('survived')"
    # A process in the container that outgrows the pod's memory limit is OOM-killed...
    killed = podman("exec", runner["name"], "python3", "-c", hog, check=False, timeout=120)
    assert killed.returncode == 137, (killed.returncode, killed.stdout, killed.stderr)
    # ...and so is a command the runner starts, which the runner reports; the runner lives on.
    outcome = run_command(runner, ["python3", "-c", hog], timeout_s=60)
    assert outcome.exit_code is None and outcome.signal == "SIGKILL", outcome
    # Without a cgroup of its own (uid 10001, no capabilities) the runner cannot tell the container's
    # OOM kill from another SIGKILL, so `limits_hit` does not name "memory" here (docs/images.md).
    assert "survived" not in outcome.stdout
    oom = json.loads(podman("inspect", runner["name"]).stdout)[0]["State"]
    assert oom["Status"] == "running", oom
    # A fork loop stops at the pids limit (the runner's own threads count too).
    forks = (
        "import os, time\n"
        "pids = []\n"
        "try:\n"
        f"    for _ in range({PIDS_LIMIT * 2}):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        pids.append(pid)\n"
        "except BlockingIOError:\n"
        "    pass\n"
        "print(len(pids))\n"
        "for pid in pids: os.kill(pid, 9)\n"
        "for pid in pids: os.waitpid(pid, 0)\n"
    )
    made = int(podman("exec", runner["name"], "python3", "-c", forks, timeout=120).stdout.strip())
    assert 0 < made < PIDS_LIMIT, made
    assert asyncio.run(_health(runner)).workspace_id == "acme/main"


async def _health(runner):
    async with RunnerClient(**runner["client_args"]) as client:
        return await client.health()


def test_runner_image_healthcheck(runner):
    check = podman("healthcheck", "run", runner["name"], check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert Path(runner["workspace"], "probe.txt").stat().st_uid == UID
