"""secure-agent against the bare stack and the plain `mcp` SDK, side by side, in one run (`make bench`).

    uv run python bench/mcp_bench.py [--duration 10] [--concurrency 1,16,64]
                                     [--deployments uvicorn1,gunicorn2] [--servers bare,sdk,secure]
                                     [--extras-calls 100] [--out bench/results] [--tag mcp_bench]
    BENCH_QUICK=1 uv run python bench/mcp_bench.py       # ~3 minutes: 3 s per point

Not a test: it measures this machine. Loopback only. What it starts, one server at a time:

(a) bare   — bench/servers/bare_app.py: FastAPI, parses the JSON-RPC tools/call, reads the 4 KiB file;
             the ceiling of this Python stack.
(b) sdk    — bench/servers/sdk_app.py: the plain `mcp` SDK, stateless Streamable HTTP, JSON responses,
             one `async def` tool reading the same file (what the obvious server gives).
(c) secure — secure-agent's production stack (`python -m mcp_api serve`, or gunicorn with
             services/mcp-api/gunicorn.conf.py): API-key auth, rate limiting ENABLED with buckets large
             enough never to throttle (its cost is measured, not its refusals), Prometheus metrics,
             JSON access logs at INFO (to a file), audit, and the hop to the workspace runner over its
             Unix socket, serving `read_file` on the same 4 KiB content. A read of a file unchanged
             since the runner answered it is answered by mcp-api (runners/hot_reads.py; the report's
             "hot" column says how many were); SECURE_AGENT_RUNNER__HOT_READ_CACHE_BYTES=0 in
             --secure-env makes every call take the hop.

Each server runs as one uvicorn worker and as gunicorn with 2 uvicorn workers. The load generator is
wrk (one thread, a generated Lua script per point, keep-alive connections), at each concurrency,
for each protocol era: legacy (2025-11-25) and modern (2026-07-28, Mcp-Method/Mcp-Name headers and
per-request _meta). The bare endpoint does not speak eras: it is measured once per deployment and
both eras of (b) and (c) are compared with it. Every point reports requests/s, p50/p95/p99 (wrk's
latency histogram), errors (socket errors + non-2xx), CPU-seconds per 1,000 requests of the whole
server process tree (master, workers and, for (c), the runner) and peak RSS (VmHWM) of the largest
process and of the tree. Before each server is measured, one request per era is checked to return
the file's content.

Then, on secure-agent with one worker, one call at a time (legacy era): `read_file`,
`list_directory` and `grep` over a 10,000-file directory, `write_file` (4 KiB), `run_command true`.

Writes <out>/<tag>.json and <out>/<tag>.md. Machines are noisy: compare within one run, as ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
API_KEY = "sa_benchmark000_" + "b" * 43
LEGACY, MODERN = "2025-11-25", "2026-07-28"
ERAS = {"legacy": LEGACY, "modern": MODERN}
FILE_PATH = "bench/file4k.txt"
BIG_DIR = "big"
BIG_FILES = 10_000
STARTUP_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECURE_ENV_OVERRIDES: dict[str, str] = {}
# (c)'s settings in every secure-agent measurement (mcp_bench, ab, inprocess).
SECURE_SETTINGS = {
    "SECURE_AGENT_DEV_API_KEY": API_KEY,
    "SECURE_AGENT_LOG_LEVEL": "INFO",
    # Enabled, but never throttling: its cost is measured, not its refusals.
    "SECURE_AGENT_RATE_LIMITS__ENABLED": "true",
    "SECURE_AGENT_RATE_LIMITS__KEY_PER_S": "10000000",
    "SECURE_AGENT_RATE_LIMITS__KEY_BURST": "10000000",
    "SECURE_AGENT_RATE_LIMITS__TENANT_PER_S": "10000000",
    "SECURE_AGENT_RATE_LIMITS__TENANT_BURST": "10000000",
    # The per-tenant in-flight cap likewise (default 32): wrk's 64 connections share one tenant.
    "SECURE_AGENT_RATE_LIMITS__MAX_INFLIGHT_TOOL_CALLS_PER_TENANT": "100000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_content() -> str:
    line = "secure-agent benchmark line {:04d} " + "x" * 28 + "\n"  # 64 bytes a line
    return "".join(line.format(i) for i in range(64))  # 4096 bytes


# ---------------------------------------------------------------------------------------------
# process tree accounting (/proc)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree(pid: int) -> list[int]:
    children, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of live processes plus what they reaped from their children (cutime+cstime)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / CLK_TCK


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    """CPU seconds as cpu_seconds() counts them, split between the workspace runners and the rest
    (uvicorn, or gunicorn's master and workers): which process is the bottleneck of a point."""
    roles: dict[str, float] = {"server": 0.0, "runners": 0.0}
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                role = "runners" if b"agent_runner" in f.read() else "server"
        except OSError:
            continue
        roles[role] += cpu_seconds([p])
    return roles


def rss_kib(pids: list[int], key: str) -> list[int]:
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key):
                        out.append(int(line.split()[1]))
                        break
        except OSError:
            continue
    return out


