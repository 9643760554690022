"""`make bench` in a tiny configuration: proves bench/mcp_bench.py runs end to end and writes its report.

Not a benchmark: one second per point, one concurrency, one era, one deployment. The figures are
not checked (machines are noisy), only that every server answered correctly and without errors.
"""

from __future__ import annotations

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
    (ratios,) = report["ratios"]
    assert ratios["rps_c_over_a"] > 0 and ratios["rps_c_over_b"] > 0
    assert {"read_file 4 KiB", "write_file 4 KiB", "run_command true"} <= set(report["extras"])
    assert report["extras"]["_list_directory_entries_seen"] == 5000
    markdown = (tmp_path / "smoke.md").read_text()
    assert "| uvicorn1 | secure | modern | 4 |" in markdown and "req/s c/b" in markdown
