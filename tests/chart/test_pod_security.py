"""Properties of every pod the chart runs, in every ci scenario: the restricted securityContext,
probes and resources. The one root container (the seccomp installer, seccomp.mode=localhost) is
asserted separately: uid 0 but no capabilities, no escalation, read-only root, RuntimeDefault."""

from __future__ import annotations

import pytest
from chart_helpers import CASES, pod_specs, render_case

INSTALLER = "seccomp-installer"


def _pods(case: str):
    return pod_specs(render_case(case))


@pytest.mark.parametrize("case", CASES)
def test_every_container_is_restricted(case: str) -> None:
    for name, spec in _pods(case):
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            if INSTALLER not in name:
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, where


@pytest.mark.parametrize("case", CASES)
def test_every_pod_is_restricted(case: str) -> None:
    for name, spec in _pods(case):
        psc = spec["securityContext"]
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), name
        if INSTALLER in name:
            assert psc["runAsUser"] == 0 and psc["runAsNonRoot"] is False
            continue
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001, name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name


@pytest.mark.parametrize("case", CASES)
def test_only_mcp_api_mounts_a_service_account_token(case: str) -> None:
    for name, spec in _pods(case):
        expected = name.startswith("Deployment/") and name.endswith("-mcp-api")
        assert spec["automountServiceAccountToken"] is expected, name
        assert spec.get("enableServiceLinks") is False, name


@pytest.mark.parametrize("case", CASES)
def test_every_container_has_requests_and_limits(case: str) -> None:
    for name, spec in _pods(case):
        for c in spec["containers"]:
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), name
            assert {"cpu", "memory", "ephemeral-storage"} <= set(res["limits"]), name


@pytest.mark.parametrize("case", CASES)
def test_long_running_containers_have_probes(case: str) -> None:
    for name, spec in _pods(case):
        if name.startswith("Pod/"):  # the helm test pod runs once and exits
            continue
        for c in spec["containers"]:
            assert c.get("livenessProbe") and c.get("readinessProbe"), f"{name}/{c['name']}"


def test_the_installer_is_the_only_hostpath_and_only_in_localhost_mode() -> None:
    for case in CASES:
        hostpaths = [(n, v) for n, s in _pods(case) for v in s.get("volumes", []) if "hostPath" in v]
        mode_localhost = any(INSTALLER in n for n, _ in _pods(case))
        if mode_localhost:
            assert len(hostpaths) == 1 and INSTALLER in hostpaths[0][0]
            assert hostpaths[0][1]["hostPath"]["path"] == "/var/lib/kubelet/seccomp/profiles"
        else:
            assert not hostpaths