class RssSampler:
    """Peak RSS of the tree (sum) while a point runs; per-process peaks come from VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_sum, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_sum = max(self.peak_sum, sum(rss_kib(tree(self.pid), "VmRSS:")))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------
# servers


class Server:
    def __init__(self, kind: str, deployment: str, root: Path, bare_file: Path) -> None:
        self.kind, self.deployment, self.root = kind, deployment, root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{kind}-{deployment}.log"
        self.bare_file = bare_file
        self.proc: subprocess.Popen | None = None

    def command_env(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        workers = 2 if self.deployment == "gunicorn2" else 1
        bind = f"127.0.0.1:{self.port}"
        if self.kind in ("bare", "sdk"):
            env["BENCH_FILE"] = str(self.bare_file)
            module = f"{self.kind}_app:app"
            if workers == 1:
                cmd = [sys.executable, "-m", "uvicorn", module, "--app-dir", str(HERE / "servers"),
                       "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                       "--log-level", "warning"]
            else:
                cmd = [sys.executable, "-m", "gunicorn", module, "--chdir", str(HERE / "servers"),
                       "-k", "uvicorn.workers.UvicornWorker", "-w", "2", "-b", bind,
                       "--log-level", "warning", "--keep-alive", "5"]
            return cmd, env
        env |= {
            "SECURE_AGENT_PORT": str(self.port),
            "SECURE_AGENT_HOST": "127.0.0.1",
            "SECURE_AGENT_DATA_DIR": str(self.root / f"data-{self.deployment}"),
            **SECURE_SETTINGS,
        }
        env |= SECURE_ENV_OVERRIDES  # --secure-env: experiments only (what does feature X cost?)
        if workers == 1:
            cmd = [sys.executable, "-m", "mcp_api", "serve"]
        else:
            env["SECURE_AGENT_WORKERS"] = "2"
            cmd = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "services/mcp-api/gunicorn.conf.py")]
        return cmd, env

    def start(self) -> None:
        cmd, env = self.command_env()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind}/{self.deployment} exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind}/{self.deployment} did not answer /health")
            time.sleep(0.05)
        if self.deployment == "gunicorn2":  # let both workers boot
            deadline = time.monotonic() + 20
            while len([p for p in tree(self.proc.pid) if p != self.proc.pid]) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def request_for(era: str | None, name: str, arguments: dict, req_id: int = 1) -> tuple[dict, dict]:
    params: dict = {"name": name, "arguments": arguments}
    headers = {"content-type": "application/json", "accept": "application/json",
               "authorization": f"Bearer {API_KEY}"}
    if era == "modern":
        headers |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        }
    else:
        headers["mcp-protocol-version"] = LEGACY
    return {"jsonrpc": "2.0", "id": req_id, "method": "tools/call", "params": params}, headers


def call(http: httpx.Client, base_url: str, era: str | None, name: str, arguments: dict) -> dict:
    body, headers = request_for(era, name, arguments)
    r = http.post(f"{base_url}/mcp", json=body, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:500]}")
    result = r.json().get("result")
    if not result or result.get("isError"):
        raise RuntimeError(f"{name}: {r.text[:500]}")
    return result


# ---------------------------------------------------------------------------------------------
# wrk

LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers = {{}}
{headers}
function done(summary, latency, requests)
  local f = io.open({out}, "w")
  f:write(string.format('{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
  f:close()
end
"""


def lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for ASCII content


