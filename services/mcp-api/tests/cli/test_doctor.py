"""`secure-agent doctor` reports what the machine has and how to fix what it lacks."""

from __future__ import annotations

import dataclasses
import json

from agent_runner.sandbox.probe import probe
from click.testing import CliRunner
from mcp_api.cli import main
from mcp_api.cli.doctor import render, run_checks
from mcp_api.settings import Settings


def test_doctor_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("SECURE_AGENT_DATA_DIR", str(tmp_path / "d"))
    result = CliRunner().invoke(main, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert {"kernel", "landlock", "seccomp", "openat2", "namespaces", "cgroups", "sandbox", "data_dir"} <= set(checks)
    assert "landlock=" in checks["sandbox"]["detail"] and "seccomp=" in checks["sandbox"]["detail"]
    caps = probe()
    assert checks["landlock"]["status"] == ("ok" if caps.landlock_abi >= 4 else checks["landlock"]["status"])
    assert checks["data_dir"]["status"] == "ok"
    assert result.exit_code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


def test_doctor_explains_missing_features(tmp_path):
    broken = dataclasses.replace(
        probe(), landlock_abi=0, landlock_reason="kernel built without Landlock", seccomp=False,
        seccomp_reason="no seccomp", openat2=False, user_namespaces=False, cgroup="none", libseccomp=False,
    )  # fmt: skip
    checks = run_checks(Settings(data_dir=tmp_path), broken)
    by_name = {c.name: c for c in checks}
    assert by_name["landlock"].status == "fail" and "lsm=landlock" in by_name["landlock"].fix
    assert by_name["seccomp"].status == "fail"
    assert by_name["openat2"].status == "warn" and "5.6" in by_name["openat2"].fix
    text = render(checks)
    assert "2 failed" in text and "fix:" in text


def test_unwritable_data_dir_fails(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.geteuid() == 0:
            # root ignores mode bits; a path under a regular file is unwritable for everyone.
            (tmp_path / "file").write_text("")
            target = tmp_path / "file" / "data"
        else:
            target = locked / "data"
        check = {c.name: c for c in run_checks(Settings(data_dir=target))}["data_dir"]
        assert check.status == "fail" and "SECURE_AGENT_DATA_DIR" in check.fix
    finally:
        locked.chmod(0o700)


def test_sandbox_check_reports_refusal_and_override(tmp_path, monkeypatch):
    from mcp_api.cli import doctor

    report = {"summary": "mode=none landlock=off seccomp=off", "controls": {}, "minimum_ok": False,
              "unconfined": False, "errors": []}  # fmt: skip
    monkeypatch.setattr(doctor, "probe_sandbox", lambda _: report)
    check = {c.name: c for c in run_checks(Settings(data_dir=tmp_path))}["sandbox"]
    assert check.status == "fail" and check.detail.startswith("run_command is refused")
    monkeypatch.setattr(doctor, "probe_sandbox", lambda _: {**report, "unconfined": True})
    check = {c.name: c for c in run_checks(Settings(data_dir=tmp_path))}["sandbox"]
    assert check.status == "warn" and "UNCONFINED" in check.detail
    monkeypatch.setattr(doctor, "probe_sandbox", lambda _: {**report, "errors": ["no cgroup"]})
    check = {c.name: c for c in run_checks(Settings(data_dir=tmp_path))}["sandbox"]
    assert check.status == "fail" and "no cgroup" in check.detail

    def broken(_):
        raise RuntimeError("fork server died")

    monkeypatch.setattr(doctor, "probe_sandbox", broken)
    check = {c.name: c for c in run_checks(Settings(data_dir=tmp_path))}["sandbox"]
    assert check.status == "fail" and "fork server died" in check.detail


def test_invalid_sandbox_settings_fail_at_start(tmp_path):
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError, match="max_timeout_s"):
        Settings(data_dir=tmp_path, sandbox={"timeout_s": 900, "max_timeout_s": 60})
