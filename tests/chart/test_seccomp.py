"""seccomp.mode: localhost (node installer DaemonSet + ConfigMap), spo (SeccompProfile CR) or
runtimeDefault (nothing), and mcp-api and the default AgentProfile told the same profile."""

from __future__ import annotations

import json

import pytest
from chart_helpers import CHART, case_files, of_kind, one, render, render_case

PROFILE = json.loads((CHART / "files" / "seccomp" / "agent-runner.json").read_text())
MODES = {
    "seccomp-localhost": ("Localhost", "profiles/agent-runner.json"),
    "seccomp-spo": ("Localhost", "operator/secure-agent-runners/agent-runner.json"),
    "seccomp-runtimedefault": ("RuntimeDefault", None),
}


@pytest.mark.parametrize("case", list(MODES))
def test_mcp_api_and_profile_agree(case: str) -> None:
    kind, path = MODES[case]
    docs = render_case(case)
    env = one(docs, "ConfigMap", "settings")["data"]
    assert env["SECURE_AGENT_KUBERNETES__SECCOMP"] == kind
    sandbox = one(docs, "AgentProfile")["spec"]["sandbox"]
    assert sandbox["seccomp"] == kind
    if path:
        assert env["SECURE_AGENT_KUBERNETES__SECCOMP_LOCALHOST_PROFILE"] == path
        assert sandbox["seccompLocalhostProfile"] == path
    else:
        assert "seccompLocalhostProfile" not in sandbox


def test_localhost_installs_the_profile_on_every_node() -> None:
    docs = render_case("seccomp-localhost")
    cm = one(docs, "ConfigMap", "seccomp")
    assert json.loads(cm["data"]["agent-runner.json"]) == PROFILE
    ds = one(docs, "DaemonSet", "seccomp-installer")
    spec = ds["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["host-seccomp"]["hostPath"] == {
        "path": "/var/lib/kubelet/seccomp/profiles",
        "type": "DirectoryOrCreate",
    }
    assert vols["profile"]["configMap"]["name"] == cm["metadata"]["name"]
    script = spec["containers"][0]["command"][2]
    assert '"/host-seccomp/agent-runner.json"' in script and "os.replace" in script
    assert ds["spec"]["template"]["metadata"]["annotations"]["checksum/profile"]
    assert not of_kind(docs, "SeccompProfile")


def test_spo_profile_is_the_generated_one() -> None:
    docs = render_case("seccomp-spo")
    sp = one(docs, "SeccompProfile")
    assert sp["metadata"] == {**sp["metadata"], "name": "agent-runner", "namespace": "secure-agent-runners"}
    assert sp["spec"] == PROFILE
    assert not of_kind(docs, "DaemonSet")


def test_runtime_default_installs_nothing() -> None:
    docs = render_case("seccomp-runtimedefault")
    assert not of_kind(docs, "DaemonSet") and not of_kind(docs, "SeccompProfile")
    assert not [d for d in of_kind(docs, "ConfigMap") if "seccomp" in d["metadata"]["name"]]


def test_localhost_with_the_installer_disabled_installs_nothing_but_keeps_the_profile() -> None:
    """Nodes that already carry the profile (kind's extraMounts): no hostPath DaemonSet at all."""
    docs = render(case_files("seccomp-localhost"), ("seccomp.installer.enabled=false",))
    assert not of_kind(docs, "DaemonSet")
    assert not [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("seccomp")]
    assert not [d for d in of_kind(docs, "NetworkPolicy") if "installer" in d["metadata"]["name"]]
    env = one(docs, "ConfigMap", "settings")["data"]
    assert env["SECURE_AGENT_KUBERNETES__SECCOMP"] == "Localhost"
    assert env["SECURE_AGENT_KUBERNETES__SECCOMP_LOCALHOST_PROFILE"] == "profiles/agent-runner.json"
