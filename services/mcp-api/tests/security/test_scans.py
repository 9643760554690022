"""Static and dependency scans in `make test`: bandit over both services, pip-audit over uv.lock."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SOURCES = [ROOT / "services" / "mcp-api" / "src", ROOT / "services" / "agent-runner" / "src"]
EXCEPTIONS = Path(__file__).with_name("pip-audit-exceptions.toml")
# `# nosec B123 - why this is safe` (one or more test ids, then a reason of a few words).
JUSTIFIED_NOSEC = re.compile(r"#\s*nosec\s+B\d{3}(?:\s*,\s*B\d{3})*\s*[-:—]\s*\S.{8,}")


def test_bandit_finds_nothing_medium_or_high_unexplained(tmp_path):
    report = tmp_path / "bandit.json"
    subprocess.run(
        [sys.executable, "-m", "bandit", "-r", *map(str, SOURCES), "--severity-level", "medium",
         "--confidence-level", "low", "-f", "json", "-o", str(report), "-q"],
        check=False, timeout=300,
    )  # fmt: skip
    results = json.loads(report.read_text())["results"]
    unexplained = []
    for finding in results:
        path = finding["filename"].replace("\\", "/")
        unexplained.append(f"{path}:{finding['line_number']} {finding['test_id']} {finding['issue_text']}")
    assert not unexplained, "\n".join(unexplained)


def test_every_nosec_is_justified_inline():
    bare = []
    for source in SOURCES:
        for path in source.rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "nosec" in line and "#" in line and not JUSTIFIED_NOSEC.search(line):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "each '# nosec' needs the test id and a reason: '# nosec B123 - why'\n" + "\n".join(bare)


def _exceptions() -> tuple[list[str], list[str]]:
    entries = tomllib.loads(EXCEPTIONS.read_text()).get("exception", [])
    active, expired = [], []
    for entry in entries:
        assert entry.get("reason") and entry.get("package") and entry.get("id"), entry
        (active if date.fromisoformat(entry["until"]) >= date.today() else expired).append(entry["id"])
    return active, expired


@pytest.mark.integration
def test_pip_audit_finds_no_known_vulnerability_in_the_locked_dependencies(tmp_path):
    active, expired = _exceptions()
    assert not expired, f"pip-audit exceptions past their date, review them: {expired}"
    requirements = tmp_path / "requirements.txt"
    subprocess.run(
        # `uv run` names its own binary in $UV; a fresh machine has uv only under .tools/, not on PATH.
        [os.environ.get("UV") or shutil.which("uv") or "uv", "export", "--frozen", "--no-emit-workspace", "--all-groups", "--quiet", "-o", str(requirements)],
        cwd=ROOT, check=True, timeout=120,
    )  # fmt: skip
    output = tmp_path / "audit.json"
    command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--disable-pip", "--require-hashes",
               "--progress-spinner", "off", "-f", "json", "-o", str(output)]  # fmt: skip
    for vuln in active:
        command += ["--ignore-vuln", vuln]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert output.exists(), done.stderr[-3000:]
    found = [
        f"{dep['name']} {dep['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'no release yet'})"
        for dep in json.loads(output.read_text())["dependencies"]
        for v in dep.get("vulns", [])
    ]
    assert not found, "upgrade, or add a dated, reasoned entry to pip-audit-exceptions.toml:\n" + "\n".join(
        found
    )
    assert done.returncode == 0, done.stderr[-3000:]
