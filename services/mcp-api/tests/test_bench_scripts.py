"""The benchmark scripts under bench/ still run (tiny iteration counts; the figures are not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BENCH = REPO / "bench"


def run_script(tmp_path: Path, script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Runs a bench script as `make bench` would, without this process's SECURE_AGENT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_AGENT_")}
    done = subprocess.run([sys.executable, str(BENCH / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_run_command_latency_script_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_script(tmp_path, "run_command_latency.py", "--calls", "5", "--warmup", "1", "--sandbox-runs", "5",
               "--out", str(out), timeout=45)  # fmt: skip
    report = json.loads((out / "run_command.json").read_text())
    for era in ("legacy", "modern"):
        stats = report["mcp"]["stats"][era]
        assert stats["runs"] == 5
        assert 0 < stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
        assert 0 < stats["command_median_ms"] < stats["median_ms"]
    raw = report["sandbox_start"]["stats"]
    assert {"plain", "sandbox-full", "sandbox-minimal", "sandbox-no-cgroups"} == set(raw)
    assert "overhead_median_ms" in raw["sandbox-minimal"]
    assert report["worst_overhead_ms"] == max(s["overhead_median_ms"] for n, s in raw.items() if n != "plain")
    markdown = (out / "run_command.md").read_text()
    assert "| legacy (2025-11-25) |" in markdown and "| modern (2026-07-28) |" in markdown
    assert "| sandbox-full |" in markdown


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_inprocess_script_measures_both_eras_ablations_and_profiles(tmp_path: Path) -> None:
    stats = tmp_path / "modern.pstats"
    done = run_script(tmp_path, "inprocess.py", "--calls", "20", "--rounds", "1", "--concurrency", "4",
                      "--ablate", "runner-hop", "--profile", "modern", "--out", str(stats), timeout=75)  # fmt: skip
    # Results on stderr: stdout carries the servers' log lines, as make bench's servers write them.
    rows = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"round"')]
    assert [(r["era"], r.get("without")) for r in rows] == [
        ("legacy", None), ("legacy", "runner-hop"), ("modern", None), ("modern", "runner-hop"),
    ]  # fmt: skip
    assert all(r["cpu_us_per_call"] > 0 for r in rows)
    import pstats

    functions = {name for _, _, name in pstats.Stats(str(stats)).stats}
    assert "read_file" in functions  # the tool ran under the profiler
