"""The RunnerBackend interface: where a workspace's agent-runner lives and how to reach it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from agent_runner.client import RunnerClient

WORKSPACE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
DEFAULT_WORKSPACE = "default"


class WorkspaceNameError(ValueError):
    pass


def validate_workspace(name: str) -> str:
    if not WORKSPACE_RE.match(name):
        raise WorkspaceNameError(
            f"workspace {name!r} is invalid: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass
class BackendStatus:
    backend: str
    healthy: bool
    runners: int
    detail: dict = field(default_factory=dict)


class RunnerBackend(Protocol):
    name: str

    async def client_for(self, tenant: str, workspace: str) -> RunnerClient:
        """A ready client for the tenant's workspace, starting its runner when needed."""

    async def list_workspaces(self, tenant: str) -> list[str]: ...

    async def status(self) -> BackendStatus: ...

    async def aclose(self) -> None: ...


class RunnerStartError(RuntimeError):
    """The runner could not be started or did not become ready; shown to the caller as retryable."""


class RunnerLimitError(RuntimeError):
    """The tenant already has as many workspace runners as it may; the message says what to do."""
