"""Which sandbox controls commands get on this machine, for `doctor` and `/diagnostics`.

The answer comes from the sandbox itself (the same planning code the runner uses), applied to a
throwaway workspace with the configured policy, so the report cannot drift from what commands get.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from agent_runner.sandbox import SandboxPolicy, sandbox_status, shutdown_forkserver

from ..settings import SandboxSettings


def probe_sandbox(sandbox: SandboxSettings) -> dict[str, Any]:
    """Blocking (~100 ms): plans a command under the policy and reports the controls in force."""
    with tempfile.TemporaryDirectory(prefix="secure-agent-probe-") as scratch:
        workspace = Path(scratch) / "workspace"
        workspace.mkdir()
        policy = SandboxPolicy(workspace=workspace, tmp_dir=Path(scratch) / "tmp", **sandbox.model_dump())
        try:
            status = sandbox_status(policy)
        finally:
            # This process only needed the planner; its fork server must not linger.
            shutdown_forkserver()
    controls = status["controls"]
    return {
        "summary": " ".join(f"{name}={value}" for name, value in controls.items()),
        "controls": controls,
        "minimum_ok": status["minimum_ok"],
        "unconfined": status["unconfined"],
        "errors": status["errors"],
        "commands_allowed": not status["errors"] and (status["minimum_ok"] or status["unconfined"]),
    }


@functools.lru_cache(maxsize=4)
def _cached(sandbox_json: str) -> dict[str, Any]:
    return probe_sandbox(SandboxSettings.model_validate_json(sandbox_json))


def cached_probe(sandbox: SandboxSettings) -> dict[str, Any]:
    """The kernel's features do not change while we run: probe once per policy."""
    return _cached(sandbox.model_dump_json())
