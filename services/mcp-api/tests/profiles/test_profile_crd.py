"""The CRD is generated from the model: committed file up to date, valid, structural; examples validate."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from mcp_api.profiles import crd
from mcp_api.profiles.model import AgentProfile

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = sorted((ROOT / "k8s" / "examples").glob("agentprofile-*.yaml"))
LOCAL = sorted((ROOT / "config" / "profiles").glob("*.yaml"))


def test_committed_crd_matches_generated():
    outputs = crd.default_outputs()
    assert outputs[0] == ROOT / "k8s" / "crds" / "agentprofile.yaml"
    for path in outputs:  # the chart's copy too, once charts/secure-agent exists
        assert path.exists(), f"{path} missing: run python -m mcp_api.profiles.crd"
        assert path.read_text() == crd.render_crd(), f"{path} is stale: run python -m mcp_api.profiles.crd"
    assert crd.main(["--check"]) == 0


def test_check_mode_reports_drift(tmp_path):
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render_crd().replace("poolSize", "poolsize"))
    assert crd.main(["--check", "-o", str(stale)]) == 1
    assert crd.main(["-o", str(stale)]) == 0 and crd.main(["--check", "-o", str(stale)]) == 0


def test_crd_passes_kubernetes_validate_strict():
    doc = yaml.safe_load((ROOT / "k8s" / "crds" / "agentprofile.yaml").read_text())
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(doc, version, strict=True)


def _walk(node, path="$"):
    yield path, node
    for key in ("properties", "additionalProperties"):
        value = node.get(key)
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                yield from _walk(sub, f"{path}.{name}")
        elif isinstance(value, dict):
            yield from _walk(value, f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


def test_schema_is_structural():
    schema = crd.open_api_schema()
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text and "oneOf" not in text
    assert "title" not in text.split() and "default:" not in text and "uniqueItems" not in text
    for path, node in _walk(schema):
        has_type = "type" in node or node.get("x-kubernetes-preserve-unknown-fields") is True
        assert has_type, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path
    preserved = [p for p, n in _walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert sorted(preserved) == [
        "$.spec.models.roles.*.params",
        "$.spec.sandbox.limits.use_cgroups",
        "$.spec.sandbox.limits.use_namespaces",
    ]


def test_crd_shape():
    doc = crd.build_crd()
    version = doc["spec"]["versions"][0]
    assert doc["metadata"]["name"] == "agentprofiles.secure-agent.dev"
    assert doc["spec"]["scope"] == "Namespaced" and version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Ready", "Invalid", "Pool", "Age"}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status) >= {"conditions", "observedGeneration"}
    assert set(status["conditions"]["items"]["properties"]) >= {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


@pytest.mark.parametrize("path", EXAMPLES + LOCAL, ids=lambda p: p.name)
def test_examples_validate_against_crd_schema_and_model(path):
    doc = yaml.safe_load(path.read_text())
    jsonschema.validate(doc, crd.open_api_schema(), cls=jsonschema.Draft4Validator)
    AgentProfile.model_validate(doc)


def test_crd_schema_rejects_what_the_model_rejects():
    schema = crd.open_api_schema()
    base = yaml.safe_load(EXAMPLES[0].read_text())
    for bad in (
        {"seccomp": "Unconfined"},
        {"poolSize": -1},
        {"limits": {"use_namespaces": "sometimes"}},
        {"limits": {"max_processes": "many"}},
        {"runtimeClassName": 7},
        {"activeDeadlineSeconds": 10},
    ):
        doc = {**base, "spec": {**base["spec"], "sandbox": {**base["spec"]["sandbox"], **bad}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema, cls=jsonschema.Draft4Validator)
    assert EXAMPLES, "no k8s/examples/agentprofile-*.yaml"
