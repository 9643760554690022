"""templates/mcp-api-pdb.yaml: the budget leaves pods evictable (minAvailable below the replica floor)."""

from chart_helpers import of_kind, one, render, render_case, render_fails

PROD = ("database.type=postgresql", "secrets.existingSecret=s")


def test_budget_below_replica_floor() -> None:
    docs = render_case("production")
    pdb, hpa = one(docs, "PodDisruptionBudget"), one(docs, "HorizontalPodAutoscaler")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    assert not of_kind(render_case("default"), "PodDisruptionBudget")


def test_max_unavailable_form() -> None:
    pdb = one(render(sets=(*PROD, "mcpApi.replicaCount=3", "podDisruptionBudget.enabled=true",
                           "podDisruptionBudget.minAvailable=null", "podDisruptionBudget.maxUnavailable=1")), "PodDisruptionBudget")  # fmt: skip
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}


def test_bad_budgets_fail() -> None:
    err = render_fails(
        *PROD,
        "mcpApi.replicaCount=3",
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.maxUnavailable=1",
    )
    assert "set only one of minAvailable and maxUnavailable" in err
    err = render_fails("podDisruptionBudget.enabled=true")  # 1 replica, minAvailable 1
    assert "podDisruptionBudget.minAvailable (1) must be below the replica count (1)" in err
