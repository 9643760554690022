"""The chart packages copies of generated files; they must equal their sources:
crds/agentprofile.yaml == k8s/crds/agentprofile.yaml (and what mcp_api.profiles.crd renders),
files/alerts, files/dashboards, files/seccomp == alerts/, dashboards/, policies/seccomp/, and
values.schema.json == what hack/gen_schema.py builds from the Settings model.
Fix drift with: python charts/secure-agent/hack/sync_assets.py; .venv/bin/python charts/secure-agent/hack/gen_schema.py"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

# No helm needed here: these run (and catch drift) even where chart_helpers skips for a missing helm.
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "secure-agent"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"chart_hack_{name}", CHART / "hack" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crd_copy_equals_the_generated_crd() -> None:
    from mcp_api.profiles.crd import render_crd

    chart_crd = (CHART / "crds" / "agentprofile.yaml").read_text()
    assert chart_crd == (ROOT / "k8s" / "crds" / "agentprofile.yaml").read_text()
    assert chart_crd == render_crd()


def test_packaged_assets_equal_their_sources() -> None:
    stale = _load("sync_assets").stale_copies()
    assert not stale, f"stale: {stale}; run python charts/secure-agent/hack/sync_assets.py"


def test_every_source_is_packaged() -> None:
    pairs = _load("sync_assets").pairs()
    assert {p[0].name for p in pairs} >= {"agentprofile.yaml", "secure-agent.rules.yml", "agent-runner.json"}
    assert len([p for p in pairs if p[0].suffix == ".json" and p[0].parent.name == "dashboards"]) == len(
        list((ROOT / "dashboards").glob("*.json"))
    )


def test_values_schema_is_generated_from_settings() -> None:
    result = subprocess.run(
        [sys.executable, str(CHART / "hack" / "gen_schema.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_hack_is_not_packaged() -> None:
    assert "hack/" in (CHART / ".helmignore").read_text().splitlines()
