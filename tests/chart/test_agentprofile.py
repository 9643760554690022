"""templates/agentprofile.yaml: the default AgentProfile (validated against the CRD schema in
test_kubernetes_validate.py) carries the runner image and seccomp of this release."""

from chart_helpers import of_kind, one, render, render_case


def test_default_profile() -> None:
    docs = render_case("production")
    profile = one(docs, "AgentProfile")
    assert profile["metadata"]["name"] == "default"
    assert profile["metadata"]["namespace"] == "secure-agent"
    env = one(docs, "ConfigMap", "settings")["data"]
    assert env["SECURE_AGENT_KUBERNETES__PROFILE"] == "default"
    sandbox = profile["spec"]["sandbox"]
    assert sandbox["image"] == env["SECURE_AGENT_KUBERNETES__IMAGE"]
    assert sandbox["poolSize"] == 4
    assert profile["spec"]["allowedTools"] == ["*"]


def test_spec_values_win_and_profile_can_be_skipped() -> None:
    profile = one(render(sets=("agentProfile.spec.sandbox.image=custom/runner:1",)), "AgentProfile")
    assert profile["spec"]["sandbox"]["image"] == "custom/runner:1"
    assert not of_kind(render(sets=("agentProfile.create=false",)), "AgentProfile")
