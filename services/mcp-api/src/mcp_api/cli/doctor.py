"""`secure-agent doctor`: what this machine offers, what is missing, and how to fix it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from agent_runner.sandbox.probe import Capabilities, probe

from ..runners.sandbox_report import probe_sandbox
from ..settings import Settings


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _kernel_tuple(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def run_checks(settings: Settings, caps: Capabilities | None = None) -> list[Check]:
    caps = caps or probe()
    checks: list[Check] = []
    major_minor = _kernel_tuple(caps.kernel)
    checks.append(
        Check("kernel", "ok" if major_minor >= (6, 7) else "warn", f"Linux {caps.kernel}",
              "" if major_minor >= (6, 7) else "Linux 6.7+ gives Landlock TCP rules; 6.12+ adds signal scoping")
    )  # fmt: skip
    checks.append(
        Check("python", "ok" if sys.version_info >= (3, 11) else "fail", sys.version.split()[0],
              "" if sys.version_info >= (3, 11) else "install Python 3.11 or newer")
    )  # fmt: skip
    if caps.landlock_abi >= 4:
        checks.append(Check("landlock", "ok", f"ABI {caps.landlock_abi}"))
    elif caps.landlock_abi:
        checks.append(Check("landlock", "warn", f"ABI {caps.landlock_abi}: no TCP rules before ABI 4",
                            "upgrade to Linux 6.7+ for network rules"))  # fmt: skip
    else:
        checks.append(Check("landlock", "fail", caps.landlock_reason,
                            "boot with lsm=landlock,... (kernel 5.13+ built with CONFIG_SECURITY_LANDLOCK)"))  # fmt: skip
    checks.append(
        Check("seccomp", "ok" if caps.seccomp else "fail", caps.seccomp_reason,
              "" if caps.seccomp else "use a kernel built with CONFIG_SECCOMP_FILTER")
    )  # fmt: skip
    checks.append(
        Check("libseccomp", "ok" if caps.libseccomp else "warn",
              "libseccomp.so.2 found" if caps.libseccomp else "libseccomp.so.2 not found",
              "" if caps.libseccomp else "apt-get install libseccomp2")
    )  # fmt: skip
    checks.append(
        Check("openat2", "ok" if caps.openat2 else "warn",
              "race-free path resolution" if caps.openat2 else "unavailable; using the O_NOFOLLOW walk",
              "" if caps.openat2 else "Linux 5.6+ provides openat2")
    )  # fmt: skip
    checks.append(
        Check("namespaces", "ok" if caps.user_namespaces else "warn",
              "user namespaces enabled" if caps.user_namespaces else "user namespaces disabled",
              "" if caps.user_namespaces else "sysctl -w user.max_user_namespaces=15000")
    )  # fmt: skip
    checks.append(
        Check("cgroups", "ok" if caps.cgroup != "none" else "warn", f"cgroup {caps.cgroup}",
              "" if caps.cgroup != "none" else "mount cgroup2 at /sys/fs/cgroup for memory/pids limits")
    )  # fmt: skip
    checks.append(_sandbox_check(settings))
    checks.append(_data_dir_check(settings.data_dir))
    checks.append(
        Check("node", "ok" if shutil.which("npx") else "warn",
              "npx found (Claude Desktop's mcp-remote bridge)" if shutil.which("npx") else "npx not found",
              "" if shutil.which("npx") else "install Node.js 18+ to use Claude Desktop through mcp-remote")
    )  # fmt: skip
    return checks


def _sandbox_check(settings: Settings) -> Check:
    """The controls commands actually get under the configured policy, as the sandbox plans them."""
    try:
        report = probe_sandbox(settings.sandbox)
    except Exception as exc:  # a broken probe is itself the finding
        return Check("sandbox", "fail", f"cannot plan a sandboxed command: {exc}", "see the runner log")
    if report["errors"]:
        return Check("sandbox", "fail", "; ".join(report["errors"]), "adjust SECURE_AGENT_SANDBOX__* settings")
    if not report["minimum_ok"]:
        if report["unconfined"]:
            return Check("sandbox", "warn", "UNCONFINED commands (operator override): " + report["summary"],
                         "unset SECURE_AGENT_SANDBOX__ALLOW_UNCONFINED once Landlock+seccomp or namespaces work")  # fmt: skip
        return Check("sandbox", "fail", "run_command is refused: " + report["summary"],
                     "enable Landlock and seccomp (or run the runner as root for namespaces)")  # fmt: skip
    return Check("sandbox", "ok", report["summary"])


def _data_dir_check(data_dir: Path) -> Check:
    target = data_dir if data_dir.exists() else next((p for p in data_dir.parents if p.exists()), Path("/"))
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("data_dir", "fail", f"{data_dir} is not writable: {exc.strerror}",
                     f"set SECURE_AGENT_DATA_DIR to a writable directory or fix permissions of {target}")  # fmt: skip
    mode = ""
    if data_dir.exists() and data_dir.stat().st_mode & 0o077:
        mode = f" (mode {oct(data_dir.stat().st_mode & 0o777)}: readable by others)"
        return Check("data_dir", "warn", f"{data_dir} writable{mode}", f"chmod 700 {data_dir}")
    return Check(
        "data_dir", "ok", f"{data_dir} writable" + ("" if data_dir.exists() else " (will be created)")
    )


_MARK = {"ok": "✔", "warn": "!", "fail": "✘"}


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{_MARK[c.status]} {c.name:<11} {c.detail}")
        if c.fix:
            lines.append(f"  {'':<11} fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append("")
    lines.append(
        f"{failed} failed, {warned} warnings" + ("" if failed else "; this machine can run secure-agent")
    )
    if os.geteuid() == 0:
        lines.append("note: running as root; the runner will drop privileges for commands where it can")
    return "\n".join(lines)
