"""Command tools: run_command (foreground or background), job_output, job_kill.

Commands run in the workspace's runner under its sandbox (Landlock, seccomp, rlimits, and
namespaces/cgroups where the runner may use them); these tools check scopes and shape results.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from agent_runner import protocol as p
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from ...auth.scopes import Scope
from ...deps import Services
from ...observability.metrics import SANDBOX_LIMIT_HITS
from .calls import require, run_op
from .files import TOOL_SCOPES, Workspace
from .gate import caller_profile

RUN = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False)
READ_JOB = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
KILL_JOB = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)

JobId = Annotated[
    str, Field(min_length=1, max_length=64, description="Id returned by run_command(background=true).")
]


def describe(outcome: p.CommandOutcome) -> str:
    """A person-readable summary; the structured result carries every field."""
    if outcome.signal:
        head = f"killed by {outcome.signal}"
    else:
        head = f"exit code {outcome.exit_code}"
    head += f" after {outcome.duration_s:.2f}s"
    if outcome.limits_hit:
        head += f" (limits hit: {', '.join(outcome.limits_hit)})"
    parts = [head]
    for name, text, cut in (
        ("stdout", outcome.stdout, outcome.stdout_truncated),
        ("stderr", outcome.stderr, outcome.stderr_truncated),
    ):
        if text or cut:
            parts.append(f"--- {name}{' (truncated)' if cut else ''} ---\n{text}")
    return "\n".join(parts)


# A finished job's result can be read many times; its limit hits are counted the first time only.
_COUNTED_JOBS: OrderedDict[str, None] = OrderedDict()
_MAX_COUNTED_JOBS = 4096


def _count_limits_once(job_id: str, outcome: p.CommandOutcome | None) -> None:
    if outcome is None or job_id in _COUNTED_JOBS:
        return
    _COUNTED_JOBS[job_id] = None
    while len(_COUNTED_JOBS) > _MAX_COUNTED_JOBS:
        _COUNTED_JOBS.popitem(last=False)
    for control in outcome.limits_hit:
        SANDBOX_LIMIT_HITS.labels(control=control).inc()


def register(mcp: MCPServer, services: Services) -> None:
    TOOL_SCOPES.update(
        {"run_command": Scope.EXEC.value, "job_output": Scope.EXEC.value, "job_kill": Scope.EXEC.value}
    )

    @mcp.tool(name="run_command", title="Run a command", annotations=RUN)
    async def run_command(
        command: Annotated[
            list[str] | None,
            Field(min_length=1, max_length=16384, description="Program and arguments, run without a shell."),
        ] = None,
        shell: Annotated[
            str | None,
            Field(
                min_length=1, max_length=p.MAX_SHELL_CHARS, description="A command line run with /bin/sh -c."
            ),
        ] = None,
        cwd: Annotated[
            str, Field(max_length=p.MAX_PATH_LENGTH, description="Directory inside the workspace.")
        ] = ".",
        timeout_s: Annotated[
            float | None,
            Field(
                gt=0,
                allow_inf_nan=False,
                description="Wall-clock limit in seconds; the sandbox policy sets the default and maximum.",
            ),
        ] = None,
        stdin: Annotated[
            str | None, Field(max_length=p.MAX_STDIN_CHARS, description="Text for standard input.")
        ] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables (allowlisted names only).")
        ] = None,
        background: Annotated[bool, Field(description="Start as a job; read it with job_output.")] = False,
        workspace: Workspace = None,
    ) -> Annotated[CallToolResult, p.RunCommandResult]:
        """Run a command in the sandboxed workspace: give `command` (argv list) or `shell` (a command
        line). Network is off and nothing outside the workspace is writable. The result has the exit
        code or signal, stdout and stderr (capped, marked when truncated), the duration and any limit
        that stopped the command."""
        # Scope first: a caller without `exec` learns nothing about what a valid request looks like.
        require(Scope.EXEC, "run_command")
        if (command is None) == (shell is None):
            raise ToolError("give exactly one of 'command' (a list of strings) or 'shell' (a command line)")
        request = p.RunCommandRequest(
            argv=command,
            shell=shell,  # nosec B604 - a field of the runner request, run by the sandbox, not subprocess
            cwd=cwd,
            timeout_s=timeout_s,
            stdin=stdin,
            env=env or {},
            background=background,
        )
        # The tenant's limits (its AgentProfile's spec.sandbox.limits over the settings). Checked here
        # too, so a lowered maximum applies at once even to a runner started under the old one.
        profile = caller_profile(services)
        sandbox = profile.sandbox if profile is not None else services.settings.sandbox
        if timeout_s is not None and timeout_s > sandbox.max_timeout_s:
            source = f"AgentProfile '{profile.name}'" if profile is not None else "settings"
            raise ToolError(
                f"timeout_s must be > 0 and <= {sandbox.max_timeout_s:g}, got {timeout_s:g} "
                f"(max_timeout_s of the sandbox limits from your {source})"
            )
        # The call lasts as long as the command may: its own limit (or the policy's maximum) plus the
        # time the sandbox needs to kill a tree and report.
        limit = timeout_s if timeout_s is not None else sandbox.max_timeout_s
        result: p.RunCommandResult = await run_op(
            services, "run_command", Scope.EXEC, workspace, "exec/run", request, request_timeout=limit + 15
        )
        if result.result is not None:
            for control in result.result.limits_hit:
                SANDBOX_LIMIT_HITS.labels(control=control).inc()
        if result.result is None:
            text = f"started job {result.job_id}; read its output with job_output(job_id='{result.job_id}')"
        else:
            text = describe(result.result)
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
        )

    @mcp.tool(name="job_output", title="Read a job's output", annotations=READ_JOB)
    async def job_output(
        job_id: JobId,
        since_offset: Annotated[
            int, Field(ge=0, description="next_offset from the previous call; 0 at first.")
        ] = 0,
        workspace: Workspace = None,
    ) -> p.JobOutputResult:
        """What a background job printed since `since_offset` (stdout and stderr interleaved), and its
        result once it has finished."""
        request = p.JobOutputRequest(job_id=job_id, since_offset=since_offset)
        result: p.JobOutputResult = await run_op(
            services, "job_output", Scope.EXEC, workspace, "exec/job_output", request
        )
        _count_limits_once(job_id, result.result)
        return result

    @mcp.tool(name="job_kill", title="Stop a job", annotations=KILL_JOB)
    async def job_kill(job_id: JobId, workspace: Workspace = None) -> p.JobKillResult:
        """Stop a background job and everything it started."""
        request = p.JobKillRequest(job_id=job_id)
        result: p.JobKillResult = await run_op(
            services, "job_kill", Scope.EXEC, workspace, "exec/job_kill", request
        )
        _count_limits_once(job_id, result.result)
        return result
