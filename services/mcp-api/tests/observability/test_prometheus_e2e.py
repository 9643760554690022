"""End to end: a real Prometheus (Debian's package, loopback only) scrapes a real mcp-api under a short
generated load, loads the real rules file, and every dashboard query, every alert signal, every
recording rule and every alert expression is evaluated through Prometheus's HTTP API.

A query that errors fails the test; so does a dashboard query or alert signal with no series (a
dead panel or a misspelled metric). Full alert expressions only have to evaluate: a healthy run
is supposed to fire nothing.

The load covers successes, tool errors, denials (path escape, missing scope), client errors
(unknown method), authentication failures (missing, malformed, invalid key) and a client that
floods past its key's rate limit (429s counted in `secure_agent_rate_limited_total{limit="key"}`).
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp_api.observability.metrics import all_metric_names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[4]
RULES = REPO / "alerts" / "secure-agent.rules.yml"
PROMETHEUS_START_S = 30
INGEST_TIMEOUT_S = 40


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (make system-deps installs Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(path: Path, days: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _rpc(client: httpx.Client, key: str | None, method: str, params: dict | None = None, era: str = "legacy"):
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if key is not None:
        headers["authorization"] = key if key.startswith(("Bearer", "Basic")) else f"Bearer {key}"
    params = dict(params or {})
    if era == "modern":
        headers |= {"mcp-protocol-version": "2026-07-28", "mcp-method": method}
        if method == "tools/call":
            headers["mcp-name"] = params["name"]
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
        }
    else:
        headers["mcp-protocol-version"] = "2025-11-25"
    return client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers=headers)


def _load_round(client: httpx.Client, key: str, read_only_key: str) -> None:
    for era in ("legacy", "modern"):
        assert _rpc(client, key, "tools/list", era=era).status_code == 200
        _rpc(client, key, "tools/call", {"name": "read_file", "arguments": {"path": "hello.txt"}}, era)
        _rpc(client, key, "tools/call", {"name": "read_file", "arguments": {"path": "missing.txt"}}, era)
        _rpc(client, key, "tools/call", {"name": "read_file", "arguments": {"path": "../../etc/passwd"}}, era)
        _rpc(client, key, "tools/call", {"name": "list_directory", "arguments": {"path": "."}}, era)
        _rpc(client, key, "resources/list", era=era)
        _rpc(client, key, "prompts/list", era=era)
        _rpc(client, key, "no/such/method", era=era)
    _rpc(client, read_only_key, "tools/call", {"name": "write_file", "arguments": {"path": "x.txt", "content": "x"}})
    _rpc(client, None, "tools/list")
    _rpc(client, "Basic Zm9vOmJhcg==", "tools/list")
    _rpc(client, "sa_AAAAAAAAAAAA_" + "n" * 30, "tools/list")
    client.get("/ready")
    client.get("/health")


def _query(prom: httpx.Client, expr: str) -> dict:
    response = prom.get("/api/v1/query", params={"query": expr})
    body = response.json()
    return body


def _wait_for(prom: httpx.Client, expr: str, ok, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = _query(prom, expr)
        if body.get("status") == "success" and ok(body["data"]["result"]):
            return body
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {expr!r}: {body}")


@pytest.fixture
def prometheus_factory(tmp_path: Path):
    started: list[subprocess.Popen] = []

    def start(target: str) -> tuple[httpx.Client, Path]:
        binary = _binary("prometheus")
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n"
            "  - job_name: secure-agent\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        log = tmp_path / "prometheus.log"
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
             "--storage.tsdb.retention.time=1h"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        started.append(proc)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + PROMETHEUS_START_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if client.get("/-/ready").status_code == 200:
                    return client, log
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"prometheus did not become ready:\n{log.read_text()}")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_every_dashboard_query_and_alert_evaluates_on_real_data(
    server_factory, prometheus_factory, tmp_path: Path, dashboards_source, alerts_source
):
    cert = tmp_path / "tls.crt"
    _self_signed(cert, days=90)
    server = server_factory(
        {
            "SECURE_AGENT_METRICS__TLS_CERT_FILES": f'["{cert}"]',
            "SECURE_AGENT_METRICS__PROBE_INTERVAL_S": "1",
            # Small key buckets so one flooding client is throttled while the regular load is not.
            "SECURE_AGENT_RATE_LIMITS__KEY_BURST": "60",
            "SECURE_AGENT_RATE_LIMITS__KEY_PER_S": "5",
        }
    )
    server.workspace_dir.mkdir(parents=True, exist_ok=True)
    (server.workspace_dir / "hello.txt").write_text("hello")
    env = {**os.environ, "SECURE_AGENT_DATA_DIR": str(server.data_dir)}
    created = subprocess.run(
        [sys.executable, "-m", "mcp_api", "keys", "create", "--tenant", "dev", "--scope", "files:read"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    read_only_key = created.stdout.strip().splitlines()[-1]
    flooder = subprocess.run(
        [sys.executable, "-m", "mcp_api", "keys", "create", "--tenant", "dev", "--name", "flooder"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=60,
    ).stdout.strip().splitlines()[-1]  # fmt: skip

    target = server.base_url.removeprefix("http://").replace("localhost", "127.0.0.1")
    prom, prom_log = prometheus_factory(target)
    _wait_for(prom, 'up{job="secure-agent"}', lambda r: r and r[0]["value"][1] == "1", INGEST_TIMEOUT_S)

    # Load in rounds a few scrapes apart, so every counter moves between samples and rate() sees it.
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(3):
            _load_round(client, server.api_key, read_only_key)
            time.sleep(1.5)
        statuses = [
            client.post("/mcp", json={"jsonrpc": "2.0", "id": i, "method": "ping"},
                        headers={"authorization": f"Bearer {flooder}", "accept": "application/json",
                                 "content-type": "application/json", "mcp-protocol-version": "2025-11-25"}).status_code
            for i in range(100)
        ]  # fmt: skip
        assert statuses.count(429) >= 30 and statuses.count(200) >= 55, statuses
    _wait_for(
        prom,
        'sum(secure_agent_rate_limited_total{limit="key"})',
        lambda r: r and float(r[0]["value"][1]) >= 30,
        INGEST_TIMEOUT_S,
    )
    _wait_for(
        prom,
        'sum(secure_agent_tool_calls_total{outcome="denied"})',
        lambda r: r and float(r[0]["value"][1]) >= 6,
        INGEST_TIMEOUT_S,
    )
    # Two more scrapes and rule evaluations after the last request.
    time.sleep(2.5)
    _wait_for(prom, "secure_agent:mcp_error_ratio:rate5m", lambda r: bool(r), INGEST_TIMEOUT_S)

    problems: list[str] = []

    def check(what: str, expr: str, need_series: bool) -> None:
        body = _query(prom, expr)
        if body.get("status") != "success":
            problems.append(f"{what}: error {body.get('errorType')}: {body.get('error')}\n    {expr}")
        elif need_series and not body["data"]["result"]:
            problems.append(f"{what}: no series\n    {expr}")

    queries = dashboards_source.all_queries()
    assert len(queries) >= 30
    for uid, title, expr in queries:
        check(f"dashboard {uid} / {title}", expr, need_series=True)
    for alert in alerts_source.ALERTS:
        for signal_expr in alert.signals:
            check(f"alert {alert.name} signal", signal_expr, need_series=True)
        check(f"alert {alert.name} expr", alert.expr, need_series=False)
    for rule in alerts_source.RECORDING_RULES:
        check(f"recording rule {rule['record']}", rule["record"], need_series=True)
    assert not problems, "\n".join(problems) + f"\n\nprometheus log:\n{prom_log.read_text()[-3000:]}"

    # The rules loaded and evaluate cleanly in the real server, not only in promtool.
    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(alerts_source.ALERTS) + len(alerts_source.RECORDING_RULES)
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    firing = [r["name"] for r in rules if r.get("type") == "alerting" and r["state"] == "firing"]
    assert firing == [], f"a healthy server fired {firing}"

    # The load produced what it should have: denials, client errors, auth failures by reason.
    scraped = {
        'sum(secure_agent_tool_calls_total{outcome="denied"})': 6,
        'sum(secure_agent_mcp_requests_total{outcome="client_error"})': 6,
        'sum(secure_agent_auth_failures_total{reason="missing"})': 3,
        'sum(secure_agent_auth_failures_total{reason="malformed"})': 3,
        'sum(secure_agent_auth_failures_total{reason="invalid"})': 3,
        "sum(secure_agent_runner_cold_start_duration_seconds_count)": 1,
        "sum(secure_agent_tls_certificate_expiry_timestamp_seconds) - time() > 80 * 86400": None,
    }
    for expr, at_least in scraped.items():
        result = _query(prom, expr)["data"]["result"]
        assert result, expr
        if at_least is not None:
            assert float(result[0]["value"][1]) >= at_least, (expr, result)


def test_all_scraped_metric_names_are_known(server_factory):
    """Everything mcp-api exposes with our prefix is defined in metrics.py (no stray families)."""
    server = server_factory()
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line.startswith("secure_agent_")
    }
    known = all_metric_names() | {n.removesuffix("_total") + "_created" for n in all_metric_names()}
    assert names and names <= known, names - known
