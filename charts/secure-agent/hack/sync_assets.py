"""Copy the generated assets the chart packages into charts/secure-agent/ (run after regenerating them).

  k8s/crds/agentprofile.yaml        -> crds/agentprofile.yaml  (python -m mcp_api.profiles.crd also writes it)
  alerts/secure-agent.rules.yml     -> files/alerts/
  dashboards/*.json                 -> files/dashboards/
  policies/seccomp/agent-runner.json -> files/seccomp/

`--check` only compares and exits 1 on drift (tests/chart/test_assets_drift.py asserts the same).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[1]
ROOT = CHART.parents[1]


def pairs() -> list[tuple[Path, Path]]:
    out = [
        (ROOT / "k8s/crds/agentprofile.yaml", CHART / "crds/agentprofile.yaml"),
        (ROOT / "alerts/secure-agent.rules.yml", CHART / "files/alerts/secure-agent.rules.yml"),
        (ROOT / "policies/seccomp/agent-runner.json", CHART / "files/seccomp/agent-runner.json"),
    ]
    out += [
        (src, CHART / "files/dashboards" / src.name) for src in sorted((ROOT / "dashboards").glob("*.json"))
    ]
    return out


def stale_copies() -> list[Path]:
    """Chart copies that differ from their source, plus dashboards whose source is gone."""
    stale = [dst for src, dst in pairs() if not dst.exists() or dst.read_bytes() != src.read_bytes()]
    sources = {src.name for src in (ROOT / "dashboards").glob("*.json")}
    stale += [p for p in (CHART / "files/dashboards").glob("*.json") if p.name not in sources]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a copy is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_copies()
        for path in stale:
            print(f"{path} is stale: run python charts/secure-agent/hack/sync_assets.py", file=sys.stderr)
        return 1 if stale else 0
    sources = set()
    for src, dst in pairs():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        sources.add(dst)
    for orphan in (CHART / "files/dashboards").glob("*.json"):
        if orphan not in sources:
            orphan.unlink()
    print(f"synced {len(sources)} files into {CHART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
