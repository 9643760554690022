"""The pod's seccomp profile is generated from the same rules the runner applies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent_runner.sandbox import seccomp
from agent_runner.sandbox.seccomp_profile import main, profile, render

REPO = Path(__file__).resolve().parents[4]
COMMITTED = REPO / "policies" / "seccomp" / "agent-runner.json"
REGENERATE = "python -m agent_runner.sandbox.seccomp_profile > policies/seccomp/agent-runner.json"


def test_committed_profile_is_the_generated_one():
    assert COMMITTED.exists(), f"missing {COMMITTED}; run: {REGENERATE}"
    assert COMMITTED.read_text() == render(), (
        f"policies/seccomp/agent-runner.json is stale; run: {REGENERATE}"
    )


def test_module_entry_point_prints_it():
    out = subprocess.run(
        [sys.executable, "-m", "agent_runner.sandbox.seccomp_profile"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == render()


def test_profile_shape():
    data = json.loads(render())
    assert data["defaultAction"] == "SCMP_ACT_ALLOW"
    assert data["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]
    denied = {name for rule in data["syscalls"] if "args" not in rule for name in rule["names"]}
    assert {
        "ptrace",
        "mount",
        "unshare",
        "bpf",
        "io_uring_setup",
        "keyctl",
        "memfd_create",
        "kexec_load",
    } <= denied
    clone3 = next(rule for rule in data["syscalls"] if rule["names"] == ["clone3"])
    assert clone3["errnoRet"] == 38
    clone_flags = [r["args"][0] for r in data["syscalls"] if r["names"] == ["clone"]]
    assert {a["op"] for a in clone_flags} == {"SCMP_CMP_MASKED_EQ"}
    assert all(a["value"] == a["valueTwo"] for a in clone_flags)
    families = {
        r["args"][0]["value"]
        for r in data["syscalls"]
        if r["names"] == ["socket"] and r["args"][0]["op"] == "SCMP_CMP_EQ"
    }
    # The pod profile leaves what the runner itself needs: AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
    assert {1, 2, 10, 16}.isdisjoint(families) and {17, 40} <= families


def test_command_profile_refuses_inet(capsys):
    main(["--commands"])
    data = json.loads(capsys.readouterr().out)
    families = {
        r["args"][0]["value"]
        for r in data["syscalls"]
        if r["names"] == ["socket"] and r["args"][0]["op"] == "SCMP_CMP_EQ"
    }
    assert {2, 10} <= families
    assert profile(allow_network=False)["syscalls"] == data["syscalls"]


def test_every_rule_compiles():
    for network in (True, False):
        for unix in (True, False):
            assert seccomp.compile_bpf(seccomp.rules(network, unix))
