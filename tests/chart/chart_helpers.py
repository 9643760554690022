"""Shared helpers of the chart tests: the real `helm` from .tools/bin (installed by `make chart-deps`,
a prerequisite of `make test`), renders cached per values combination, and lookups over documents."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "secure-agent"
TOOLS = ROOT / ".tools"
HELM = Path(os.environ.get("HELM", TOOLS / "bin" / "helm"))
CHECKOV = Path(os.environ.get("CHECKOV", TOOLS / "checkov" / "bin" / "checkov"))
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
# "default" (values.yaml alone) plus every ci/*-values.yaml: what lint, template, validation and checkov cover.
CASES = ["default"] + [p.name.removesuffix("-values.yaml") for p in CI_FILES]
RELEASE = "sa"
NAMESPACE = "secure-agent"
# Kubernetes minors the chart claims (Chart.yaml kubeVersion ">=1.29.0-0 <1.35.0-0").
KUBE_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]

if not HELM.exists():
    pytest.skip(
        f"helm is not installed at {HELM}: run `make chart-deps` (make test does it)", allow_module_level=True
    )


def case_files(case: str) -> tuple[str, ...]:
    return () if case == "default" else (str(CHART / "ci" / f"{case}-values.yaml"),)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(files: tuple[str, ...] = (), sets: tuple[str, ...] = (), chart: Path = CHART) -> list[str]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSIONS[-1]]
    for f in files:
        args += ["-f", f]
    for s in sets:  # "json:a.b=<json>" goes through --set-json (typed: floats, lists, maps)
        args += ["--set-json", s[5:]] if s.startswith("json:") else ["--set", s]
    return args


@functools.cache
def render_text(files: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    return helm(*template_args(files, sets)).stdout


@functools.cache
def _parsed(files: tuple[str, ...], sets: tuple[str, ...]) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(render_text(files, sets), Loader=loader) if d]  # noqa: S506 - a safe loader


def render(files: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rendered documents (a private copy: tests may change them)."""
    return copy.deepcopy(_parsed(tuple(files), tuple(sets)))


def render_case(case: str) -> list[dict[str, Any]]:
    return render(case_files(case))


def render_fails(*sets: str, files: tuple[str, ...] = ()) -> str:
    """helm template must fail; returns its error output."""
    result = helm(*template_args(files, sets), check=False)
    assert result.returncode != 0, f"helm template accepted {sets}"
    return result.stderr


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name_part: str = "") -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if name_part in d["metadata"]["name"]]
    assert len(found) == 1, (
        f"expected one {kind} named *{name_part}*, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every pod the release runs: workloads' templates and bare Pods."""
    out = []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            out.append((f"{kind}/{name}", d["spec"]["template"]["spec"]))
        elif kind == "Pod":
            out.append((f"{kind}/{name}", d["spec"]))
    return out


def render_notes(files: tuple[str, ...] = (), sets: tuple[str, ...] = (), tmp: Path | None = None) -> str:
    """NOTES.txt as Helm renders it. `helm template` never prints NOTES and `helm install --dry-run`
    needs a reachable API server, so a copy of the chart gets one extra template that runs NOTES.txt
    through the same engine (tpl, same named templates and values) into a ConfigMap."""
    assert tmp is not None
    copy = tmp / "secure-agent"
    shutil.copytree(CHART, copy)
    (copy / "files" / "NOTES.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (copy / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}\n'
    )
    out = helm(*template_args(files, sets, chart=copy), "--show-only", "templates/zz-notes.yaml").stdout
    return yaml.safe_load(out)["data"]["notes"]
