"""templates/mcp-api-ingress.yaml: nginx annotations for MCP streaming and per-client limits, TLS."""

from __future__ import annotations

from chart_helpers import of_kind, one, render, render_case

P = "nginx.ingress.kubernetes.io/"


def test_streaming_annotations() -> None:
    ing = one(render_case("production"), "Ingress")
    a = ing["metadata"]["annotations"]
    assert a[P + "proxy-buffering"] == "off"
    assert a[P + "proxy-request-buffering"] == "off"
    assert int(a[P + "proxy-read-timeout"]) >= 3600
    assert int(a[P + "proxy-send-timeout"]) >= 3600
    assert a[P + "proxy-body-size"] == "8m"  # settings.max_request_bytes default (8 MiB)
    assert a[P + "proxy-http-version"] == "1.1"
    assert a[P + "limit-rps"] == "20" and a[P + "limit-connections"] == "20"
    assert a[P + "ssl-redirect"] == "true"
    assert a["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert all(isinstance(v, str) for v in a.values())


def test_tls_hosts_and_backend() -> None:
    ing = one(render_case("production"), "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "mcp-example-com-tls", "hosts": ["mcp.example.com"]}]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "mcp.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "sa-secure-agent-mcp-api", "port": {"name": "http"}}


def test_limits_can_be_turned_off_and_annotations_disabled() -> None:
    a = one(
        render(sets=("ingress.enabled=true", "ingress.nginx.limitRps=0", "ingress.nginx.limitConnections=0")),
        "Ingress",
    )["metadata"]["annotations"]
    assert P + "limit-rps" not in a and P + "limit-connections" not in a and P + "ssl-redirect" not in a
    plain = one(
        render(sets=("ingress.enabled=true", "ingress.nginx.enabled=false", "ingress.className=traefik")),
        "Ingress",
    )
    assert not any(k.startswith(P) for k in (plain["metadata"].get("annotations") or {}))


def test_off_by_default() -> None:
    assert not of_kind(render_case("default"), "Ingress")
