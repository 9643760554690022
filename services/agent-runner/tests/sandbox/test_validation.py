"""Bad input is refused with CommandRejected before anything starts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from agent_runner.sandbox.policy import SandboxPolicy
from agent_runner.sandbox.spawn import CommandRejected, run_command, validate

pytestmark = pytest.mark.anyio


@pytest.fixture
def policy(tmp_path: Path) -> SandboxPolicy:
    ws = tmp_path / "ws"
    (ws / "sub" / "deeper").mkdir(parents=True)
    (ws / "file.txt").write_text("x")
    (ws / "link").symlink_to(ws / "sub")
    (ws / "out").symlink_to(tmp_path)
    return SandboxPolicy(workspace=ws, tmp_dir=tmp_path / "tmp", max_argv_bytes=4096, max_stdin_bytes=1024)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of argv"),
        ({"argv": ["true"], "shell": "true"}, "exactly one of argv"),
        ({"argv": []}, "non-empty list"),
        ({"argv": "true"}, "non-empty list"),
        ({"argv": [""]}, "argv\\[0\\]"),
        ({"argv": ["echo", 3]}, "argv\\[1\\] must be a string"),
        ({"argv": ["echo", "a\x00b"]}, "argv\\[1\\] contains a NUL byte"),
        ({"argv": ["echo", "x" * 5000]}, "at most 4096"),
        ({"argv": ["echo"] * 20000}, "entries"),
        ({"argv": ["echo", "\ud800"]}, "not encodable"),
        ({"shell": ""}, "shell is empty"),
        ({"shell": "   "}, "shell is empty"),
        ({"shell": "echo \x00"}, "NUL"),
        ({"shell": "x" * 5000}, "longer than 4096"),
        ({"argv": ["true"], "cwd": "/etc"}, "absolute path"),
        ({"argv": ["true"], "cwd": "../.."}, "contains '..'"),
        ({"argv": ["true"], "cwd": "sub/../../x"}, "contains '..'"),
        ({"argv": ["true"], "cwd": "missing"}, "does not exist"),
        ({"argv": ["true"], "cwd": "file.txt"}, "not a directory"),
        ({"argv": ["true"], "cwd": "link"}, "symbolic link"),
        ({"argv": ["true"], "cwd": "out/ws"}, "symbolic link"),
        ({"argv": ["true"], "cwd": "a\x00"}, "NUL"),
        ({"argv": ["true"], "timeout_s": 0}, "timeout_s must be > 0"),
        ({"argv": ["true"], "timeout_s": -1}, "timeout_s must be > 0"),
        ({"argv": ["true"], "timeout_s": 601}, "<= 600"),
        ({"argv": ["true"], "timeout_s": math.nan}, "number of seconds"),
        ({"argv": ["true"], "timeout_s": "5"}, "number of seconds"),
        ({"argv": ["true"], "timeout_s": True}, "number of seconds"),
        ({"argv": ["true"], "stdin": b"x" * 2000}, "at most 1024"),
        ({"argv": ["true"], "stdin": 12}, "bytes or text"),
        ({"argv": ["true"], "env": {"LD_PRELOAD": "/x.so"}}, "LD_PRELOAD is not allowed"),
        ({"argv": ["true"], "env": {"PATH": "/tmp"}}, "PATH is not allowed"),
        ({"argv": ["true"], "env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "not allowed; allowed names"),
        ({"argv": ["true"], "env": {"1BAD": "x"}}, "not a valid environment variable name"),
        ({"argv": ["true"], "env": {"CI": "a\x00"}}, "NUL"),
        ({"argv": ["true"], "env": ["CI"]}, "mapping"),
    ],
)
def test_rejected(policy: SandboxPolicy, kwargs: dict, message: str):
    with pytest.raises(CommandRejected, match=message):
        validate(policy, **kwargs)


def test_env_size_is_capped(tmp_path: Path, policy: SandboxPolicy):
    small = policy.model_copy(update={"max_env_bytes": 1024})
    with pytest.raises(CommandRejected, match="env is"):
        validate(small, ["true"], env={"CI": "x" * 2000})


def test_accepted_request_is_normalized(policy: SandboxPolicy):
    request = validate(
        policy, shell="echo hi", cwd="./sub//deeper/", stdin="text", env={"CI": "1"}, timeout_s=5
    )
    assert request.argv == ["/bin/sh", "-c", "echo hi"]
    assert request.cwd == "sub/deeper"
    assert request.stdin == b"text"
    assert request.env["CI"] == "1" and request.env["HOME"] == str(policy.workspace)
    assert request.timeout_s == 5.0
    assert validate(policy, ["true"]).timeout_s == policy.timeout_s
    assert validate(policy, ["true"], cwd="").cwd == "."


async def test_run_command_rejects_before_starting_anything(policy: SandboxPolicy):
    with pytest.raises(CommandRejected, match="contains '..'"):
        await run_command(policy, ["true"], cwd="..")
