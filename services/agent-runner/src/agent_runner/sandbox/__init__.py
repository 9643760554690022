"""Confined command execution: Landlock, seccomp, rlimits, namespaces, cgroups.

Public API (imported lazily: the fork server imports this package and must stay small):

    SandboxPolicy                      policy.py, the one source of every setting
    run_command, CommandResult,        spawn.py
    active_controls, sandbox_status,
    SandboxError, SandboxUnavailable,
    CommandRejected, shutdown_forkserver
    JobManager                         jobs.py, background commands
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import JobManager, JobOutput
    from .policy import SandboxPolicy
    from .spawn import (
        CommandRejected,
        CommandResult,
        SandboxError,
        SandboxUnavailable,
        active_controls,
        run_command,
        sandbox_status,
        shutdown_forkserver,
    )

_EXPORTS = {
    "SandboxPolicy": "policy",
    "run_command": "spawn",
    "CommandResult": "spawn",
    "active_controls": "spawn",
    "SandboxError": "spawn",
    "SandboxUnavailable": "spawn",
    "CommandRejected": "spawn",
    "sandbox_status": "spawn",
    "shutdown_forkserver": "spawn",
    "JobManager": "jobs",
    "JobOutput": "jobs",
}

__all__ = [
    "CommandRejected",
    "CommandResult",
    "JobManager",
    "JobOutput",
    "SandboxError",
    "SandboxPolicy",
    "SandboxUnavailable",
    "active_controls",
    "run_command",
    "sandbox_status",
    "shutdown_forkserver",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
