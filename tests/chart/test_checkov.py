"""checkov (offline, its own venv at .tools/checkov) on the rendered chart: one run over the renders of
the default values and every ci/*-values.yaml (session-scoped, ~15 s). Every finding must be listed in
checkov-skips.yaml with its reason, and every listed skip must still be needed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_helpers import CASES, CHECKOV, case_files, render_text

SKIPS = yaml.safe_load((Path(__file__).with_name("checkov-skips.yaml")).read_text())


@pytest.fixture(scope="session")
def checkov_failures(tmp_path_factory) -> list[dict]:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV}: run `make chart-deps` (make test does it)")
    out = tmp_path_factory.mktemp("checkov")
    for case in CASES:
        (out / f"{case}.yaml").write_text(render_text(case_files(case)))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [str(CHECKOV), "-d", str(out), "--framework", "kubernetes", "--skip-download", "-o", "json", "--quiet"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert any(r.get("check_type") == "kubernetes" for r in reports), result.stdout[:2000]
    summary = [r["summary"] for r in reports if r.get("check_type") == "kubernetes"][0]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] > 50, summary
    return [f for r in reports for f in r["results"]["failed_checks"]]


def _allowed(finding: dict) -> bool:
    skip = SKIPS.get(finding["check_id"])
    return bool(skip) and any(re.search(p, finding["resource"]) for p in skip["resources"])


def test_every_finding_is_justified(checkov_failures: list[dict]) -> None:
    unexplained = sorted(
        {f"{f['check_id']} {f['check_name']}: {f['resource']} ({Path(f['file_path']).name})"
         for f in checkov_failures if not _allowed(f)}
    )  # fmt: skip
    assert not unexplained, "\n".join(unexplained)


def test_every_skip_has_a_reason_and_is_still_needed(checkov_failures: list[dict]) -> None:
    failing = {f["check_id"] for f in checkov_failures}
    for check_id, skip in SKIPS.items():
        assert len(skip["reason"]) > 40, check_id
        assert check_id in failing, f"{check_id} no longer fails: remove it from checkov-skips.yaml"


def test_no_skip_excuses_runner_side_objects(checkov_failures: list[dict]) -> None:
    """Nothing is excused on runner objects or the mcp-api pod's security context."""
    for f in checkov_failures:
        assert "runner" not in f["resource"], f
    restricted = {
        "CKV_K8S_20",
        "CKV_K8S_22",
        "CKV_K8S_28",
        "CKV_K8S_37",
        "CKV_K8S_16",
        "CKV_K8S_17",
        "CKV_K8S_18",
        "CKV_K8S_19",
    }
    assert not restricted & set(SKIPS)
