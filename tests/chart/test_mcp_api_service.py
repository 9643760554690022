"""templates/mcp-api-service.yaml: selects exactly the mcp-api pods on the named http port."""

from chart_helpers import one, render, render_case


def test_service_selects_the_deployment_pods() -> None:
    docs = render_case("default")
    svc, dep = one(docs, "Service", "mcp-api"), one(docs, "Deployment", "mcp-api")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["type"] == "ClusterIP"


def test_service_port_and_type_are_values() -> None:
    svc = one(render(sets=("service.port=80", "service.type=LoadBalancer")), "Service", "mcp-api")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["type"] == "LoadBalancer"
