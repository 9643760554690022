"""templates/mcp-api-httproute.yaml: Gateway API route with long timeouts (no CRD schema offline:
these structural checks stand in for schema validation, see test_kubernetes_validate.py)."""

from __future__ import annotations

from chart_helpers import of_kind, one, render_case, render_fails


def test_route() -> None:
    docs = render_case("gateway-api")
    route = one(docs, "HTTPRoute")
    spec = route["spec"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert spec["parentRefs"] == [
        {"name": "public-gateway", "namespace": "gateway-system", "sectionName": "https"}
    ]
    assert spec["hostnames"] == ["mcp.example.com"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "sa-secure-agent-mcp-api", "port": 8080}]
    assert rule["timeouts"] == {"request": "3600s", "backendRequest": "3600s"}
    assert set(route["metadata"]) == {"name", "namespace", "labels"}
    assert not of_kind(docs, "Ingress")


def test_needs_a_parent() -> None:
    assert "gatewayApi.enabled needs gatewayApi.parentRefs" in render_fails("gatewayApi.enabled=true")
