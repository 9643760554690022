"""The one source of secure-agent's Grafana dashboards: writes dashboards/*.json.

    uv run python dashboards/generate.py          # rewrite the JSON files
    uv run python dashboards/generate.py --check  # exit 1 if a committed file differs

The Helm chart packages the JSON files into a dashboards ConfigMap (Grafana sidecar) and compose
mounts them as provisioned dashboards. Every query uses only metrics defined in
mcp_api/observability/metrics.py, the HTTP metrics of prometheus-fastapi-instrumentator, or `up`;
the end-to-end test runs each one against a real Prometheus scraping a real mcp-api and fails on
an error or an empty result. Queries on features that have no series yet (model providers, which
arrive with the agent) end in `or vector(0)`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
JOB = "secure-agent"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
W = "5m"
STREAMS = 'method!="subscriptions/listen"'


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (expr, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)


@dataclass
class Row:
    title: str
    panels: list[Panel]


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[Row]
    tags: list[str] = field(default_factory=lambda: ["secure-agent"])


def q(expr: str, legend: str = "") -> tuple[str, str]:
    return expr, legend


def quantile(phi: float, metric: str, by: str = "", selector: str = "", window: str = W) -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({phi}, sum by ({labels}) (rate({metric}_bucket{selector}[{window}])))"


ERRORS_1H = (
    '((sum(rate(secure_agent_mcp_requests_total{outcome="error"}[1h])) or vector(0))'
    ' + (sum(rate(secure_agent_tool_calls_total{outcome="error"}[1h])) or vector(0)))'
    " / sum(rate(secure_agent_mcp_requests_total[1h]))"
)
FAST_1H = (
    f'sum(rate(secure_agent_mcp_request_duration_seconds_bucket{{le="2.5",{STREAMS}}}[1h]))'
    f" / sum(rate(secure_agent_mcp_request_duration_seconds_count{{{STREAMS}}}[1h]))"
)
GREEN_RED = [(None, "red"), (0.99, "yellow"), (0.999, "green")]

OVERVIEW = Dashboard(
    uid="secure-agent-overview",
    title="secure-agent / Overview",
    description="SLOs and the vital signs of every part: MCP traffic, tools, runners, store, security.",
    rows=[
        Row(
            "Service level objectives",
            [
                Panel("Availability (1h), SLO 99.9%", [q(f"1 - ({ERRORS_1H})", "availability")], "stat", "percentunit", 6, 5,
                      "Share of MCP requests without a server fault.", GREEN_RED),
                Panel("Within 2.5 s (1h), SLO 99%", [q(FAST_1H, "fast")], "stat", "percentunit", 6, 5,
                      "Share of MCP requests (streams excluded) answered within 2.5 s.",
                      [(None, "red"), (0.95, "yellow"), (0.99, "green")]),
                Panel("Error budget burn rate (1h)", [q(f"({ERRORS_1H}) / 0.001", "burn")], "stat", "short", 6, 5,
                      "1 spends the 30-day budget in 30 days; 14.4 pages.", [(None, "green"), (6, "yellow"), (14.4, "red")]),
                Panel("Instances up / ready",
                      [q(f'sum(up{{job="{JOB}"}})', "up"), q("sum(secure_agent_ready)", "ready")], "stat", "short", 6, 5),
            ],
        ),
        Row(
            "Traffic",
            [
                Panel("MCP requests by outcome", [q(f"sum by (outcome) (rate(secure_agent_mcp_requests_total[{W}]))", "{{outcome}}")],
                      unit="reqps"),
                Panel("MCP latency", [
                    q(quantile(0.5, "secure_agent_mcp_request_duration_seconds", selector=f"{{{STREAMS}}}"), "p50"),
                    q(quantile(0.95, "secure_agent_mcp_request_duration_seconds", selector=f"{{{STREAMS}}}"), "p95"),
                    q(quantile(0.99, "secure_agent_mcp_request_duration_seconds", selector=f"{{{STREAMS}}}"), "p99"),
                ], unit="s"),
                Panel("Tool calls by outcome", [q(f"sum by (outcome) (rate(secure_agent_tool_calls_total[{W}]))", "{{outcome}}")],
                      unit="ops"),
                Panel("Runners in the pool", [q("sum by (backend, state) (secure_agent_runner_pool_runners)", "{{backend}} {{state}}"),
                                              q("sum by (backend) (secure_agent_runner_pool_capacity)", "{{backend}} capacity")]),
                Panel("Authentication failures", [q(f"sum by (reason) (rate(secure_agent_auth_failures_total[{W}]))", "{{reason}}")],
                      unit="reqps"),
                Panel("Dependencies up", [q("min by (dependency) (secure_agent_dependency_up)", "{{dependency}}")]),
            ],
        ),
    ],
)

MCP = Dashboard(
    uid="secure-agent-mcp",
    title="secure-agent / MCP traffic and tools",
    description="MCP methods by protocol era and outcome, latency, every tool, and the HTTP layer.",
    rows=[
        Row(
            "MCP methods",
            [
                Panel("Requests by method", [q(f"sum by (method) (rate(secure_agent_mcp_requests_total[{W}]))", "{{method}}")],
                      unit="reqps"),
                Panel("Requests by protocol era", [q(f"sum by (era) (rate(secure_agent_mcp_requests_total[{W}]))", "{{era}}")],
                      unit="reqps", description="modern = 2026-07-28 (stateless), legacy = initialize-based revisions."),
                Panel("Failures by method and outcome", [q(
                    f'sum by (method, outcome) (rate(secure_agent_mcp_requests_total{{outcome!="ok"}}[{W}]))',
                    "{{method}} {{outcome}}")], unit="reqps"),
                Panel("p95 latency by method", [q(quantile(0.95, "secure_agent_mcp_request_duration_seconds", "method"), "{{method}}")],
                      unit="s"),
            ],
        ),
        Row(
            "Tools",
            [
                Panel("Tool calls by tool", [q(f"sum by (tool) (rate(secure_agent_tool_calls_total[{W}]))", "{{tool}}")], unit="ops"),
                Panel("Tool outcomes", [q(f"sum by (tool, outcome) (rate(secure_agent_tool_calls_total[{W}]))", "{{tool}} {{outcome}}")],
                      unit="ops", description="denied: path or scope refused; rejected: bad input; error: server fault."),
                Panel("p95 tool latency", [q(quantile(0.95, "secure_agent_tool_duration_seconds", "tool"), "{{tool}}")], unit="s"),
                Panel("p99 tool latency", [q(quantile(0.99, "secure_agent_tool_duration_seconds", "tool"), "{{tool}}")], unit="s"),
            ],
        ),
        Row(
            "HTTP",
            [
                Panel("HTTP requests by status", [q(f'sum by (handler, status) (rate(http_requests_total[{W}]))', "{{handler}} {{status}}")],
                      unit="reqps"),
                Panel("/mcp HTTP latency", [
                    q(quantile(0.5, "http_request_duration_seconds", selector='{handler="/mcp"}'), "p50"),
                    q(quantile(0.99, "http_request_duration_seconds", selector='{handler="/mcp"}'), "p99"),
                ], unit="s"),
            ],
        ),
    ],
)

AGENT = Dashboard(
    uid="secure-agent-agent",
    title="secure-agent / Agent and models",
    description="Agent runs, steps, tokens, provider latency and errors. Provider series appear with the first "
    "model call; until then the panels show 0.",
    rows=[
        Row(
            "Agent",
            [
                Panel("Agent runs by outcome", [q(f"sum by (outcome) (rate(secure_agent_agent_runs_total[{W}]))", "{{outcome}}")],
                      unit="ops"),
                Panel("Steps per run", [q(quantile(0.5, "secure_agent_agent_steps", window="1h"), "p50"),
                                        q(quantile(0.95, "secure_agent_agent_steps", window="1h"), "p95")]),
            ],
        ),
        Row(
            "Models",
            [
                Panel("Tokens by provider and model", [q(
                    f"sum by (provider, model, kind) (rate(secure_agent_model_tokens_total[{W}])) or vector(0)",
                    "{{provider}} {{model}} {{kind}}")], unit="short"),
                Panel("Model calls by outcome", [q(
                    f"sum by (provider, outcome) (rate(secure_agent_model_requests_total[{W}])) or vector(0)",
                    "{{provider}} {{outcome}}")], unit="reqps"),
                Panel("p95 provider latency", [q(
                    quantile(0.95, "secure_agent_model_request_duration_seconds", "provider, model") + " or vector(0)",
                    "{{provider}} {{model}}")], unit="s"),
                Panel("Provider errors by reason", [q(
                    f"sum by (provider, reason) (rate(secure_agent_model_errors_total[{W}])) or vector(0)",
                    "{{provider}} {{reason}}")], unit="reqps"),
            ],
        ),
    ],
)

RUNNERS = Dashboard(
    uid="secure-agent-runners",
    title="secure-agent / Runners, sandbox and store",
    description="Workspace runner pool, claim and cold-start latency, sandbox limit hits, store latency and errors.",
    rows=[
        Row(
            "Runner pool",
            [
                Panel("Runners by state", [q("sum by (backend, state) (secure_agent_runner_pool_runners)", "{{backend}} {{state}}")]),
                Panel("Pool use", [q("sum by (backend) (secure_agent_runner_pool_runners) / sum by (backend) (secure_agent_runner_pool_capacity)",
                                     "{{backend}}")], unit="percentunit"),
                Panel("Claim latency", [q(quantile(0.5, "secure_agent_runner_claim_duration_seconds", "backend"), "p50 {{backend}}"),
                                        q(quantile(0.95, "secure_agent_runner_claim_duration_seconds", "backend"), "p95 {{backend}}")],
                      unit="s"),
                Panel("Cold starts", [q(f"sum by (backend) (rate(secure_agent_runner_cold_start_duration_seconds_count[{W}]))",
                                        "starts {{backend}}"),
                                      q(f"sum by (backend) (rate(secure_agent_runner_start_failures_total[{W}]))", "failures {{backend}}")],
                      unit="ops"),
                Panel("p95 cold start", [q(quantile(0.95, "secure_agent_runner_cold_start_duration_seconds", "backend", window="15m"),
                                           "{{backend}}")], unit="s"),
            ],
        ),
        Row(
            "Sandbox",
            [
                Panel("Limit hits by control", [q(f"sum by (control) (rate(secure_agent_sandbox_limit_hits_total[{W}]))", "{{control}}")],
                      unit="ops", width=24),
            ],
        ),
        Row(
            "Store",
            [
                Panel("p99 store latency by operation", [q(quantile(0.99, "secure_agent_store_query_duration_seconds", "operation"),
                                                           "{{operation}}")], unit="s"),
                Panel("Store statements and errors", [
                    q(f"sum by (operation) (rate(secure_agent_store_query_duration_seconds_count[{W}]))", "{{operation}}"),
                    q(f"sum by (operation) (rate(secure_agent_store_errors_total[{W}]))", "errors {{operation}}"),
                ], unit="ops"),
            ],
        ),
    ],
)

SECURITY = Dashboard(
    uid="secure-agent-security",
    title="secure-agent / Security",
    description="Authentication failures, rate limits, denied tool calls and sandbox refusals.",
    rows=[
        Row(
            "Security",
            [
                Panel("Authentication failures by reason",
                      [q(f"sum by (reason) (rate(secure_agent_auth_failures_total[{W}]))", "{{reason}}")], unit="reqps"),
                Panel("Rate-limited requests by limit",
                      [q(f"sum by (limit) (rate(secure_agent_rate_limited_total[{W}]))", "{{limit}}")], unit="reqps"),
                Panel("Denied tool calls by tool",
                      [q(f'sum by (tool) (rate(secure_agent_tool_calls_total{{outcome="denied"}}[{W}]))', "{{tool}}")], unit="ops",
                      description="Paths outside the workspace, symlinks, hard links, missing scopes."),
                Panel("Refused HTTP requests on /mcp",
                      [q(f'sum by (status) (rate(http_requests_total{{handler="/mcp",status="4xx"}}[{W}]))', "{{status}}")],
                      unit="reqps", description="401 (auth), 403 (Origin), 421 (Host), 415, 429 are grouped as 4xx."),
                Panel("Sandbox refusals (seccomp, Landlock)",
                      [q(f'sum by (control) (rate(secure_agent_sandbox_limit_hits_total{{control=~"seccomp|landlock"}}[{W}]))',
                         "{{control}}")], unit="ops", width=24),
            ],
        ),
    ],
)

DASHBOARDS = [OVERVIEW, MCP, AGENT, RUNNERS, SECURITY]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    targets = [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto", "refId": chr(ord("A") + i)}
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    defaults: dict = {"unit": panel.unit}
    if panel.thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in panel.thresholds],
        }
        defaults["color"] = {"mode": "thresholds"}
    data = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"},
    }
    return data


def dashboard_json(d: Dashboard) -> dict:
    panels: list[dict] = []
    panel_id = 1
    y = 0
    for row in d.rows:
        panels.append(
            {"id": panel_id, "type": "row", "title": row.title, "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        )  # fmt: skip
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": d.tags,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
                 "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}
            ]
        },  # fmt: skip
        "annotations": {"list": []},
        "links": [{"title": "secure-agent", "type": "dashboards", "tags": ["secure-agent"], "asDropdown": True}],
        "panels": panels,
    }


def outputs() -> dict[Path, str]:
    return {ROOT / f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS}


def all_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query of every panel."""
    return [(d.uid, p.title, expr) for d in DASHBOARDS for row in d.rows for p in row.panels for expr, _ in p.queries]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text)
    if check and stale:
        print("out of date (run: uv run python dashboards/generate.py):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
