"""Before/after of one optimization, side by side in one run: secure-agent (one uvicorn worker) with
and without it, interleaved (A B A B …), with the plain SDK server measured in the same run.

    uv run python bench/ab.py --name runner-client --off AGENT_RUNNER_CLIENT=httpx
    uv run python bench/ab.py --name key-cache --off SECURE_AGENT_AUTH__API_KEY_CACHE_TTL_S=0 \
        --concurrency 16,64 --eras legacy,modern --rounds 2 --duration 5

    uv run python bench/ab.py --name round3 --before-ref 27aca9a --off AGENT_RUNNER_COALESCE_WRITES=0

`--off` is the environment that turns the optimization off (the "before"); "after" is the default
configuration. `--before-ref` runs the "before" mcp-api from a git worktree of that commit instead
(for changes without a kill switch; the runners it starts still run the working tree's agent-runner). Every variant is a fresh server. Reports, per era and concurrency, the median over
rounds of req/s, p99 and CPU s/1k for before, after and the SDK, and the ratios after/before and
secure/SDK. Writes bench/results/ab/<name>.{json,md}. Loopback only, bounded by rounds × points.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402


def measure(
    kind: str,
    env: dict[str, str],
    root: Path,
    bare: Path,
    eras: list[str],
    concs: list[int],
    duration: float,
    tag: str,
) -> list[dict]:
    mb.SECURE_ENV_OVERRIDES.clear()
    mb.SECURE_ENV_OVERRIDES.update(env)
    server = mb.Server(kind, "uvicorn1", root / tag, bare)
    (root / tag).mkdir(parents=True, exist_ok=True)
    server.start()
    points = []
    try:
        arguments = {"path": "file4k.txt"}
        if kind == "secure":
            arguments = mb.prepare_secure(server, mb.file_content())["read_file"]
        mb.check_read(server, eras, arguments, mb.file_content())
        for era in eras:
            mb.wrk_point(server, era, arguments, 16, 1, root)
            for conc in concs:
                point = mb.wrk_point(server, era, arguments, conc, duration, root)
                points.append({"variant": tag, "era": era, "concurrency": conc} | point)
                print(json.dumps(points[-1]), flush=True)
    finally:
        server.stop()
        mb.SECURE_ENV_OVERRIDES.clear()
    return points


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--off", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--on",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the 'after' variant beyond the defaults",
    )
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--eras", default="legacy,modern")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--no-sdk", action="store_true")
    parser.add_argument("--before-ref", help="git commit whose mcp-api is the 'before' variant")
    parser.add_argument("--out", type=Path, default=mb.HERE / "results" / "ab")
    args = parser.parse_args()
    # SIGTERM (a bounded run stopped early) still stops the servers, in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    off = dict(kv.split("=", 1) for kv in args.off)
    on = dict(kv.split("=", 1) for kv in args.on)
    eras = args.eras.split(",")
    concs = [int(c) for c in args.concurrency.split(",")]
    root = Path(tempfile.mkdtemp(prefix="sa-ab-", dir="/tmp"))
    root.chmod(0o755)
    bare = root / "file4k.txt"
    bare.write_text(mb.file_content())
    load_before = os.getloadavg()[0]
    points: list[dict] = []
    worktree = root / "before-ref"
    if args.before_ref:
        subprocess.run(["git", "-C", str(mb.REPO), "worktree", "add", "--detach", str(worktree), args.before_ref],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        src = [worktree / "services" / name / "src" for name in ("mcp-api", "agent-runner")]
        off["PYTHONPATH"] = os.pathsep.join(map(str, src))
    try:
        for r in range(args.rounds):
            if not args.no_sdk:
                points += measure("sdk", {}, root, bare, eras, concs, args.duration, f"sdk{r}")
            points += measure("secure", off, root, bare, eras, concs, args.duration, f"before{r}")
            points += measure("secure", on, root, bare, eras, concs, args.duration, f"after{r}")
    finally:
        if args.before_ref:
            subprocess.run(["git", "-C", str(mb.REPO), "worktree", "remove", "--force", str(worktree)], check=False)
        shutil.rmtree(root, ignore_errors=True)

    def med(variant: str, era: str, conc: int, key: str) -> float | None:
        values = [
            p[key]
            for p in points
            if p["variant"].rstrip("0123456789") == variant and p["era"] == era and p["concurrency"] == conc
        ]
        return round(statistics.median(values), 3) if values else None

    rows = []
    for era in eras:
        for conc in concs:
            row = {"era": era, "concurrency": conc}
            for variant in ("sdk", "before", "after"):
                for key in ("rps", "p99_ms", "cpu_s_per_1k"):
                    row[f"{variant}_{key}"] = med(variant, era, conc, key)
            row["errors"] = sum(
                p["errors"] + p["non_2xx"] for p in points if p["era"] == era and p["concurrency"] == conc
            )
            row["rps_after_over_before"] = mb.ratio(row["after_rps"], row["before_rps"])
            row["cpu_after_over_before"] = mb.ratio(row["after_cpu_s_per_1k"], row["before_cpu_s_per_1k"])
            row["rps_before_over_sdk"] = mb.ratio(row["before_rps"], row["sdk_rps"])
            row["rps_after_over_sdk"] = mb.ratio(row["after_rps"], row["sdk_rps"])
            rows.append(row)
    report = {
        "name": args.name,
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/ab.py " + " ".join(sys.argv[1:]),
        "before_env": off,
        "before_ref": args.before_ref,
        "after_env": on,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "rows": rows,
        "points": points,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# A/B: {args.name} — {report['measured_at']}",
        "",
        f"`{report['command']}`; before = {off or 'defaults'}"
        + (f" with mcp-api at {args.before_ref}" if args.before_ref else "")
        + f", after = {on or 'defaults'}; median of "
        f"{args.rounds} rounds × {args.duration:g} s; load average {report['load_avg_1m']}.",
        "",
        "| era | c | SDK req/s | before req/s | after req/s | after/before | before/SDK | after/SDK "
        "| p99 before → after ms | CPU s/1k before → after | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['era']} | {r['concurrency']} | {r['sdk_rps']} | {r['before_rps']} | {r['after_rps']} "
            f"| {r['rps_after_over_before']} | {r['rps_before_over_sdk']} | {r['rps_after_over_sdk']} "
            f"| {r['before_p99_ms']} → {r['after_p99_ms']} | {r['before_cpu_s_per_1k']} → {r['after_cpu_s_per_1k']} "
            f"| {r['errors']} |"
        )
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
