"""Bounded soak: secure-agent under steady `read_file` load, watching mcp-api's memory for growth.

    uv run python bench/soak.py [--minutes 5] [--concurrency 16] [--slice 30] [--era legacy]
                                [--deployment uvicorn1] [--out bench/results]

Starts the full stack like bench/mcp_bench.py (rate limiting on, non-throttling buckets), runs wrk in
back-to-back slices and records, after each slice, the RSS of every mcp-api process (the workers, not
the gunicorn master) and of the whole tree, with the slice's req/s, p99 and errors. Growth = last
slice minus the first slice after warm-up (the first slice is warm-up: caches, pools, lazy imports).
Writes <out>/soak.json and soak.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402


def api_rss_mb(server: mb.Server) -> float:
    pids = [p for p in mb.tree(server.proc.pid) if "agent_runner" not in _cmdline(p)]
    if server.deployment == "gunicorn2":
        pids = [p for p in pids if p != server.proc.pid]
    return round(max(mb.rss_kib(pids, "VmRSS:") or [0]) / 1024, 1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slice", type=int, default=30, help="seconds per wrk slice")
    parser.add_argument("--era", default="legacy")
    parser.add_argument("--deployment", default="uvicorn1")
    parser.add_argument("--out", type=Path, default=mb.HERE / "results")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench-deps`")
    root = Path(tempfile.mkdtemp(prefix="sa-soak-", dir="/tmp"))
    root.chmod(0o755)
    server = mb.Server("secure", args.deployment, root, root / "unused")
    server.start()
    slices = []
    try:
        arguments = mb.prepare_secure(server, mb.file_content())["read_file"]
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline or len(slices) < 2:
            point = mb.wrk_point(server, args.era, arguments, args.concurrency, args.slice, root)
            row = {"t_s": round(args.slice * (len(slices) + 1)), "rps": point["rps"], "p99_ms": point["p99_ms"],
                   "errors": point["errors"], "api_rss_mb": api_rss_mb(server),
                   "tree_rss_mb": round(sum(mb.rss_kib(mb.tree(server.proc.pid), "VmRSS:")) / 1024, 1)}
            print(json.dumps(row), flush=True)
            slices.append(row)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    first, last = slices[0], slices[-1]
    report = {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/soak.py " + " ".join(sys.argv[1:]),
        "machine": mb.machine(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "deployment": args.deployment, "era": args.era, "concurrency": args.concurrency,
        "slices": slices,
        "api_rss_growth_mb": round(last["api_rss_mb"] - first["api_rss_mb"], 1),
        "errors": sum(s["errors"] for s in slices),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Soak: secure-agent `read_file`, {args.deployment}, {args.era}, c={args.concurrency}", "",
             f"Measured {report['measured_at']}, {len(slices)} slices of {args.slice} s; command `{report['command']}`; "
             f"load average at the end {report['load_avg_1m']}. mcp-api RSS growth after warm-up slice: "
             f"**{report['api_rss_growth_mb']} MB**; errors: {report['errors']}.", "",
             "| t (s) | req/s | p99 ms | errors | mcp-api RSS MB | tree RSS MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['t_s']} | {s['rps']} | {s['p99_ms']} | {s['errors']} | {s['api_rss_mb']} | {s['tree_rss_mb']} |"
              for s in slices]
    (args.out / "soak.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'soak.json'} and soak.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
