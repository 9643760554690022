"""Every rendered object validates with kubernetes-validate --strict against each Kubernetes minor the
chart claims (1.29-1.34). kubernetes-validate knows only built-in kinds, so custom resources are
handled explicitly:

- AgentProfile: validated with jsonschema against the openAPIV3Schema of the chart's own CRD (crds/),
  and the CRD itself validates as an apiextensions.k8s.io/v1 CustomResourceDefinition.
- ServiceMonitor, PrometheusRule (prometheus-operator), SeccompProfile (Security Profiles Operator) and
  HTTPRoute (Gateway API): their CRDs belong to other projects and are not vendored here, so no schema
  is available offline. They are checked structurally instead: the fields the chart sets, in
  test_servicemonitor.py, test_prometheusrule.py, test_seccomp.py and test_httproute.py; here we only
  assert their apiVersion is the served, stable one.
"""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_helpers import CASES, CHART, KUBE_VERSIONS, render_case

FOREIGN_CRDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "SeccompProfile": "security-profiles-operator.x-k8s.io/v1beta1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}
CRD = yaml.safe_load((CHART / "crds" / "agentprofile.yaml").read_text())
AGENTPROFILE_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _openapi_to_jsonschema(node):
    """OpenAPI v3.0 `nullable` -> JSON Schema type lists; x-kubernetes-* extensions are ignored."""
    if isinstance(node, dict):
        out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_builtin_objects_validate_strictly(case: str, version: str) -> None:
    errors = []
    for doc in render_case(case):
        if doc["kind"] in FOREIGN_CRDS or doc["kind"] == "AgentProfile":
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crd_validates_strictly(version: str) -> None:
    kubernetes_validate.validate(CRD, version, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_agentprofile_matches_crd_schema(case: str) -> None:
    profiles = [d for d in render_case(case) if d["kind"] == "AgentProfile"]
    assert profiles
    validator = jsonschema.Draft7Validator(_openapi_to_jsonschema(AGENTPROFILE_SCHEMA))
    for doc in profiles:
        assert doc["apiVersion"] == f"{CRD['spec']['group']}/{CRD['spec']['versions'][0]['name']}"
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, errors


def test_crd_schema_check_is_not_vacuous() -> None:
    validator = jsonschema.Draft7Validator(_openapi_to_jsonschema(AGENTPROFILE_SCHEMA))
    bad = {"apiVersion": "secure-agent.dev/v1alpha1", "kind": "AgentProfile", "metadata": {"name": "x"},
           "spec": {"sandbox": {"seccomp": "Unconfined", "poolSize": -1}}}  # fmt: skip
    assert len(list(validator.iter_errors(bad))) >= 2


@pytest.mark.parametrize("case", CASES)
def test_foreign_custom_resources_use_stable_api_versions(case: str) -> None:
    for doc in render_case(case):
        if doc["kind"] in FOREIGN_CRDS:
            assert doc["apiVersion"] == FOREIGN_CRDS[doc["kind"]], doc["kind"]
