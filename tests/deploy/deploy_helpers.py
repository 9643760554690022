"""Helpers of the deploy-artifact tests (compose, kind, skaffold, scripts, nginx, config/env)."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"


def find_tool(name: str) -> str | None:
    """A command from PATH or from the project's .tools/ (make deploy-test-deps installs there)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in (TOOLS / name / "bin" / name, TOOLS / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def compose_spec_schema() -> dict | None:
    """The compose-spec JSON schema (Apache-2.0, github.com/compose-spec/compose-spec), as vendored by
    the PyPI package check-jsonschema: from this environment, or from its own venv under .tools/."""
    rel = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
    spec = importlib.util.find_spec("check_jsonschema")
    paths = [Path(p) / "builtin_schemas/vendor/compose-spec.json" for p in (spec.submodule_search_locations or [])] if spec else []  # fmt: skip
    paths += [Path(p) for p in glob.glob(str(TOOLS / "check-jsonschema/lib/python*/site-packages" / rel))]
    for path in paths:
        if path.is_file():
            return json.loads(path.read_text())
    return None
