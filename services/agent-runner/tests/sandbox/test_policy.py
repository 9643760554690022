"""SandboxPolicy: validation, the environment it builds, its wire form."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_runner.sandbox.policy import DEFAULT_PATH, MiB, SandboxPolicy
from pydantic import ValidationError


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def test_defaults(ws: Path, tmp_path: Path):
    policy = SandboxPolicy(workspace=ws, tmp_dir=tmp_path / "tmp")
    assert policy.memory_bytes == 512 * MiB
    assert policy.max_output_bytes == 1 * MiB
    assert policy.drop_to_uid == 65534
    assert not policy.allow_network and not policy.allow_unconfined
    assert "/etc/shadow" in policy.denied_paths


def test_workspace_and_tmp_are_canonical(tmp_path: Path, ws: Path):
    (tmp_path / "link").symlink_to(ws)
    policy = SandboxPolicy(workspace=tmp_path / "link", tmp_dir=tmp_path / "link" / ".." / "tmp")
    assert policy.workspace == ws
    assert policy.tmp_dir == tmp_path / "tmp"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"workspace": "relative"}, "absolute"),
        ({"workspace": "/nonexistent-sa"}, "not an existing directory"),
        ({"tmp_dir": "/nonexistent-sa/tmp"}, "parent of tmp_dir"),
        ({"timeout_s": 700}, "exceeds max_timeout_s"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"memory_bytes": 1024}, "greater than or equal"),
        ({"output_kill_bytes": 2048, "max_output_bytes": 4096}, "output_kill_bytes"),
        ({"drop_to_uid": None}, "set together"),
        ({"env_allowlist": frozenset({"BAD NAME"})}, "invalid environment variable names"),
        ({"exec_paths": ("usr",)}, "not an absolute path"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_policies(ws: Path, tmp_path: Path, fields: dict, message: str):
    base = {"workspace": ws, "tmp_dir": tmp_path / "tmp"}
    base.update(fields)
    with pytest.raises(ValidationError, match=message):
        SandboxPolicy(**base)


def test_tmp_dir_may_not_contain_the_workspace(tmp_path: Path, ws: Path):
    with pytest.raises(ValidationError, match="tmp_dir must not"):
        SandboxPolicy(workspace=ws, tmp_dir=tmp_path)


def test_environment_is_built_from_the_policy_only(ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RUNNER_SECRET", "x")
    policy = SandboxPolicy(workspace=ws, tmp_dir=tmp_path / "tmp")
    env = policy.environment({"CI": "1", "HOME": "/elsewhere"})
    assert env == {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "CI": "1",
        "HOME": str(ws),
        "TMPDIR": str(tmp_path / "tmp"),
    }


def test_policy_is_frozen_and_round_trips(ws: Path, tmp_path: Path):
    policy = SandboxPolicy(workspace=ws, tmp_dir=tmp_path / "tmp", allow_network=True)
    with pytest.raises(ValidationError):
        policy.allow_network = False  # type: ignore[misc]
    wire = policy.to_wire()
    assert wire["workspace"] == str(ws) and wire["allow_network"] is True
    assert SandboxPolicy(**wire) == policy
    assert policy.cache_key() == SandboxPolicy(**wire).cache_key()
