"""Local profiles: config/profiles/*.yaml applied, reloaded on change; a bad file keeps the last good spec."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from mcp_api.profiles.files import ProfileFiles
from mcp_api.profiles.registry import ProfileRegistry

ROOT = Path(__file__).resolve().parents[4]

DOC = """apiVersion: secure-agent.dev/v1alpha1
kind: AgentProfile
metadata: {{name: {name}}}
spec:
  tenants: [acme]
  sandbox: {{poolSize: {pool}, limits: {{timeout_s: {timeout}}}}}
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make the change visible even on filesystems with coarse mtimes.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_shipped_default_profile_loads(tmp_path):
    shutil.copy(ROOT / "config" / "profiles" / "default.yaml", tmp_path / "default.yaml")
    registry = ProfileRegistry()
    assert ProfileFiles(tmp_path, registry).check() == ["default"]
    assert registry.effective("anyone").name == "default" and registry.problems() == {}


def test_valid_change_applied_invalid_keeps_last_good_and_is_reported(tmp_path):
    registry = ProfileRegistry()
    files = ProfileFiles(tmp_path, registry)
    path = tmp_path / "acme.yaml"
    _write(path, DOC.format(name="acme", pool=1, timeout=10))
    assert files.check() == ["acme"]
    assert registry.effective("acme").spec.sandbox.pool_size == 1
    assert files.check() == []  # unchanged file: nothing to do

    _write(path, DOC.format(name="acme", pool=2, timeout=20))
    assert files.check() == ["acme"]
    spec = registry.effective("acme").spec
    assert (spec.sandbox.pool_size, spec.sandbox.limits.timeout_s) == (2, 20)

    # Fails validation: the last good spec stays, the problem names the field.
    _write(path, DOC.format(name="acme", pool=-5, timeout=20))
    files.check()
    assert registry.effective("acme").spec.sandbox.pool_size == 2
    assert "spec.sandbox.poolSize" in registry.problems()["acme"]

    # Not even YAML: still the last good spec, reported as a parse error.
    _write(path, "spec: [unclosed\n")
    files.check()
    assert registry.effective("acme").spec.sandbox.pool_size == 2
    assert registry.state("acme").last.reason == "ParseError" and "acme.yaml" in registry.problems()["acme"]

    _write(path, DOC.format(name="acme", pool=3, timeout=20))
    files.check()
    assert registry.effective("acme").spec.sandbox.pool_size == 3 and registry.problems() == {}

    path.unlink()
    assert files.check() == ["acme"]
    assert registry.effective("acme").name == "<built-in>"


def test_wrong_kind_is_reported(tmp_path):
    registry = ProfileRegistry()
    _write(tmp_path / "x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    ProfileFiles(tmp_path, registry).check()
    assert registry.state("x").last.reason == "WrongKind"


@pytest.mark.anyio
async def test_background_reload_picks_up_changes(tmp_path):
    registry = ProfileRegistry()
    files = ProfileFiles(tmp_path, registry, poll_interval_s=0.05)
    path = tmp_path / "acme.yaml"
    _write(path, DOC.format(name="acme", pool=1, timeout=10))

    async def until(predicate):
        for _ in range(250):
            if predicate():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("not reloaded within 5 s")

    stop = asyncio.Event()
    task = asyncio.create_task(files.run(stop))
    try:
        await until(lambda: registry.effective("acme").spec.sandbox.pool_size == 1)
        _write(path, DOC.format(name="acme", pool=7, timeout=10))
        await until(lambda: registry.effective("acme").spec.sandbox.pool_size == 7)
        _write(path, DOC.format(name="acme", pool="seven", timeout=10))
        await until(lambda: "acme" in registry.problems())
        assert registry.effective("acme").spec.sandbox.pool_size == 7
    finally:
        stop.set()
        await task