def secure_counters(server: Server) -> dict[str, int] | None:
    """From secure-agent's /metrics (None for (a) and (b)): MCP requests that did not end "ok", and the
    read_file calls answered by mcp-api itself (hot reads) or by the runner."""
    if server.kind != "secure":
        return None
    counts = {"failed": 0.0, "hot_hits": 0.0, "hot_misses": 0.0}
    for line in httpx.get(f"{server.base_url}/metrics", timeout=30).text.splitlines():
        if line.startswith("secure_agent_mcp_requests_total{") and 'outcome="ok"' not in line:
            counts["failed"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("secure_agent_runner_hot_reads_total{"):
            counts["hot_hits" if 'result="hit"' in line else "hot_misses"] += float(line.rsplit(" ", 1)[1])
    return {k: int(v) for k, v in counts.items()}


def wrk_point(server: Server, era: str | None, arguments: dict, conc: int, duration: float, tmp: Path) -> dict:
    body, headers = request_for(era, "read_file", arguments)
    out = tmp / f"wrk-{server.kind}-{server.deployment}-{era}-{conc}.json"
    script = tmp / "point.lua"
    script.write_text(LUA.format(
        body=lua_str(json.dumps(body, separators=(",", ":"))),
        headers="\n".join(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items()),
        out=lua_str(str(out)),
    ))
    pids = tree(server.proc.pid)
    counters0 = secure_counters(server)
    cpu0 = cpu_seconds(pids)
    roles0 = cpu_by_role(pids)
    with RssSampler(server.proc.pid) as rss:
        subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                        "-s", str(script), f"{server.base_url}/mcp"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pids = tree(server.proc.pid)
    cpu = cpu_seconds(pids) - cpu0
    roles = {k: v - roles0.get(k, 0.0) for k, v in cpu_by_role(pids).items()}
    counters = secure_counters(server)
    delta = {k: v - counters0[k] for k, v in counters.items()} if counters0 is not None and counters else {}
    failed = delta.get("failed", 0)
    reads = delta.get("hot_hits", 0) + delta.get("hot_misses", 0)
    w = json.loads(out.read_text())
    hwm = rss_kib(pids, "VmHWM:")
    n = w["requests"]
    return {
        "rps": round(n / (w["duration_us"] / 1e6), 1),
        "requests": n,
        "p50_ms": round(w["p50_us"] / 1000, 2),
        "p95_ms": round(w["p95_us"] / 1000, 2),
        "p99_ms": round(w["p99_us"] / 1000, 2),
        "max_ms": round(w["max_us"] / 1000, 2),
        "errors": w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"] + failed,
        "non_2xx": w["status"],
        # HTTP 200 answers that were not a successful call (a tool error, e.g. the per-tenant in-flight
        # cap refusing it): wrk cannot see them, secure-agent's own counter can.
        "failed_calls": failed,
        # (c): the share of read_file calls mcp-api answered itself, the file being unchanged since the
        # runner's answer (runners/hot_reads.py); the rest took the runner hop.
        "hot_read_share": round(delta["hot_hits"] / reads, 4) if reads else None,
        "cpu_s_per_1k": round(cpu / n * 1000, 3) if n else None,
        # Split by process (at 1.00 core, the server process is the bottleneck of one worker).
        "cpu_s_per_1k_by_process": {k: round(v / n * 1000, 3) for k, v in roles.items()} if n else None,
        "cores_by_process": {k: round(v / (w["duration_us"] / 1e6), 2) for k, v in roles.items()},
        "peak_rss_mb_largest_process": round(max(hwm) / 1024, 1) if hwm else None,
        "peak_rss_mb_tree": round(max(rss.peak_sum, sum(rss_kib(pids, "VmRSS:"))) / 1024, 1),
    }


# ---------------------------------------------------------------------------------------------
# secure-agent specifics


def write_bench_file(http: httpx.Client, server: Server, content: str | None = None) -> None:
    """The 4 KiB file every read_file scenario reads, written through the server."""
    call(http, server.base_url, "legacy", "write_file", {"path": FILE_PATH, "content": content or file_content()})


def prepare_secure(server: Server, content: str) -> dict:
    """The 4 KiB file, and the 10,000-file directory (written straight to disk: it is setup, not load)."""
    with httpx.Client(timeout=60) as http:
        write_bench_file(http, server, content)
        call(http, server.base_url, "legacy", "write_file", {"path": f"{BIG_DIR}/f00000.txt", "content": "x\n"})
    ws = list((server.root / f"data-{server.deployment}").glob(f"**/default/{BIG_DIR}"))
    if ws:
        for i in range(1, BIG_FILES):
            (ws[0] / f"f{i:05d}.txt").write_text(f"line one of {i}\nneedle {i}\n" if i % 100 == 0 else f"file {i}\n")
    return {"read_file": {"path": FILE_PATH}}


def check_read(server: Server, eras: list[str | None], arguments: dict, content: str) -> None:
    with httpx.Client(timeout=30) as http:
        for era in eras:
            result = call(http, server.base_url, era, "read_file", arguments)
            text = result["content"][0]["text"]
            if text != content:
                raise RuntimeError(f"{server.kind}/{era}: read_file returned the wrong content: {text[:100]!r}")


def extras(server: Server, calls: int) -> dict:
    def timed(http: httpx.Client, name: str, args_fn, n: int) -> dict:
        samples = []
        for i in range(n):
            args = args_fn(i)
            t = time.perf_counter()
            call(http, server.base_url, "legacy", name, args)
            samples.append(time.perf_counter() - t)
        samples.sort()
        q = lambda f: round(samples[min(len(samples) - 1, int(f * len(samples)))] * 1000, 2)  # noqa: E731
        return {"calls": n, "p50_ms": q(0.5), "p95_ms": q(0.95), "mean_ms": round(statistics.mean(samples) * 1000, 2)}

    content = "y" * 4096
    heavy = max(3, calls // 10)
    with httpx.Client(timeout=120) as http:
        for _ in range(5):
            call(http, server.base_url, "legacy", "run_command", {"command": ["true"]})
        big = call(http, server.base_url, "legacy", "list_directory", {"path": BIG_DIR, "max_entries": 5000})
        entries = big.get("structuredContent", {}).get("entries") or big.get("structuredContent", {}).get("result", {})
        return {
            "read_file 4 KiB": timed(http, "read_file", lambda i: {"path": FILE_PATH}, calls),
            "write_file 4 KiB": timed(http, "write_file", lambda i: {"path": f"w/{i % 10}.txt", "content": content}, calls),
            "run_command true": timed(http, "run_command", lambda i: {"command": ["true"]}, calls),
            f"list_directory {BIG_FILES} files": timed(
                http, "list_directory", lambda i: {"path": BIG_DIR, "max_entries": 5000}, heavy),
            f"grep {BIG_FILES} files": timed(http, "grep", lambda i: {"pattern": "needle", "path": BIG_DIR}, heavy),
            "_list_directory_entries_seen": len(entries) if isinstance(entries, list) else None,
        }


# ---------------------------------------------------------------------------------------------
# report


def ratio(x, y):
    return round(x / y, 2) if x and y else None


def build_ratios(points: list[dict]) -> list[dict]:
    idx = {(p["deployment"], p["server"], p["era"], p["concurrency"]): p for p in points}
    rows = []
    for (dep, server, era, conc), p in idx.items():
        if server != "secure":
            continue
        a = idx.get((dep, "bare", None, conc))
        b = idx.get((dep, "sdk", era, conc))
        rows.append({
            "deployment": dep, "era": era, "concurrency": conc,
            "rps_c_over_a": ratio(p["rps"], a and a["rps"]),
            "rps_c_over_b": ratio(p["rps"], b and b["rps"]),
            "p99_c_over_b": ratio(p["p99_ms"], b and b["p99_ms"]),
            "cpu_c_over_b": ratio(p["cpu_s_per_1k"], b and b["cpu_s_per_1k"]),
        })
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# {report['tag']}: secure-agent vs the bare stack vs the plain `mcp` SDK",
        "",
        f"Measured {report['measured_at']} on {m['cpu_model']} ({m['cpus']} CPUs, {m['mem_gb']} GB, kernel "
        f"{m['kernel']}, Python {m['python']}, {m['wrk']}); load average {report['load_avg_1m']['before']} before, "
        f"{report['load_avg_1m']['after']} after. Command: `{report['command']}`. {report['duration_s']} s per "
        "point, wrk one thread, keep-alive, loopback. `read_file` of a 4 KiB text file as a JSON-RPC tools/call "
        "(JSON responses). (a) bare FastAPI, (b) plain `mcp` SDK stateless, (c) secure-agent full stack "
        "(auth, rate limiting on with non-throttling buckets, metrics, JSON logs, audit, runner hop). "
        "CPU = CPU-seconds of the whole server process tree per 1,000 requests. RSS = peak of the largest "
        "process / of the tree. Hot = the share of (c)'s calls that mcp-api answered itself because the "
        "file was unchanged since the runner's answer (runners/hot_reads.py); the rest took the runner hop.",
        "",
        "| deployment | server | era | c | req/s | p50 ms | p95 ms | p99 ms | errors | CPU s/1k | RSS MB (proc / tree) | hot |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report["points"]:
        hot = p.get("hot_read_share")
        lines.append(
            f"| {p['deployment']} | {p['server']} | {p['era'] or '-'} | {p['concurrency']} | {p['rps']:,} | "
            f"{p['p50_ms']} | {p['p95_ms']} | {p['p99_ms']} | {p['errors']} | {p['cpu_s_per_1k']} | "
            f"{p['peak_rss_mb_largest_process']} / {p['peak_rss_mb_tree']} | "
            f"{'-' if hot is None else f'{hot:.1%}'} |"
        )
    lines += ["", "## Ratios (secure-agent c over bare a and plain SDK b; throughput > 1 is better, p99/CPU < 1 is better)",
              "", "| deployment | era | c | req/s c/a | req/s c/b | p99 c/b | CPU c/b |", "|---|---|---|---|---|---|---|"]
    for r in report["ratios"]:
        lines.append(f"| {r['deployment']} | {r['era']} | {r['concurrency']} | {r['rps_c_over_a']} | "
                     f"{r['rps_c_over_b']} | {r['p99_c_over_b']} | {r['cpu_c_over_b']} |")
    if report.get("extras"):
        lines += ["", "## End to end, one call at a time (secure-agent, one uvicorn worker, legacy era)", "",
                  "| operation | calls | p50 ms | p95 ms | mean ms |", "|---|---|---|---|---|"]
        for name, s in report["extras"].items():
            if not name.startswith("_"):
                lines.append(f"| {name} | {s['calls']} | {s['p50_ms']} | {s['p95_ms']} | {s['mean_ms']} |")
    lines.append("")
    return "\n".join(lines)


def machine() -> dict:
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version[0].split(" [")[0] if wrk_version else "wrk",
    }


def main(argv: list[str] | None = None) -> int:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3 if quick else 10, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1 if quick else 2, help="seconds of untimed load per server and era")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--deployments", default="uvicorn1,gunicorn2")
    parser.add_argument("--servers", default="bare,sdk,secure")
    parser.add_argument("--eras", default="legacy,modern")
    parser.add_argument("--extras-calls", type=int, default=20 if quick else 100,
                        help="calls per end-to-end operation (0: skip them)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--tag", default="mcp_bench")
    parser.add_argument("--secure-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra SECURE_AGENT_* setting for (c), for cost experiments (not for the report)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install wrk)")
    SECURE_ENV_OVERRIDES.update(kv.split("=", 1) for kv in args.secure_env)
    concs = [int(c) for c in args.concurrency.split(",")]
    eras = args.eras.split(",")
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="sa-bench-", dir="/tmp"))
    root.chmod(0o755)
    content = file_content()
    bare_file = root / "file4k.txt"
    bare_file.write_text(content)
    points: list[dict] = []
    extra: dict = {}
    try:
        for dep in args.deployments.split(","):
            for kind in args.servers.split(","):
                server = Server(kind, dep, root, bare_file)
                server.start()
                try:
                    arguments = {"path": "file4k.txt"}
                    if kind == "secure":
                        arguments = prepare_secure(server, content)["read_file"]
                    kind_eras: list[str | None] = [None] if kind == "bare" else list(eras)
                    check_read(server, kind_eras, arguments, content)
                    for era in kind_eras:
                        wrk_point(server, era, arguments, 16, args.warmup, root)
                        for conc in concs:
                            point = wrk_point(server, era, arguments, conc, args.duration, root)
                            point = {"deployment": dep, "server": kind, "era": era, "concurrency": conc} | point
                            print(json.dumps(point), flush=True)
                            points.append(point)
                    if kind == "secure" and dep == "uvicorn1" and args.extras_calls > 0:
                        extra = extras(server, args.extras_calls)
                        print(json.dumps(extra), flush=True)
                except Exception:
                    sys.stderr.write(server.log_path.read_text(errors="replace")[-3000:])
                    raise
                finally:
                    server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "tag": args.tag,
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": ("BENCH_QUICK=1 " if quick else "") + "python bench/mcp_bench.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "duration_s": args.duration,
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "points": points,
        "ratios": build_ratios(points),
        "extras": extra,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.tag}.md").write_text(markdown(report))
    print(f"wrote {args.out / (args.tag + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
