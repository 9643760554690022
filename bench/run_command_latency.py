"""End-to-end `run_command true` latency through MCP, and the raw sandbox start overhead.

    uv run python bench/run_command_latency.py [--calls 300] [--warmup 30] [--sandbox-runs 200]
                                               [--out bench/results]

Not a test: it measures this machine and writes bench/results/run_command.json and .md.

1. Starts the real server (`python -m mcp_api serve`, configured only through SECURE_AGENT_*
   variables: a free port, a fresh data dir, a fixed dev API key) and waits for /health.
2. Calls the MCP tool `run_command` with `command=["true"]` over HTTP (one keep-alive
   connection, one call at a time, `Accept: application/json`, so that the server answers with a
   JSON body rather than an SSE stream) in both protocol eras: legacy
   (2025-11-25, no initialize needed by the stateless server) and modern (2026-07-28, with the
   Mcp-Method/Mcp-Name headers and per-request _meta). Warm-up calls first (the first one starts
   the workspace runner and its fork server), then the eras take turns in blocks so that machine
   noise hits both alike. Each timed call is the whole round trip: HTTP, auth, rate limiting,
   the MCP layer, the runner call over its Unix socket, the sandboxed fork/exec of `true`, and
   the JSON result.
3. Stops the server, then measures in this process the raw sandbox start overhead over a plain
   fork/exec with bench/sandbox_start.py's `measure()` (same machine, same run).

The rate limiter stays on, with buckets large enough that a few hundred calls are not throttled
(what is measured is its cost, not its refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox_start  # noqa: E402 - the sibling benchmark, reused for the raw sandbox figures
from agent_runner.sandbox.spawn import shutdown_forkserver  # noqa: E402

API_KEY = "sa_benchmark000_" + "b" * 43
LEGACY, MODERN = "2025-11-25", "2026-07-28"
ERAS = ("legacy", "modern")
ROUNDS = 5
STARTUP_TIMEOUT_S = 60.0
TARGET_OVERHEAD_MS = sandbox_start.TARGET_MS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    data_dir = root / "data"
    log_path = root / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")},
        "SECURE_AGENT_PORT": str(port),
        "SECURE_AGENT_DATA_DIR": str(data_dir),
        "SECURE_AGENT_DEV_API_KEY": API_KEY,
        "SECURE_AGENT_LOG_LEVEL": "WARNING",
        "SECURE_AGENT_RATE_LIMITS__KEY_PER_S": "100000",
        "SECURE_AGENT_RATE_LIMITS__KEY_BURST": "100000",
        "SECURE_AGENT_RATE_LIMITS__TENANT_PER_S": "100000",
        "SECURE_AGENT_RATE_LIMITS__TENANT_BURST": "100000",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_api", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return proc, base_url, log_path
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"server did not answer /health in {STARTUP_TIMEOUT_S:g} s")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Caller:
    """One MCP client per era, speaking JSON-RPC over one keep-alive connection."""

    def __init__(self, http: httpx.Client, era: str) -> None:
        self.http, self.era = http, era
        self.ids = itertools.count(1)

    def call_true(self) -> dict:
        params: dict = {"name": "run_command", "arguments": {"command": ["true"]}}
        headers = {
            "content-type": "application/json",
            "accept": "application/json",  # JSON responses (both types in Accept get SSE)
            "authorization": f"Bearer {API_KEY}",
        }
        if self.era == "modern":
            headers |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "run_command"}
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            }
        else:
            headers["mcp-protocol-version"] = LEGACY
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call", "params": params}
        response = self.http.post("/mcp", json=body, headers=headers)
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            raise RuntimeError(
                f"{self.era}: HTTP {response.status_code} {response.headers.get('content-type')}: {response.text[:500]}"
            )
        result = response.json().get("result") or {}
        outcome = (result.get("structuredContent") or {}).get("result") or {}
        if result.get("isError") or outcome.get("exit_code") != 0:
            raise RuntimeError(f"{self.era}: run_command true failed: {response.text[:500]}")
        return outcome


def measure_mcp(base_url: str, calls: int, warmup: int) -> dict:
    samples: dict[str, list[float]] = {era: [] for era in ERAS}
    command_s: dict[str, list[float]] = {era: [] for era in ERAS}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        callers = {era: Caller(http, era) for era in ERAS}
        for caller in callers.values():
            for _ in range(max(1, warmup)):
                caller.call_true()
        per_block = max(1, calls // ROUNDS)
        for _ in range(ROUNDS):
            for era, caller in callers.items():
                for _ in range(per_block):
                    start = time.perf_counter()
                    outcome = caller.call_true()
                    samples[era].append(time.perf_counter() - start)
                    command_s[era].append(outcome["duration_s"])
        diagnostics = http.get("/diagnostics", headers={"authorization": f"Bearer {API_KEY}"})
    stats = {}
    for era in ERAS:
        stats[era] = sandbox_start.summary(samples[era])
        # The runner's own measure of the command (spawn to exit, inside the sandbox).
        stats[era]["command_median_ms"] = round(statistics.median(command_s[era]) * 1000, 3)
    controls = (
        diagnostics.json().get("sandbox", {}).get("controls") if diagnostics.status_code == 200 else None
    )
    return {"stats": stats, "server_controls": controls}


def markdown(report: dict) -> str:
    mcp, raw = report["mcp"], report["sandbox_start"]
    lines = [
        "# run_command latency",
        "",
        f"Measured {report['measured_at']} on {report['machine']} ({report['cpus']} CPUs, kernel {report['kernel']}, "
        f"Python {report['python']}; 1-minute load average {report['load_avg_1m']['before']} before, "
        f"{report['load_avg_1m']['after']} after: other work on the machine shows in the tails).",
        "",
        "## End to end through MCP",
        "",
        f'`run_command` with `command=["true"]` against the real server (`python -m mcp_api serve`, uvicorn, SQLite '
        f"store, local runner as {report['runner_user']}), {report['calls']} timed calls per era after "
        f"{report['warmup']} warm-up calls, one at a time over one keep-alive HTTP connection, JSON responses, "
        f'in {ROUNDS} alternating blocks. "command" is the runner\'s own measure of the sandboxed process '
        "(spawn to exit) inside that round trip.",
        "",
        "| era | median ms | p10 ms | p90 ms | mean ms | command median ms |",
        "|---|---|---|---|---|---|",
    ]
    for era, s in mcp["stats"].items():
        version = LEGACY if era == "legacy" else MODERN
        lines.append(
            f"| {era} ({version}) | {s['median_ms']} | {s['p10_ms']} | {s['p90_ms']} | {s['mean_ms']} | {s['command_median_ms']} |"
        )
    lines += [
        "",
        "## Raw sandbox start overhead",
        "",
        f"`/bin/true` from one asyncio event loop in this process (bench/sandbox_start.py's `measure()`), "
        f"{report['sandbox_runs']} runs per variant; overhead = sandboxed median - plain fork/exec median. "
        f"Target: <= {TARGET_OVERHEAD_MS:g} ms.",
        "",
        "| variant | median ms | p10 ms | p90 ms | overhead (median) ms |",
        "|---|---|---|---|---|",
    ]
    for name, s in raw["stats"].items():
        overhead = s.get("overhead_median_ms")
        lines.append(
            f"| {name} | {s['median_ms']} | {s['p10_ms']} | {s['p90_ms']} | {'' if overhead is None else overhead} |"
        )
    verdict = "met" if report["target_met"] else "NOT met"
    lines += [
        "",
        f"Target {verdict}: worst sandbox overhead {report['worst_overhead_ms']} ms (median). The first command "
        f"after another policy's starts cold: about {raw['cold_ms']} ms.",
        "",
    ]
    controls = mcp.get("server_controls") or raw["controls"]["sandbox-full"]
    lines += ["Controls the server's commands ran under (from /diagnostics):", ""]
    lines += [f"- {k}: {v}" for k, v in controls.items()]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="timed run_command calls per protocol era")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per era first")
    parser.add_argument(
        "--sandbox-runs", type=int, default=200, help="runs per variant of the raw measurement"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]

    root = Path(tempfile.mkdtemp(prefix="sa-bench-rc-", dir="/tmp"))
    root.chmod(0o755)
    try:
        proc, base_url, log_path = start_server(root)
        try:
            mcp = measure_mcp(base_url, args.calls, args.warmup)
        except Exception:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            stop_server(proc)
        raw_base = root / "raw"
        raw_base.mkdir(mode=0o755)
        try:
            raw = asyncio.run(sandbox_start.measure(args.sandbox_runs, raw_base))
        finally:
            shutdown_forkserver()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    worst = max(s["overhead_median_ms"] for name, s in raw["stats"].items() if name != "plain")
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "python": sys.version.split()[0],
        "runner_user": "root" if os.geteuid() == 0 else f"uid {os.geteuid()}",
        "calls": max(1, args.calls // ROUNDS) * ROUNDS,
        "warmup": max(1, args.warmup),
        "sandbox_runs": args.sandbox_runs,
        "target_overhead_ms": TARGET_OVERHEAD_MS,
        "worst_overhead_ms": worst,
        "target_met": worst <= TARGET_OVERHEAD_MS,
        "mcp": mcp,
        "sandbox_start": raw,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "run_command.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "run_command.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
