"""scripts/install-helm.sh: a second run is a no-op (idempotent), and the tools are the pinned ones."""

from __future__ import annotations

import subprocess

from chart_helpers import HELM, ROOT, TOOLS, helm


def test_helm_is_the_pinned_static_build() -> None:
    assert helm("version", "--template", "{{.Version}}").stdout.strip() == "v3.19.0"
    kubectl = subprocess.run(
        [str(TOOLS / "bin" / "kubectl"), "version", "--client"], capture_output=True, text=True
    )
    assert "v1.34.0" in kubectl.stdout


def test_install_script_is_idempotent() -> None:
    before = HELM.stat().st_mtime_ns
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-helm.sh"), "helm"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "already in" in result.stdout
    assert HELM.stat().st_mtime_ns == before
