"""Dashboards, alert rules, promtool unit tests and runbooks: generated from one source, valid, and
naming only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mcp_api.observability.metrics import all_metric_names

REPO = Path(__file__).resolve().parents[4]
# Series that do not come from metrics.py: the instrumentator's HTTP metrics and Prometheus's `up`.
EXTERNAL = {"up", "http_requests_total", "http_request_duration_seconds_bucket", "http_request_duration_seconds_count"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: make system-deps installs Debian's prometheus package")
        pytest.skip("promtool missing (make system-deps)")
    return path


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:secure_agent[a-z0-9_:]*)|http_[a-z_]+)\b", expr)) | (
        {"up"} if re.search(r"\bup\{", expr) else set()
    )


def test_generated_files_are_committed(dashboards_source, alerts_source):
    for source in (dashboards_source, alerts_source):
        stale = [str(p) for p, text in source.outputs().items() if not p.exists() or p.read_text() != text]
        assert not stale, f"run `uv run python {source.__file__}`; stale: {stale}"
    generated = set(alerts_source.outputs())
    extra = [p for p in (REPO / "runbooks").glob("*.md") if p not in generated and p.name != "README.md"]
    extra += [p for p in (REPO / "alerts" / "tests").glob("*.yml") if p not in generated]
    assert not extra, f"files no alert generates: {extra}"


def test_queries_name_only_defined_metrics(dashboards_source, alerts_source):
    recorded = {rule["record"] for rule in alerts_source.RECORDING_RULES}
    known = all_metric_names() | EXTERNAL | recorded
    exprs = [expr for _, _, expr in dashboards_source.all_queries()]
    exprs += [rule["expr"] for rule in alerts_source.RECORDING_RULES]
    for alert in alerts_source.ALERTS:
        exprs += [alert.expr, *alert.signals]
    unknown = {name for expr in exprs for name in _names(expr)} - known
    assert not unknown, unknown
    # and every recorded series is used by some alert
    used = {name for alert in alerts_source.ALERTS for name in _names(alert.expr)}
    assert recorded <= used, recorded - used


def test_dashboards_are_valid_grafana_json(dashboards_source):
    files = sorted((REPO / "dashboards").glob("*.json"))
    assert {p.stem for p in files} == {"secure-agent-overview", "secure-agent-mcp", "secure-agent-agent",
                                        "secure-agent-runners", "secure-agent-security"}  # fmt: skip
    uids = set()
    for path in files:
        board = json.loads(path.read_text())
        assert board["uid"] == path.stem and board["uid"] not in uids
        uids.add(board["uid"])
        assert board["templating"]["list"][0]["type"] == "datasource"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24


def test_promtool_checks_the_rules_file():
    result = subprocess.run(
        [_promtool(), "check", "rules", str(REPO / "alerts" / "secure-agent.rules.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_bad_and_stays_silent_on_good(alerts_source):
    tests_dir = REPO / "alerts" / "tests"
    for alert in alerts_source.ALERTS:
        document = yaml.safe_load((tests_dir / f"{alert.name}.test.yml").read_text())
        cases = [c for t in document["tests"] for c in t["alert_rule_test"] if c["alertname"] == alert.name]
        assert any(c["exp_alerts"] for c in cases), f"{alert.name}: no case where it fires"
        assert any(c["exp_alerts"] == [] for c in cases), f"{alert.name}: no case where it stays silent"
    files = sorted(str(p.name) for p in tests_dir.glob("*.test.yml"))
    result = subprocess.run(
        [_promtool(), "test", "rules", *files], cwd=tests_dir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(alerts_source.ALERTS), result.stdout


def test_a_broken_alert_is_caught_by_promtool(alerts_source, tmp_path):
    """The unit tests bite: an alert whose threshold is off no longer fires on the bad history."""
    rules = yaml.safe_load((REPO / "alerts" / "secure-agent.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "SecureAgentAuthFailureSpike":
                rule["expr"] = rule["expr"].replace("> 1", "> 1000")
    (tmp_path / "secure-agent.rules.yml").write_text(yaml.safe_dump(rules))
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(REPO / "alerts" / "tests" / "SecureAgentAuthFailureSpike.test.yml", tests)
    result = subprocess.run(
        [_promtool(), "test", "rules", "SecureAgentAuthFailureSpike.test.yml"],
        cwd=tests, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_runbook(alerts_source):
    rules = yaml.safe_load((REPO / "alerts" / "secure-agent.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len(alerts_source.ALERTS) >= 13
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"/runbooks/{rule['alert']}.md"), url
        assert rule["labels"]["severity"] in ("critical", "warning")
        text = (REPO / "runbooks" / f"{rule['alert']}.md").read_text()
        for heading in ("What it means", "Who is affected", "How to diagnose", "How to mitigate", "When to escalate"):
            assert f"## {heading}" in text, (rule["alert"], heading)
        # exact commands: PromQL or kubectl or a log query in backticks
        assert re.search(r"`[^`]*(secure_agent_|kubectl|\{app=|jq|curl|openssl|secure-agent )[^`]*`", text), rule["alert"]
    required = {
        "error-rate SLO burn": "SecureAgentErrorBudgetBurnFast", "latency SLO burn": "SecureAgentLatencyBudgetBurnFast",
        "instance down": "SecureAgentInstanceDown", "readiness": "SecureAgentNotReady",
        "pool exhausted": "SecureAgentRunnerPoolExhausted", "slow starts": "SecureAgentSlowRunnerStarts",
        "sandbox spikes": "SecureAgentSandboxLimitSpike", "auth spikes": "SecureAgentAuthFailureSpike",
        "provider errors": "SecureAgentModelProviderErrors", "store": "SecureAgentStoreUnavailable",
        "certificates": "SecureAgentCertificateExpiringSoon",
    }  # fmt: skip
    assert set(required.values()) <= {a["alert"] for a in alerts}
