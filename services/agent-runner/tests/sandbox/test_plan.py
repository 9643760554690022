"""Which controls apply: the pure decision, the refusal without the minimum, and this machine."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from agent_runner.sandbox.plan import Facts, decide
from agent_runner.sandbox.policy import SandboxPolicy
from agent_runner.sandbox.probe import landlock_abi
from agent_runner.sandbox.spawn import (
    SandboxUnavailable,
    active_controls,
    check_plan,
    execute,
    sandbox_status,
    validate,
)

pytestmark = pytest.mark.anyio

ROOT_FACTS = Facts(
    euid=0,
    sys_admin=True,
    landlock_abi=7,
    landlock_reason="available",
    seccomp=True,
    seccomp_reason="seccomp filter mode available",
    namespaces=True,
    namespaces_reason="",
    idmap=True,
    idmap_reason="",
    cgroup={"cgroup": "v1 (memory,pids,cpu)", "cgroup_kill": "v2 cgroup.kill"},
    cgroup_usable=True,
    cgroup_reason="",
    workspace_owner=(0, 0),
    tmp_owner=(0, 0),
)
UNPRIVILEGED = replace(
    ROOT_FACTS, euid=10001, sys_admin=False, namespaces=False, idmap=False, cgroup={}, cgroup_usable=False
)
BARE = replace(
    UNPRIVILEGED, landlock_abi=0, landlock_reason="Landlock is disabled", seccomp=False, seccomp_reason="no"
)


@pytest.fixture
def policy(tmp_path: Path) -> SandboxPolicy:
    (tmp_path / "ws").mkdir()
    return SandboxPolicy(workspace=tmp_path / "ws", tmp_dir=tmp_path / "tmp")


def test_root_gets_everything(policy: SandboxPolicy):
    plan = decide(policy.to_wire(), ROOT_FACTS)
    assert plan.minimum_ok and not plan.unconfined and not plan.errors
    assert (plan.namespaces, plan.netns, plan.idmap, plan.cgroups) == (True, True, True, True)
    assert (plan.uid, plan.gid) == (65534, 65534)
    assert "/tmp" in plan.masks and "/run" in plan.masks
    assert plan.allow_unix
    c = plan.controls
    assert c["landlock"] == "abi7" and c["seccomp"] == "on" and c["netns"] == "on"
    assert c["noexec_mount"] == "on" and c["uid_drop"].startswith("on (65534:65534")
    assert c["cgroup"] == "v1 (memory,pids,cpu)" and c["mode"] == "confined"


def test_unprivileged_runner_keeps_landlock_and_seccomp(policy: SandboxPolicy):
    plan = decide(policy.to_wire(), UNPRIVILEGED)
    assert plan.minimum_ok and not plan.namespaces and not plan.cgroups
    assert plan.uid is None and plan.nproc_uid == 10001
    assert not plan.allow_unix  # no mount namespace hides the host's socket files
    assert plan.controls["netns"].startswith("off (runner is not root")
    assert plan.controls["tree_kill"] == "subreaper descendant scan"


def test_network_allowed_turns_off_netns_and_landlock_tcp(policy: SandboxPolicy):
    wire = policy.model_copy(update={"allow_network": True}).to_wire()
    plan = decide(wire, ROOT_FACTS)
    assert plan.namespaces and not plan.netns and "/run" not in plan.masks
    assert plan.controls["landlock_net"] == "off (network allowed)"


def test_old_kernel_reports_what_it_lacks(policy: SandboxPolicy):
    plan = decide(policy.to_wire(), replace(UNPRIVILEGED, landlock_abi=3))
    assert plan.minimum_ok
    assert plan.controls["landlock_net"] == "unsupported (abi3 < 4)"
    assert plan.controls["landlock_scope"] == "unsupported (abi3 < 6)"


def test_without_the_minimum_commands_are_refused(policy: SandboxPolicy):
    plan = decide(policy.to_wire(), BARE)
    assert not plan.minimum_ok and not plan.unconfined
    assert plan.controls["mode"].startswith("refused")
    with pytest.raises(SandboxUnavailable, match="allow_unconfined"):
        check_plan(policy, plan.as_dict())


def test_the_override_is_explicit_and_reported(policy: SandboxPolicy):
    loud = policy.model_copy(update={"allow_unconfined": True})
    plan = decide(loud.to_wire(), BARE)
    assert plan.unconfined
    assert plan.controls["mode"] == "UNCONFINED (allow_unconfined override)"
    check_plan(loud, plan.as_dict())  # no error


def test_namespaces_alone_are_enough(policy: SandboxPolicy):
    plan = decide(policy.to_wire(), replace(ROOT_FACTS, landlock_abi=0, seccomp=False))
    assert plan.minimum_ok


def test_demanded_controls_that_are_missing_are_errors(policy: SandboxPolicy):
    demanding = policy.model_copy(update={"use_namespaces": True, "use_cgroups": True}).to_wire()
    plan = decide(demanding, UNPRIVILEGED)
    assert any("use_namespaces=true" in e for e in plan.errors)
    assert any("use_cgroups=true" in e for e in plan.errors)
    with pytest.raises(SandboxUnavailable, match="use_namespaces=true"):
        check_plan(policy, plan.as_dict())


def test_uid_drop_without_idmap_needs_a_workspace_owned_by_that_uid(policy: SandboxPolicy):
    no_ns = policy.model_copy(update={"use_namespaces": False}).to_wire()
    kept = decide(no_ns, ROOT_FACTS)
    assert kept.uid is None and kept.drop_caps
    assert kept.controls["uid_drop"].startswith("off (no mount namespace")
    owned = decide(no_ns, replace(ROOT_FACTS, workspace_owner=(65534, 65534), tmp_owner=(65534, 65534)))
    assert owned.uid == 65534


class _RefusingServer:
    async def plan_async(self, policy):
        return decide(policy.to_wire(), BARE).as_dict()


async def test_run_command_refuses_without_the_minimum(policy: SandboxPolicy):
    request = validate(policy, ["true"])
    with pytest.raises(SandboxUnavailable, match="neither Landlock and seccomp nor namespaces"):
        await execute(policy, request, server=_RefusingServer())  # type: ignore[arg-type]


@pytest.mark.skipif(
    os.geteuid() != 0 or landlock_abi()[0] < 6, reason="describes a root runner on Linux 6.12+"
)
def test_active_controls_on_this_machine(policy: SandboxPolicy):
    controls = active_controls(policy)
    assert controls["mode"] == "confined"
    assert controls["landlock"] == f"abi{landlock_abi()[0]}"
    assert controls["seccomp"] == "on"
    assert controls["netns"] == "on"
    assert controls["noexec_mount"] == "on"
    assert controls["uid_drop"].startswith("on (65534:65534")
    assert controls["no_new_privs"] == "on"
    status = sandbox_status(policy)
    assert status["controls"] == controls
    assert status["minimum_ok"] and not status["unconfined"] and status["errors"] == []
    minimal = active_controls(policy.model_copy(update={"use_namespaces": False, "use_cgroups": False}))
    assert minimal["netns"] == "off (disabled by policy)"
    assert minimal["cgroup"] == "off"
    assert minimal["mode"] == "confined"
