"""The official MCP conformance harness against the real server (with the test-only fixtures plugin).

- ``@modelcontextprotocol/conformance@0.1.16 server --suite all``: every one of its 32 server
  scenarios must run and report 0 failed checks.
- the 0.2.x harness (npm alias ``conformance-next``) with ``--requirements 2026-07-28``: every scored
  scenario passes; only optional extensions may fail, and only those listed in
  ``tests/conformance/expected-failures.2026-07-28.yml``.

Counting scenarios matters: an unknown tool comes back as an ``isError`` result, so a missing
fixture can still pass some checks. The Node toolchain comes from ``scripts/install-node-tools.sh``.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.node]

REPO = Path(__file__).resolve().parents[4]
NODE_BIN = REPO / ".tools" / "node22" / "bin"
NODE_MODULES = REPO / "tools" / "node" / "node_modules"
CONFORMANCE_DIR = Path(__file__).resolve().parents[1] / "conformance"
FIXTURES_PLUGIN = CONFORMANCE_DIR / "fixtures_plugin.py"
EXPECTED_FAILURES_2026 = CONFORMANCE_DIR / "expected-failures.2026-07-28.yml"

HARNESS_TIMEOUT_S = 240  # a full run takes ~10 s here; pytest-timeout is 300 s

# ---- pinned harness versions (tools/node/package.json) and what they run ------------------------
HARNESS_STABLE = ("0.1.16", NODE_MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js")
HARNESS_NEXT = ("0.2.0-alpha.12", NODE_MODULES / "conformance-next" / "dist" / "index.js")

# `conformance list` of 0.1.16: `server --suite all` runs exactly these.
SCENARIOS_0_1_16 = frozenset(
    {
        "server-initialize", "logging-set-level", "ping", "completion-complete",
        "tools-list", "tools-call-simple-text", "tools-call-image", "tools-call-audio",
        "tools-call-embedded-resource", "tools-call-mixed-content", "tools-call-with-logging",
        "tools-call-error", "tools-call-with-progress", "tools-call-sampling", "tools-call-elicitation",
        "json-schema-2020-12", "elicitation-sep1034-defaults", "server-sse-polling",
        "server-sse-multiple-streams", "elicitation-sep1330-enums",
        "resources-list", "resources-read-text", "resources-read-binary", "resources-templates-read",
        "resources-subscribe", "resources-unsubscribe",
        "prompts-list", "prompts-get-simple", "prompts-get-with-args", "prompts-get-embedded-resource",
        "prompts-get-with-image", "dns-rebinding-protection",
    }
)  # fmt: skip

# `conformance list --requirements 2026-07-28` of 0.2.0-alpha.12, server side.
REQUIRED_2026_07_28 = frozenset(
    {
        "server-stateless", "completion-complete", "tools-list", "tools-call-simple-text",
        "tools-call-image", "tools-call-audio", "tools-call-embedded-resource", "tools-call-mixed-content",
        "tools-call-error", "tools-call-with-progress", "server-sse-multiple-streams",
        "resources-list", "resources-read-text", "resources-read-binary", "resources-templates-read",
        "sep-2164-resource-not-found", "prompts-list", "prompts-get-simple", "prompts-get-with-args",
        "prompts-get-embedded-resource", "prompts-get-with-image", "dns-rebinding-protection", "caching",
        "input-required-result-basic-elicitation", "input-required-result-basic-sampling",
        "input-required-result-basic-list-roots", "input-required-result-request-state",
        "input-required-result-multiple-input-requests", "input-required-result-multi-round",
        "input-required-result-missing-input-response", "input-required-result-non-tool-request",
        "input-required-result-result-type", "input-required-result-unsupported-methods",
        "input-required-result-tampered-state", "input-required-result-capability-check",
        "input-required-result-ignore-extra-params", "input-required-result-validate-input",
    }
)  # fmt: skip
# Run and reported but never scored: optional extensions (may be listed as expected failures) ...
EXTENSIONS_2026_07_28 = frozenset(
    {
        "tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields", "tasks-request-state-removal",
        "tasks-mrtr-input", "tasks-request-headers", "tasks-dispatch-and-envelope",
        "tasks-status-notifications", "tasks-required-task-error", "tasks-mrtr-composition",
    }
)  # fmt: skip
# ... and pending core scenarios (not extensions: they must pass).
PENDING_2026_07_28 = frozenset(
    {"json-schema-2020-12", "http-header-validation", "http-custom-header-server-validation"}
)

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


def _node_env() -> dict[str, str]:
    if not (NODE_BIN / "node").exists():
        pytest.skip(
            f"{NODE_BIN / 'node'} is missing: run `bash scripts/install-node-tools.sh` (make node-tools)"
        )
    for _, entry in (HARNESS_STABLE, HARNESS_NEXT):
        assert entry.exists(), f"{entry} is missing: run `bash scripts/install-node-tools.sh`"
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}


def _check_version(env: dict[str, str], harness: tuple[str, Path]) -> None:
    version, entry = harness
    out = subprocess.run(
        ["node", str(entry), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == version, (
        f"{entry}: expected harness {version}, got {out.stdout!r} {out.stderr!r}"
    )


def _run_harness(env: dict[str, str], entry: Path, url: str, out_dir: Path, *args: str) -> tuple[int, str]:
    log = out_dir.parent / f"{out_dir.name}.log"
    with open(log, "w") as fh:
        proc = subprocess.run(
            ["node", str(entry), "server", "--url", url, "-o", str(out_dir), *args],
            env=env,
            cwd=entry.parents[1],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=HARNESS_TIMEOUT_S,
        )
    return proc.returncode, log.read_text(errors="replace")


def _results(out_dir: Path) -> dict[str, list[dict]]:
    """scenario name -> its checks, from the harness's ``-o`` directory (one dir per scenario)."""
    results: dict[str, list[dict]] = {}
    for child in sorted(out_dir.iterdir()):
        m = _RESULT_DIR.match(child.name)
        assert m, f"unexpected entry in results dir: {child.name}"
        scenario = m["scenario"]
        assert scenario not in results, f"scenario {scenario} ran twice"
        results[scenario] = json.loads((child / "checks.json").read_text())
    return results


