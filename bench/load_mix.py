"""Run bench/locustfile.py (a realistic client mix) against secure-agent on loopback, bounded in time.

    uv run python bench/load_mix.py ramp  [--p99-ms 100] [--step-users 8] [--step-s 15] [--max-users 96]
    uv run python bench/load_mix.py soak  [--users 16] [--seconds 300] [--sample-s 30]
    uv run python bench/load_mix.py smoke [--users 4] [--seconds 3]        # the bench smoke test

Starts the instant scripted model (bench/servers/instant_model.py) and secure-agent (one uvicorn worker,
the benchmark's settings: rate limiting on with non-throttling buckets, JSON logs to a file, audit),
writes the files the users read, runs locust headless with LOCUST_MODE=<mode>, and writes
<out>/locust_<mode>.{json,md}. ramp: the capacity is the last step whose p99 met the objective with no
failure. soak: RSS of the server tree (mcp-api and its runner) every --sample-s seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_overhead as ao  # noqa: E402
import mcp_bench as mb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("ramp", "soak", "smoke"))
    parser.add_argument("--p99-ms", type=float, default=100)
    parser.add_argument("--step-users", type=int, default=8)
    parser.add_argument("--step-s", type=float, default=15)
    parser.add_argument("--max-users", type=int, default=96)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--sample-s", type=float, default=30)
    parser.add_argument("--out", type=Path, default=mb.HERE / "results")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    users = args.users or {"soak": 16, "smoke": 4, "ramp": 0}[args.mode]
    seconds = args.seconds or {"soak": 300.0, "smoke": 3.0, "ramp": 0}[args.mode]
    limit_s = (args.max_users // args.step_users + 2) * args.step_s if args.mode == "ramp" else seconds
    root = Path(tempfile.mkdtemp(prefix="sa-locust-", dir="/tmp"))
    root.chmod(0o755)
    port = mb.free_port()
    model = ao.start_model(port)
    mb.SECURE_ENV_OVERRIDES.update(ao.model_env(port))
    server = mb.Server("secure", "uvicorn1", root, root / "unused")
    result_path = root / "result.json"
    try:
        server.start()
        with httpx.Client(timeout=60) as http:  # only the file the users read (no 10,000-file directory)
            mb.write_bench_file(http, server)
            # Warm-up: one-time costs (the model client's first import, the sandbox's first start) are
            # recorded here, not charged to the first load step.
            warmup = {}
            for name, arguments in (
                ("agent_run", {"prompt": "steps=1", "max_steps": 5}),
                ("run_command", {"command": ["true"]}),
            ):
                started = time.perf_counter()
                mb.call(http, server.base_url, "modern", name, arguments)
                warmup[f"first_{name}_ms"] = round((time.perf_counter() - started) * 1000, 1)
        env = os.environ | {
            "LOCUST_MODE": args.mode, "LOCUST_P99_MS": str(args.p99_ms), "LOCUST_STEP_USERS": str(args.step_users),
            "LOCUST_STEP_S": str(args.step_s), "LOCUST_MAX_USERS": str(args.max_users), "LOCUST_USERS": str(users),
            "LOCUST_SOAK_S": str(seconds), "LOCUST_SAMPLE_S": str(args.sample_s), "LOCUST_RESULT": str(result_path),
            "LOCUST_SERVER_PID": str(server.proc.pid),
        }  # fmt: skip
        cmd = [sys.executable, "-m", "locust", "-f", str(mb.HERE / "locustfile.py"), "--headless",
               "--host", server.base_url, "--only-summary", "--loglevel", "WARNING",
               "--csv", str(root / "stats")]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit_s + 60)
        if not result_path.exists():
            raise RuntimeError(f"locust wrote no result (exit {done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(result_path.read_text())
        stats_csv = root / "stats_stats.csv"
        result["per_request"] = stats_csv.read_text() if stats_csv.exists() else None
        failures_csv = root / "stats_failures.csv"
        result["failures_by_error"] = failures_csv.read_text() if failures_csv.exists() else None
        result["warmup"] = warmup
    finally:
        server.stop()
        model.terminate()
        model.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    result |= {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/load_mix.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": mb.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "locust_exit_code": done.returncode,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"locust_{args.mode}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"locust_{args.mode}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [
        f"# locust {result['mode']} — {result['measured_at']}",
        "",
        f"`{result['command']}`; load average {result['load_avg_1m']} at the end; p99 objective "
        f"{result['p99_objective_ms']:g} ms. Mix (users' weights): modern readers 6, legacy readers 3, "
        "writers 2, command runners 1, agent runs 1 (3 read_file steps, instant model).",
        "",
    ]
    if result.get("warmup"):
        lines += [f"Warm-up before the load (one call each, not counted): {json.dumps(result['warmup'])}.", ""]
    if result["steps"]:
        lines += [
            "| users | req/s | requests | failures | p50 ms | p99 ms | RSS tree MB |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['users']} | {s['rps']} | {s['requests']} | {s['failures']} | {s['p50_ms']} | {s['p99_ms']} "
            f"| {s['rss_mb']} |"
            for s in result["steps"]
        ]
        lines += [
            "",
            f"Stopped: {result['stopped_because']}. Capacity (last step meeting the objective): "
            f"{json.dumps(result['capacity'])}.",
        ]
    if result["samples"]:
        lines += ["| t s | requests | failures | RSS tree MB |", "|---|---|---|---|"]
        lines += [
            f"| {s['t_s']} | {s['requests']} | {s['failures']} | {s['rss_mb']} |" for s in result["samples"]
        ]
    if result.get("failures_by_error") and result["failures_by_error"].count("\n") > 1:
        lines += ["", "Failures by error (locust's CSV):", "", "```", result["failures_by_error"].strip(), "```"]
    if result.get("per_request"):
        lines += [
            "",
            "Per request type (whole run, locust's CSV):",
            "",
            "```",
            result["per_request"].strip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
