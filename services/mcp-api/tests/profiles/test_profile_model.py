"""AgentProfile model: defaults mirror the settings, bad specs fail with named fields."""

from __future__ import annotations

import json

import pytest
from mcp_api.agent.config import AgentSettings, SupervisorPolicy
from mcp_api.profiles.model import AgentProfile, AgentProfileSpec, format_validation_error
from mcp_api.profiles.registry import ProfileRegistry
from mcp_api.security.config import RateLimitSettings
from mcp_api.settings import SandboxSettings
from pydantic import ValidationError


def test_defaults_come_from_the_settings_models():
    spec = AgentProfileSpec()
    assert spec.sandbox.limits == SandboxSettings()
    assert spec.policy == SupervisorPolicy()
    assert spec.quotas.agent_max_steps == AgentSettings().max_steps
    assert spec.quotas.max_runners == RateLimitSettings().max_runners_per_tenant
    # Pod fields inherit the replica's `kubernetes` settings unless the profile sets them.
    assert spec.sandbox.seccomp is None and spec.sandbox.egress == []
    assert spec.sandbox.kubernetes_overrides() == {}
    # The mirrored quota keeps the source's bounds, not just its default.
    with pytest.raises(ValidationError):
        AgentProfileSpec.model_validate({"quotas": {"agentMaxSteps": 501}})


def test_camel_case_document_round_trips():
    doc = {
        "apiVersion": "secure-agent.dev/v1alpha1",
        "kind": "AgentProfile",
        "metadata": {"name": "p", "generation": 3},
        "spec": {
            "tenants": ["acme"],
            "sandbox": {
                "runtimeClassName": "gvisor",
                "seccomp": "RuntimeDefault",
                "poolSize": 2,
                "egress": [{"cidr": "10.0.0.0/8", "ports": [443]}],
                "limits": {"timeout_s": 5, "use_namespaces": "auto"},
            },
            "models": {"roles": {"default": {"provider": "oai", "model": "m", "params": {"temperature": 0}}}},
        },
    }
    profile = AgentProfile.model_validate(doc)
    assert profile.spec.sandbox.runtime_class_name == "gvisor"
    assert profile.spec.sandbox.limits.timeout_s == 5
    dumped = profile.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["sandbox"]["poolSize"] == 2
    assert AgentProfile.model_validate(dumped) == profile


def test_kubernetes_overrides_name_real_settings_fields():
    import mcp_api.settings as settings_module

    sandbox = AgentProfileSpec.model_validate(
        {
            "sandbox": {
                "image": "reg/runner:2",
                "runtimeClassName": "gvisor",
                "seccomp": "RuntimeDefault",
                "seccompLocalhostProfile": "p.json",
                "poolSize": 3,
                "activeDeadlineSeconds": 600,
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "1Gi"},
                },
            }
        }
    ).sandbox
    overrides = sandbox.kubernetes_overrides()
    assert overrides["warm_pool_size"] == 3 and overrides["cpu_limit"] == "2" and len(overrides) == 11
    kube = getattr(settings_module, "KubernetesSettings", None)
    if kube is None:
        pytest.skip("no KubernetesSettings in settings.py yet")
    assert set(overrides) <= set(kube.model_fields), set(overrides) - set(kube.model_fields)
    merged = kube().model_copy(update=overrides)
    assert (merged.image, merged.seccomp, merged.active_deadline_s) == ("reg/runner:2", "RuntimeDefault", 600)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"sandbox": {"seccomp": "Unconfined"}}, "spec.sandbox.seccomp"),
        ({"sandbox": {"egress": [{"cidr": "10.0.0.1/8"}]}}, "spec.sandbox.egress.0.cidr"),
        ({"sandbox": {"egress": [{"cidr": "10.0.0.0/8", "ports": [70000]}]}}, "spec.sandbox.egress.0.ports"),
        ({"sandbox": {"poolSize": -1}}, "spec.sandbox.poolSize"),
        ({"sandbox": {"resources": {"limits": {"gpu": "1"}}}}, "spec.sandbox.resources.limits"),
        ({"sandbox": {"limits": {"timeout_s": 0}}}, "spec.sandbox.limits.timeout_s"),
        ({"sandbox": {"limits": {"timeout_s": 900, "max_timeout_s": 60}}}, "spec.sandbox.limits"),
        ({"sandboxx": {}}, "spec.sandboxx"),
        ({"quotas": {"maxRunners": -1}}, "spec.quotas.maxRunners"),
    ],
)
def test_invalid_specs_name_the_field(spec, where):
    with pytest.raises(ValidationError) as info:
        AgentProfileSpec.model_validate(spec)
    assert where in format_validation_error(info.value)


def test_registry_keeps_last_good_and_picks_profile_per_tenant():
    registry = ProfileRegistry()
    assert registry.effective("anyone").name == "<built-in>"
    assert registry.apply("default", {"sandbox": {"poolSize": 1}}, generation=1).valid
    assert registry.apply("acme", {"tenants": ["acme"], "sandbox": {"poolSize": 3}}, generation=1).valid
    assert registry.effective("acme").spec.sandbox.pool_size == 3
    assert registry.effective("other").name == "default"

    bad = registry.apply("acme", {"tenants": ["acme"], "sandbox": {"poolSize": "many"}}, generation=2)
    assert not bad.valid and bad.reason == "ValidationFailed" and "spec.sandbox.poolSize" in bad.message
    effective = registry.effective("acme")
    assert (effective.name, effective.spec.sandbox.pool_size, effective.generation) == ("acme", 3, 1)
    assert "acme" in registry.problems()
    summary = {row["name"]: row for row in registry.snapshot()}
    assert summary["acme"]["in_force"] and summary["acme"]["applied_generation"] == 1
    assert summary["acme"]["observed_generation"] == 2 and "poolSize" in summary["acme"]["problem"]
    json.dumps(summary)

    changes = []
    registry.subscribe(changes.append)
    assert registry.apply("acme", {"tenants": ["acme"], "sandbox": {"poolSize": 4}}, generation=3).changed
    assert changes == ["acme"] and registry.problems() == {}
    registry.remove("acme")
    assert registry.effective("acme").name == "default"