def _failures(results: dict[str, list[dict]]) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = {}
    for scenario, checks in results.items():
        bad = [f"{c['id']}: {c.get('errorMessage', '')}" for c in checks if c["status"] == "FAILURE"]
        if bad:
            failed[scenario] = bad
    return failed


def _diff(expected: frozenset[str], ran: set[str]) -> str:
    return f"scenarios missing: {sorted(expected - ran)}, unexpected: {sorted(ran - expected)}"


def _tail(log: str) -> str:
    """The harness's summary (or the end of its output) for assertion messages."""
    at = log.rfind("=== SUMMARY ===")
    return log[at:] if at >= 0 else log[-4000:]


def _summary_total(log: str) -> tuple[int, int]:
    m = re.search(r"^Total: (\d+) passed, (\d+) failed", log, re.MULTILINE)
    assert m, f"no 'Total:' line in harness output:\n{log[-4000:]}"
    return int(m[1]), int(m[2])


# The 0.1.16 sampling/elicitation scenarios send server-to-client requests to a legacy
# (initialize-based) client mid-call. Only a legacy session can carry those, so the full-suite run
# uses the product's `legacy_sessions=stateful` mode; the default stateless mode is run too and
# must fail exactly these back-channel scenarios and nothing else (tests/conformance/README.md).
STATEFUL_ENV = {"SECURE_AGENT_LEGACY_SESSIONS": "stateful"}
BACKCHANNEL_0_1_16 = frozenset(
    {"tools-call-sampling", "tools-call-elicitation", "elicitation-sep1034-defaults", "elicitation-sep1330-enums"}
)


def _conformance_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"SECURE_AGENT_PLUGINS": json.dumps([str(FIXTURES_PLUGIN)]), **(extra or {})}


def test_conformance_0_1_16_stateless_fails_only_backchannel(live_server, tmp_path: Path) -> None:
    env = _node_env()
    server = live_server(_conformance_env())
    out_dir = tmp_path / "conformance-0.1.16-stateless"
    _run_harness(env, HARNESS_STABLE[1], server.url, out_dir, "--suite", "all")
    results = _results(out_dir)
    assert set(results) == SCENARIOS_0_1_16, _diff(SCENARIOS_0_1_16, set(results))
    assert set(_failures(results)) == BACKCHANNEL_0_1_16


def test_conformance_0_1_16_suite_all(live_server, tmp_path: Path) -> None:
    env = _node_env()
    _check_version(env, HARNESS_STABLE)
    server = live_server(_conformance_env(STATEFUL_ENV))
    out_dir = tmp_path / "conformance-0.1.16"

    rc, log = _run_harness(env, HARNESS_STABLE[1], server.url, out_dir, "--suite", "all")

    results = _results(out_dir)
    assert set(results) == SCENARIOS_0_1_16, _diff(SCENARIOS_0_1_16, set(results))
    failures = _failures(results)
    assert not failures, f"failed checks: {json.dumps(failures, indent=2)}\n{_tail(log)}"
    passed, failed = _summary_total(log)
    assert failed == 0 and passed > 0, _tail(log)
    assert rc == 0, _tail(log)
    # Every scenario passed at least one check, except the SSE ones, which only WARN (no failure)
    # when a stateless server offers no session to resume.
    empty = {s for s, checks in results.items() if not any(c["status"] == "SUCCESS" for c in checks)}
    assert empty <= {"server-sse-polling", "server-sse-multiple-streams"}, (
        f"scenarios with no passed check: {empty}"
    )


def test_conformance_next_requirements_2026_07_28(live_server, tmp_path: Path) -> None:
    env = _node_env()
    _check_version(env, HARNESS_NEXT)
    baseline = yaml.safe_load(EXPECTED_FAILURES_2026.read_text())
    allowed = {entry.split(":", 1)[0] for entry in baseline.get("server") or []}
    not_extensions = sorted(allowed - EXTENSIONS_2026_07_28)
    assert not not_extensions, f"expected-failures may only name optional extensions, not {not_extensions}"
    assert not baseline.get("client"), "no client entries: this file covers server scenarios only"
    server = live_server(_conformance_env())
    out_dir = tmp_path / "conformance-next"

    rc, log = _run_harness(
        env,
        HARNESS_NEXT[1],
        server.url,
        out_dir,
        "--requirements",
        "2026-07-28",
        "--expected-failures",
        str(EXPECTED_FAILURES_2026),
    )

    results = _results(out_dir)
    expected = REQUIRED_2026_07_28 | EXTENSIONS_2026_07_28 | PENDING_2026_07_28
    assert set(results) == expected, _diff(expected, set(results))
    failures = _failures(results)
    unexpected = {s: f for s, f in failures.items() if s not in allowed}
    assert not unexpected, f"unexpected failed checks: {json.dumps(unexpected, indent=2)}\n{_tail(log)}"
    stale = allowed - set(failures)
    assert not stale, f"expected-failures entries that now pass (remove them): {sorted(stale)}"
    assert "Baseline check passed" in log, _tail(log)
    assert rc == 0, _tail(log)
