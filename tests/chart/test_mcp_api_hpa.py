"""templates/mcp-api-hpa.yaml: autoscaling/v2 bounds and metrics."""

from chart_helpers import of_kind, one, render_case, render_fails


def test_bounds_and_metrics() -> None:
    hpa = one(render_case("production"), "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sa-secure-agent-mcp-api",
    }
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 12)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 65},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert not of_kind(render_case("default"), "HorizontalPodAutoscaler")


def test_max_below_min_fails() -> None:
    err = render_fails(
        "database.type=postgresql",
        "secrets.existingSecret=s",
        "autoscaling.enabled=true",
        "autoscaling.minReplicas=5",
        "autoscaling.maxReplicas=3",
    )
    assert "autoscaling.maxReplicas must be >= autoscaling.minReplicas" in err


def test_sqlite_cannot_scale() -> None:
    assert "needs database.type=postgresql" in render_fails("autoscaling.enabled=true")
    assert "needs database.type=postgresql" in render_fails("mcpApi.replicaCount=2")
