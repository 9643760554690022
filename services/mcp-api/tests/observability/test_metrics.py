"""Custom metrics: every family exposed from the first scrape, and each one moved by the code path
it describes."""

from __future__ import annotations

import datetime
import re

import pytest
from mcp_api.observability import instrument, metrics
from mcp_helpers import Mcp

pytestmark = pytest.mark.anyio


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match, f"{sample} not in /metrics"
    return float(match.group(1))


async def test_every_family_is_exposed_before_any_traffic(http):
    text = (await http.get("/metrics")).text
    for sample in (
        'secure_agent_rate_limited_total{limit="key"}',
        'secure_agent_sandbox_limit_hits_total{control="seccomp"}',
        'secure_agent_agent_runs_total{outcome="ok"}',
        "secure_agent_agent_steps_count",
        'secure_agent_store_errors_total{operation="select"}',
        'secure_agent_auth_failures_total{reason="missing"}',
        'secure_agent_runner_pool_capacity{backend="local"}',
        'secure_agent_runner_pool_runners{backend="local",state="ready"}',
        'secure_agent_build_info{version="0.1.0"}',
    ):
        assert re.search(rf"^{re.escape(sample)} ", text, re.M), sample


async def test_tool_outcomes_runner_pool_store_and_readiness(http, workspace, app):
    (workspace / "a.txt").write_text("a")
    before = (await http.get("/metrics")).text
    cold_before = _value(before, 'secure_agent_runner_cold_start_duration_seconds_count{backend="local"}') if (
        "secure_agent_runner_cold_start_duration_seconds_count" in before) else 0.0
    mcp = Mcp(http=http)
    await mcp.call("read_file", path="a.txt")
    await mcp.call("read_file", path="../../escape")
    await mcp.request("no/such/method")
    read_only, _ = await app.state.services.keys.create("dev", "ro", ["files:read"])
    await Mcp(http=http, key=read_only).call("write_file", path="b.txt", content="b")
    assert (await http.get("/ready")).status_code == 200
    text = (await http.get("/metrics")).text
    assert _value(text, 'secure_agent_tool_calls_total{outcome="denied",tool="read_file"}') >= 1
    assert _value(text, 'secure_agent_tool_calls_total{outcome="denied",tool="write_file"}') >= 1
    assert _value(text, 'secure_agent_mcp_requests_total{era="legacy",method="other",outcome="client_error"}') >= 1
    assert _value(text, 'secure_agent_runner_cold_start_duration_seconds_count{backend="local"}') == cold_before + 1
    assert _value(text, 'secure_agent_runner_claim_duration_seconds_count{backend="local"}') >= 2
    assert _value(text, 'secure_agent_runner_pool_runners{backend="local",state="ready"}') == 1
    assert _value(text, 'secure_agent_store_query_duration_seconds_count{operation="select"}') >= 1
    assert _value(text, "secure_agent_ready") == 1
    assert _value(text, 'secure_agent_dependency_up{dependency="store"}') == 1


async def test_broken_store_is_not_ready_and_counts_errors(app, http):
    import anyio
    from sqlalchemy.ext.asyncio import create_async_engine

    await anyio.sleep(0.3)  # let the background probe's first round (healthy store) finish
    store = app.state.services.store
    await store.engine.dispose()
    store.engine = create_async_engine("sqlite+aiosqlite:////nonexistent/dir/db.sqlite")
    instrument.instrument_store(store)
    instrument.instrument_store(store)  # idempotent
    assert (await http.get("/ready")).status_code == 503
    text = (await http.get("/metrics")).text
    assert _value(text, "secure_agent_ready") == 0
    assert _value(text, 'secure_agent_dependency_up{dependency="store"}') == 0


def test_runner_start_failures_are_counted():
    from mcp_api.runners.base import BackendStatus, RunnerStartError

    class Failing:
        name = "fake"

        async def client_for(self, tenant, workspace):
            raise RunnerStartError("no")

        async def status(self):
            return BackendStatus("fake", True, 0)

    import asyncio

    wrapped = instrument.InstrumentedRunners(Failing(), capacity=3)
    before = metrics.RUNNER_START_FAILURES.labels(backend="fake")._value.get()
    with pytest.raises(RunnerStartError):
        asyncio.run(wrapped.client_for("t", "w"))
    assert metrics.RUNNER_START_FAILURES.labels(backend="fake")._value.get() == before + 1
    assert metrics.RUNNER_POOL_CAPACITY.labels(backend="fake")._value.get() == 3
    assert wrapped.name == "fake" and asyncio.run(wrapped.status()).healthy


def test_tls_expiry_and_model_call_metrics(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    not_after = datetime.datetime(2031, 1, 2, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after).sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "ok.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "bad.crt").write_text("not a certificate")
    expiries = instrument.refresh_tls_expiry([tmp_path / "ok.crt", tmp_path / "bad.crt", tmp_path / "gone.crt"])
    assert expiries == {"ok.crt": not_after.timestamp(), "bad.crt": 0.0, "gone.crt": 0.0}

    metrics.record_model_call("anthropic", "m1", 0.5, input_tokens=10, output_tokens=3)
    metrics.record_model_call("anthropic", "m1", 2.0, error="timeout")
    assert metrics.MODEL_TOKENS.labels(provider="anthropic", model="m1", kind="output")._value.get() >= 3
    assert metrics.MODEL_ERRORS.labels(provider="anthropic", model="m1", reason="timeout")._value.get() >= 1
    assert {"secure_agent_model_requests_total", "secure_agent_agent_steps_bucket"} <= metrics.all_metric_names()


async def test_diagnostics_show_dependencies_and_observability(http):
    from mcp_helpers import TEST_KEY

    body = (await http.get("/diagnostics", headers={"authorization": f"Bearer {TEST_KEY}"})).json()
    assert body["dependencies"]["store"]["ok"] and body["dependencies"]["runners"]["backend"] == "local"
    assert body["observability"]["log_format"] == "json" and body["observability"]["tracing_enabled"]
