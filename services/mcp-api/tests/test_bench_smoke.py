"""`make bench` in a tiny configuration: proves bench/mcp_bench.py runs end to end and writes its report.

Not a benchmark: one second per point, one concurrency, one era, one deployment. The figures are
not checked (machines are noisy), only that every server answered correctly and without errors.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench" / "mcp_bench.py"

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (`make bench-deps`)")


def test_bench_script_runs_and_writes_its_report(tmp_path: Path) -> None:
    args = [
        sys.executable, str(SCRIPT), "--duration", "1", "--warmup", "1", "--concurrency", "4",
        "--deployments", "uvicorn1", "--eras", "modern", "--extras-calls", "2",
        "--out", str(tmp_path), "--tag", "smoke",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((tmp_path / "smoke.json").read_text())
    points = {(p["server"], p["era"]): p for p in report["points"]}
    assert set(points) == {("bare", None), ("sdk", "modern"), ("secure", "modern")}
    for point in points.values():
        assert point["requests"] > 0 and point["rps"] > 0
        assert point["errors"] == 0, point
        assert point["cpu_s_per_1k"] is not None and point["peak_rss_mb_largest_process"] > 0
        split = point["cpu_s_per_1k_by_process"]
        assert split["server"] > 0 and abs(split["server"] + split["runners"] - point["cpu_s_per_1k"]) < 0.01
        if point["server"] == "secure":
            # Every read was answered by mcp-api (a hot read) or by the runner, and the report says which.
            assert 0 <= point["hot_read_share"] <= 1, point
        else:
            assert split["runners"] == 0 and point["hot_read_share"] is None  # only (c) has a runner
    (ratios,) = report["ratios"]
    assert ratios["rps_c_over_a"] > 0 and ratios["rps_c_over_b"] > 0
    assert {"read_file 4 KiB", "write_file 4 KiB", "run_command true"} <= set(report["extras"])
    assert report["extras"]["_list_directory_entries_seen"] == 5000
    markdown = (tmp_path / "smoke.md").read_text()
    assert "| uvicorn1 | secure | modern | 4 |" in markdown and "req/s c/b" in markdown
    assert f"| {points['secure', 'modern']['hot_read_share']:.1%} |" in markdown


LOAD_MIX = REPO / "bench" / "load_mix.py"


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust not installed (dev group)")
def test_locust_mix_runs_every_client_kind_without_failures(tmp_path: Path) -> None:
    """bench/locustfile.py through bench/load_mix.py for a few seconds: readers (both eras), writers,
    command runners and agent runs against the instant model, all answered without a failure."""
    args = [sys.executable, str(LOAD_MIX), "smoke", "--users", "13", "--seconds", "4", "--out", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "locust_smoke.json").read_text())
    final = report["samples"][-1]
    assert final["requests"] > 0 and final["failures"] == 0, report
    assert final["rss_mb"] and final["rss_mb"] > 0
    kinds = {line.split(",")[1] for line in report["per_request"].splitlines()[1:] if line.split(",")[1]}
    assert {"modern read_file", "legacy read_file", "modern write_file"} <= kinds, kinds
    assert kinds & {"legacy run_command", "modern agent_run"}, kinds
