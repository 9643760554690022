"""`helm lint --strict` passes for the default values and every ci/*-values.yaml (warnings fail too)."""

from __future__ import annotations

import pytest
from chart_helpers import CASES, CHART, case_files, helm


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict(case: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in case_files(case):
        args += ["-f", f]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_ci_values_cover_the_required_scenarios() -> None:
    required = {
        "minimal",
        "production",
        "seccomp-localhost",
        "seccomp-spo",
        "seccomp-runtimedefault",
        "gateway-api",
    }
    assert required <= set(CASES)
