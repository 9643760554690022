"""ServiceMonitor, PrometheusRule and Grafana dashboards. Their CRDs are not available offline (see
test_kubernetes_validate.py), so the fields are checked here; the rules and dashboards must be exactly
the generated sources (alerts/secure-agent.rules.yml, dashboards/*.json)."""

from __future__ import annotations

import json

import yaml
from chart_helpers import ROOT, of_kind, one, render, render_case


def test_servicemonitor_scrapes_the_service() -> None:
    docs = render_case("production")
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service", "mcp-api")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["secure-agent"]}
    assert sm["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert svc["spec"]["ports"][0]["name"] == "http"


def test_prometheusrule_is_the_generated_rules_file() -> None:
    rule = one(render_case("production"), "PrometheusRule")
    source = yaml.safe_load((ROOT / "alerts" / "secure-agent.rules.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a.startswith("SecureAgent") for a in alerts)


def test_dashboards_are_the_generated_json() -> None:
    cms = [
        d for d in of_kind(render_case("production"), "ConfigMap") if "-dashboard-" in d["metadata"]["name"]
    ]
    sources = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    assert len(cms) == len(sources)
    rendered = {}
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "secure-agent"
        ((name, text),) = cm["data"].items()
        rendered[name] = json.loads(text)
    assert rendered == sources


def test_monitoring_is_off_by_default_and_relocatable() -> None:
    docs = render_case("default")
    assert not of_kind(docs, "ServiceMonitor") and not of_kind(docs, "PrometheusRule")
    assert not [d for d in of_kind(docs, "ConfigMap") if "-dashboard-" in d["metadata"]["name"]]
    moved = render(sets=("grafanaDashboards.enabled=true", "grafanaDashboards.namespace=grafana",
                         "prometheusRule.enabled=true", "prometheusRule.namespace=monitoring"))  # fmt: skip
    assert one(moved, "PrometheusRule")["metadata"]["namespace"] == "monitoring"
    assert {
        d["metadata"]["namespace"]
        for d in of_kind(moved, "ConfigMap")
        if "-dashboard-" in d["metadata"]["name"]
    } == {"grafana"}
