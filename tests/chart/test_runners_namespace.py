"""templates/runners-namespace.yaml: an optional runner namespace under Pod Security "restricted"."""

from chart_helpers import of_kind, one, render, render_case


def test_namespace_is_restricted() -> None:
    ns = one(render_case("production"), "Namespace")
    assert ns["metadata"]["name"] == "secure-agent-runners"
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_not_created_for_the_release_namespace() -> None:
    assert not of_kind(render(sets=("runners.createNamespace=true",)), "Namespace")
    assert not of_kind(render_case("default"), "Namespace")
