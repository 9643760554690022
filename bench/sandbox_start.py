"""Sandbox start overhead: median latency of `true`, plain fork/exec vs. sandboxed.

    uv run python bench/sandbox_start.py [--runs 200] [--out bench/results]

Not a test: it measures this machine and writes bench/results/sandbox_start.json and .md.
Every variant runs `true` to completion from the same asyncio event loop (what the runner
does). Variants take turns in blocks of consecutive runs (a runner serves one workspace policy,
so consecutive commands share a policy and find a warm supervisor, as they would in use), and
the blocks alternate over several rounds so that machine noise hits every variant alike:

- plain: asyncio.create_subprocess_exec + communicate, no confinement (the baseline);
- sandbox-full: run_command with everything this machine allows (as root: namespaces, idmapped
  noexec workspace, uid drop, cgroups, Landlock, seccomp, rlimits);
- sandbox-minimal: Landlock, seccomp, rlimits and no_new_privs only (an unprivileged runner);
- sandbox-no-cgroups: the full set without cgroups.

Overhead is the sandboxed median minus the plain median. Target: <= 15 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent_runner.sandbox.policy import SandboxPolicy
from agent_runner.sandbox.spawn import active_controls, run_command, shutdown_forkserver

TARGET_MS = 15.0
ROUNDS = 5


async def plain_true() -> None:
    proc = await asyncio.create_subprocess_exec(
        "/bin/true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await proc.communicate()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p10_ms": round(ordered[len(ordered) // 10] * 1000, 3),
        "p90_ms": round(ordered[len(ordered) * 9 // 10] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "runs": len(ordered),
    }


async def measure(runs: int, base: Path) -> dict:
    ws, tmp = base / "ws", base / "tmp"
    ws.mkdir()
    tmp.mkdir(mode=0o700)
    policies = {
        "sandbox-full": SandboxPolicy(workspace=ws, tmp_dir=tmp),
        "sandbox-no-cgroups": SandboxPolicy(workspace=ws, tmp_dir=tmp, use_cgroups=False),
        "sandbox-minimal": SandboxPolicy(workspace=ws, tmp_dir=tmp, use_namespaces=False, use_cgroups=False),
    }
    controls = {name: active_controls(policy) for name, policy in policies.items()}

    async def sandboxed(policy: SandboxPolicy) -> None:
        result = await run_command(policy, ["/bin/true"])
        if result.exit_code != 0:
            raise RuntimeError(f"sandboxed true failed: {result}")

    variants = {"plain": plain_true, **{name: (lambda p=p: sandboxed(p)) for name, p in policies.items()}}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # fork server start, ruleset and filter preparation
        await fn()
    per_block = max(1, runs // ROUNDS)
    cold: list[float] = []
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            start = time.perf_counter()
            await fn()  # the first command after another policy's block starts cold: apart
            if name != "plain":
                cold.append(time.perf_counter() - start)
            for _ in range(per_block):
                start = time.perf_counter()
                await fn()
                samples[name].append(time.perf_counter() - start)
    stats = {name: summary(values) for name, values in samples.items()}
    plain = stats["plain"]["median_ms"]
    for name in policies:
        stats[name]["overhead_median_ms"] = round(stats[name]["median_ms"] - plain, 3)
    return {"stats": stats, "cold_ms": round(statistics.median(cold) * 1000, 3), "controls": controls}


def markdown(report: dict) -> str:
    lines = [
        "# Sandbox start overhead",
        "",
        f"Measured {report['measured_at']} on {report['machine']} ({report['cpus']} CPUs, kernel {report['kernel']}), "
        f"{report['runs']} runs of `/bin/true` per variant in {ROUNDS} alternating blocks, from one asyncio event loop. "
        f"Target: sandbox overhead <= {TARGET_MS:g} ms (median).",
        "",
        "| variant | median ms | p10 ms | p90 ms | overhead (median) ms |",
        "|---|---|---|---|---|",
    ]
    for name, s in report["stats"].items():
        overhead = s.get("overhead_median_ms")
        lines.append(
            f"| {name} | {s['median_ms']} | {s['p10_ms']} | {s['p90_ms']} | {'' if overhead is None else overhead} |"
        )
    lines += [
        "",
        "The first command of a policy (or after another policy's) starts cold, without a warm",
        f"supervisor: about {report['cold_ms']} ms here (median of {ROUNDS * 3}).",
        "",
        "Controls applied in the full variant:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in report["controls"]["sandbox-full"].items()]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sa-bench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        measured = asyncio.run(measure(args.runs, base))
    finally:
        shutdown_forkserver()
        shutil.rmtree(base, ignore_errors=True)
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": args.runs,
        "target_overhead_ms": TARGET_MS,
        **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sandbox_start.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sandbox_start.md").write_text(markdown(report))
    print(markdown(report))
    worst = max(s["overhead_median_ms"] for n, s in report["stats"].items() if n != "plain")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
