"""Prometheus metrics of mcp-api: ours (prefix `secure_agent_`) and the HTTP ones (`http_*`).

Works in one process and under gunicorn with several workers: with `PROMETHEUS_MULTIPROC_DIR` set
(gunicorn.conf.py sets it), every worker writes its values to files there and `/metrics` sums
them (gauges say how: `livesum`, `livemin`, `livemax`).

A labelled metric has no series until a child exists. Children with a small, known label set are
created here at import (value 0) so dashboards and alerts see a series before the first event;
metrics whose labels are only known at run time (provider, model) are queried with `or vector(0)`.
The dashboards and alerts may only use names defined in this module (a test checks it).
"""

from __future__ import annotations

from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter, Gauge, Histogram, Summary

from .. import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

_children: dict[tuple, object] = {}


def child(metric, *values: str):
    """`metric.labels(*values)`, remembered: labels() validates and locks on every call, which the hot
    path pays several times a request. Label values here come from closed sets (the callers map
    anything else to "other"/"none"), so the cache stays small; it is bounded anyway."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        if len(_children) >= 10_000:
            _children.clear()
        found = _children[key] = metric.labels(*values)
    return found


# --- HTTP -------------------------------------------------------------------------------------
# The names, labels and buckets of prometheus-fastapi-instrumentator's default set, which dashboards
# and users' queries know. Recorded by the outermost layer (observability/http.py), which times every
# request anyway: the instrumentator's own middleware cost ~4 % of a tools/call and /mcp does not pass
# through FastAPI's stack (app.py). The instrumentator still serves /metrics.
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    ["method", "status", "handler"],
)
HTTP_REQUEST_SIZE = Summary(
    "http_request_size_bytes",
    "Content length of incoming requests by handler. Only value of header is respected. Otherwise "
    "ignored. No percentile calculated. ",
    ["handler"],
)
HTTP_RESPONSE_SIZE = Summary(
    "http_response_size_bytes",
    "Content length of outgoing responses by handler. Only value of header is respected. Otherwise "
    "ignored. No percentile calculated. ",
    ["handler"],
)
HTTP_LATENCY_HIGHR = Histogram(
    "http_request_duration_highr_seconds",
    "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ",
    buckets=(
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        1.5,
        2,
        2.5,
        3,
        3.5,
        4,
        4.5,
        5,
        7.5,
        10,
        30,
        60,
    ),
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ",
    ["method", "handler"],
    buckets=(0.1, 0.5, 1),
)

# --- MCP traffic and tools -------------------------------------------------------------------
MCP_REQUESTS = Counter(
    "secure_agent_mcp_requests_total",
    "MCP JSON-RPC requests handled, by method, protocol era and outcome "
    "(ok, tool_error, client_error, error = server fault).",
    ["method", "era", "outcome"],
)
MCP_REQUEST_SECONDS = Histogram(
    "secure_agent_mcp_request_duration_seconds",
    "Time spent handling one MCP request, by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
TOOL_CALLS = Counter(
    "secure_agent_tool_calls_total",
    "Tool calls, by tool and outcome (ok, denied, rejected, error = server fault).",
    ["tool", "outcome"],
)
TOOL_SECONDS = Histogram(
    "secure_agent_tool_duration_seconds", "Tool call latency, by tool.", ["tool"], buckets=LATENCY_BUCKETS
)

# --- security ----------------------------------------------------------------------------------
AUTH_FAILURES = Counter(
    "secure_agent_auth_failures_total", "Rejected authentication attempts, by reason.", ["reason"]
)
RATE_LIMITED = Counter(
    "secure_agent_rate_limited_total",
    "Requests refused by a rate limit or quota, by limit (key, tenant, ip).",
    ["limit"],
)

# --- runners and sandbox -------------------------------------------------------------------------
RUNNER_POOL = Gauge(
    "secure_agent_runner_pool_runners",
    "Workspace runners by backend and state (local: ready; kubernetes adds warm, claimed, starting).",
    ["backend", "state"],
    multiprocess_mode="livesum",
)
RUNNER_POOL_CAPACITY = Gauge(
    "secure_agent_runner_pool_capacity",
    "Most runners the backend will keep alive at once.",
    ["backend"],
    multiprocess_mode="livesum",
)
RUNNER_CLAIM_SECONDS = Histogram(
    "secure_agent_runner_claim_duration_seconds",
    "Time to get a ready runner for a call, warm or cold, by backend.",
    ["backend"],
    buckets=LATENCY_BUCKETS,
)
RUNNER_COLD_START_SECONDS = Histogram(
    "secure_agent_runner_cold_start_duration_seconds",
    "Time to start a new runner (process or pod) until it answers, by backend.",
    ["backend"],
    buckets=SLOW_BUCKETS,
)
RUNNER_START_FAILURES = Counter(
    "secure_agent_runner_start_failures_total", "Runners that failed to start, by backend.", ["backend"]
)
HOT_READS = Counter(
    "secure_agent_runner_hot_reads_total",
    "read_file calls of local runners: answered by mcp-api for an unchanged file (hit) or by the runner (miss).",
    ["result"],
)
SANDBOX_LIMIT_HITS = Counter(
    "secure_agent_sandbox_limit_hits_total",
    "Commands stopped or refused by a sandbox control, by control.",
    ["control"],
)

# --- agent and models ----------------------------------------------------------------------------
AGENT_RUNS = Counter("secure_agent_agent_runs_total", "Agent runs, by outcome.", ["outcome"])
AGENT_STEPS = Histogram(
    "secure_agent_agent_steps",
    "Steps (model turns) per finished agent run.",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
AGENT_TOOL_DECISIONS = Counter(
    "secure_agent_agent_tool_calls_total",
    "Tool calls the agent's model proposed, by tool and supervisor decision (allow, deny, ask).",
    ["tool", "decision"],
)
MODEL_REQUESTS = Counter(
    "secure_agent_model_requests_total",
    "Model provider calls, by provider, model and outcome.",
    ["provider", "model", "outcome"],
)
MODEL_TOKENS = Counter(
    "secure_agent_model_tokens_total",
    "Tokens used, by provider, model and kind (input, output).",
    ["provider", "model", "kind"],
)
MODEL_SECONDS = Histogram(
    "secure_agent_model_request_duration_seconds",
    "Model provider call latency, by provider and model.",
    ["provider", "model"],
    buckets=SLOW_BUCKETS,
)
MODEL_ERRORS = Counter(
    "secure_agent_model_errors_total",
    "Failed model provider calls, by provider, model and reason (timeout, rate_limited, server, auth, other).",
    ["provider", "model", "reason"],
)

# --- store and health ------------------------------------------------------------------------------
STORE_SECONDS = Histogram(
    "secure_agent_store_query_duration_seconds",
    "Store (SQLite / PostgreSQL) statement latency, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
STORE_ERRORS = Counter(
    "secure_agent_store_errors_total", "Failed store statements, by operation.", ["operation"]
)
DEPENDENCY_UP = Gauge(
    "secure_agent_dependency_up",
    "1 when a dependency answered the last readiness check (store, runners), else 0.",
    ["dependency"],
    multiprocess_mode="livemin",
)
READY = Gauge("secure_agent_ready", "1 when /ready would answer 200, else 0.", multiprocess_mode="livemin")
TLS_CERT_EXPIRY = Gauge(
    "secure_agent_tls_certificate_expiry_timestamp_seconds",
    "notAfter of each configured TLS certificate, as a Unix timestamp.",
    ["certificate"],
    multiprocess_mode="livemin",
)
BUILD_INFO = Gauge(
    "secure_agent_build_info",
    "Always 1; labels name the running version.",
    ["version"],
    multiprocess_mode="livemax",
)

STORE_OPERATIONS = ("select", "insert", "update", "delete", "other")
SANDBOX_CONTROLS = ("timeout", "memory", "cpu", "processes", "output", "file_size", "seccomp", "landlock")
AGENT_OUTCOMES = ("ok", "error", "denied", "limit", "cancelled")
AUTH_REASONS = ("missing", "malformed", "invalid")
RATE_LIMITS = ("key", "tenant", "ip")


def _initialize_children() -> None:
    """Series that exist (at 0) from the first scrape, for every label value known in advance."""
    for reason in AUTH_REASONS:
        AUTH_FAILURES.labels(reason=reason)
    for limit in RATE_LIMITS:
        RATE_LIMITED.labels(limit=limit)
    for control in SANDBOX_CONTROLS:
        SANDBOX_LIMIT_HITS.labels(control=control)
    for outcome in AGENT_OUTCOMES:
        AGENT_RUNS.labels(outcome=outcome)
    for operation in STORE_OPERATIONS:
        STORE_ERRORS.labels(operation=operation)
    for result in ("hit", "miss"):
        HOT_READS.labels(result=result)
    BUILD_INFO.labels(version=__version__).set(1)


_initialize_children()


def era_of(protocol_version: str | None) -> str:
    return "modern" if protocol_version in MODERN_PROTOCOL_VERSIONS else "legacy"


def record_model_call(
    provider: str,
    model: str,
    seconds: float,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    error: str | None = None,
) -> None:
    """For the agent's provider clients: one call's latency, tokens and outcome."""
    MODEL_REQUESTS.labels(provider=provider, model=model, outcome="error" if error else "ok").inc()
    MODEL_SECONDS.labels(provider=provider, model=model).observe(seconds)
    if error:
        MODEL_ERRORS.labels(provider=provider, model=model, reason=error).inc()
    if input_tokens:
        MODEL_TOKENS.labels(provider=provider, model=model, kind="input").inc(input_tokens)
    if output_tokens:
        MODEL_TOKENS.labels(provider=provider, model=model, kind="output").inc(output_tokens)


def all_metric_names() -> set[str]:
    """Every sample name this module can expose (with _total, _bucket, _sum, _count, _created)."""
    names: set[str] = set()
    for value in list(globals().values()):
        if isinstance(value, Counter | Gauge | Histogram):
            for family in value.describe():
                names.add(family.name)
                if family.type == "counter":
                    names.add(family.name + "_total")
                if family.type == "histogram":
                    names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names
