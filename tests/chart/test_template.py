"""`helm template` renders the default values and every ci/*-values.yaml into the expected objects."""

from __future__ import annotations

import pytest
import yaml
from chart_helpers import CASES, CHART, NAMESPACE, helm, render_case

ALWAYS = {
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
    "AgentProfile",
    "Pod",
}
EXPECTED = {
    "default": ALWAYS | {"Secret", "DaemonSet"},
    "minimal": ALWAYS | {"Secret"},
    "production": ALWAYS
    | {
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "Namespace",
        "DaemonSet",
    },
    "seccomp-localhost": ALWAYS | {"Secret", "DaemonSet"},
    "seccomp-spo": ALWAYS | {"Secret", "SeccompProfile", "Namespace"},
    "seccomp-runtimedefault": ALWAYS | {"Secret"},
    "gateway-api": ALWAYS | {"Secret", "HTTPRoute"},
}


@pytest.mark.parametrize("case", CASES)
def test_renders_expected_kinds(case: str) -> None:
    docs = render_case(case)
    kinds = {d["kind"] for d in docs}
    assert kinds == EXPECTED[case], (
        f"{case}: extra {kinds - EXPECTED[case]}, missing {EXPECTED[case] - kinds}"
    )


@pytest.mark.parametrize("case", CASES)
def test_every_object_is_named_labelled_and_namespaced(case: str) -> None:
    for doc in render_case(case):
        meta = doc["metadata"]
        assert meta.get("name"), doc
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", (doc["kind"], meta["name"])
        assert labels.get("app.kubernetes.io/part-of") == "secure-agent", (doc["kind"], meta["name"])
        if doc["kind"] != "Namespace":
            assert meta.get("namespace"), (doc["kind"], meta["name"])


@pytest.mark.parametrize("case", CASES)
def test_names_are_unique(case: str) -> None:
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in render_case(case)]
    assert len(keys) == len(set(keys))


def test_default_install_stays_in_the_release_namespace() -> None:
    assert {d["metadata"]["namespace"] for d in render_case("default")} == {NAMESPACE}


def test_chart_metadata_claims_supported_versions() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.29.0-0 <1.35.0-0"
    assert chart["appVersion"]
    assert (
        chart["annotations"]["secure-agent.dev/supported-kubernetes"] == "1.29, 1.30, 1.31, 1.32, 1.33, 1.34"
    )


@pytest.mark.parametrize(
    ("version", "ok"), [("1.28.9", False), ("1.29.0", True), ("1.34.5", True), ("1.35.0", False)]
)
def test_kube_version_range_is_enforced(version: str, ok: bool) -> None:
    result = helm("template", "sa", str(CHART), "--kube-version", version, check=False)
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "chart requires kubeVersion: >=1.29.0-0 <1.35.0-0" in result.stderr
