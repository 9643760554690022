"""The agent loop's own cost per step, with an instant scripted model (bench/servers/instant_model.py).

    uv run python bench/agent_overhead.py [--runs 20] [--steps 5] [--out bench/results]

Starts the instant model and secure-agent (one uvicorn worker, the benchmark's settings), then runs
`agent_run` one at a time: with `steps=0` (the model answers at once: run set-up, conversation
storage, one model round trip) and with `steps=N` (N read_file tool calls, one per model turn).
Per-step overhead = (median run time with N steps − median with 0 steps) / N; it includes one model
round trip over loopback HTTP (< 1 ms here, reported separately as `model_rtt_ms`) and one
`read_file` through the supervisor and the runner. Also reports one direct `read_file` tools/call for
comparison. Writes <out>/agent_overhead.{json,md}. Loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402


def start_model(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "instant_model:app", "--app-dir", str(mb.HERE / "servers"),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"messages": []}, timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("instant model did not start")


def model_env(port: int) -> dict[str, str]:
    providers = {
        "instant": {
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "api_key": "sk-bench-not-a-key",
        }
    }
    return {
        "SECURE_AGENT_AGENT__PROVIDERS": json.dumps(providers),
        "SECURE_AGENT_AGENT__ROLES": json.dumps({"default": {"provider": "instant", "model": "instant"}}),
    }


def agent_run(http: httpx.Client, base_url: str, prompt: str) -> dict:
    result = mb.call(http, base_url, "legacy", "agent_run", {"prompt": prompt, "max_steps": 50})
    structured = result.get("structuredContent") or {}
    if result.get("isError") or structured.get("status") not in ("completed", None):
        raise RuntimeError(f"agent_run failed: {json.dumps(result)[:500]}")
    return structured


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=mb.HERE / "results")
    parser.add_argument("--tag", default="agent_overhead")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = Path(tempfile.mkdtemp(prefix="sa-agent-", dir="/tmp"))
    root.chmod(0o755)
    port = mb.free_port()
    model = start_model(port)
    mb.SECURE_ENV_OVERRIDES.update(model_env(port))
    server = mb.Server("secure", "uvicorn1", root, root / "unused")
    try:
        server.start()
        with httpx.Client(timeout=60) as http:  # only the file the users read (no 10,000-file directory)
            mb.write_bench_file(http, server)
        base = server.base_url
        with httpx.Client(timeout=120) as http:
            rtt = timed(
                lambda: http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "hi"}]},
                ),
                args.runs,
            )
            read = timed(
                lambda: mb.call(http, base, "legacy", "read_file", {"path": mb.FILE_PATH}), args.runs
            )
            agent_run(http, base, "steps=1")  # warm-up: first conversation, first model client
            zero = timed(lambda: agent_run(http, base, "steps=0"), args.runs)
            many = timed(
                lambda: agent_run(http, base, f"steps={args.steps} tool=read_file path={mb.FILE_PATH}"),
                args.runs,
            )
        med = statistics.median
        per_step = (med(many) - med(zero)) / args.steps
        report = {
            "tag": args.tag,
            "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python bench/agent_overhead.py " + " ".join(sys.argv[1:]),
            "machine": mb.machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "runs": args.runs,
            "steps": args.steps,
            "model_rtt_ms": round(med(rtt), 3),
            "read_file_direct_ms": round(med(read), 3),
            "agent_run_0_steps_ms": round(med(zero), 3),
            f"agent_run_{args.steps}_steps_ms": round(med(many), 3),
            "per_step_ms": round(per_step, 3),
            "per_step_overhead_beyond_model_and_tool_ms": round(per_step - med(rtt) - med(read), 3),
        }
    finally:
        server.stop()
        model.terminate()
        model.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [
        f"# Agent loop overhead — {report['measured_at']}",
        "",
        f"`{report['command']}`, load average "
        f"{report['load_avg_1m']}; medians of {args.runs} runs, one at a time, legacy era.",
        "",
        "| measure | ms |",
        "|---|---|",
    ]
    md += [f"| {k} | {v} |" for k, v in report.items() if k.endswith("_ms")]
    (args.out / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
