"""The runner's command service: the exec/* and sandbox/* operations over the sandbox library.

File operations are synchronous work on the workspace fd (run in threads); commands are async
processes owned by the sandbox's fork server, so they get their own service with one policy and
one job table per runner. Every sandbox exception is turned into an OperationError here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent_runner.errors import OperationError
from agent_runner.protocol import (
    CommandOutcome,
    ErrorCode,
    JobKillRequest,
    JobKillResult,
    JobOutputRequest,
    JobOutputResult,
    RunCommandRequest,
    RunCommandResult,
    SandboxStatusRequest,
    SandboxStatusResult,
)
from agent_runner.sandbox import (
    CommandRejected,
    JobManager,
    SandboxError,
    SandboxPolicy,
    SandboxUnavailable,
    run_command,
    sandbox_status,
    shutdown_forkserver,
)
from agent_runner.sandbox.jobs import JobNotFound, TooManyJobs

MAX_JOBS = 4


def _outcome(result: Any) -> CommandOutcome:
    return CommandOutcome.model_validate(result.to_dict())


class CommandService:
    def __init__(self, policy: SandboxPolicy, *, max_jobs: int = MAX_JOBS) -> None:
        self.policy = policy
        self.jobs = JobManager(policy, max_jobs=max_jobs)

    async def run(self, req: RunCommandRequest) -> RunCommandResult:
        args = {"argv": req.argv, "shell": req.shell, "cwd": req.cwd, "stdin": req.stdin, "env": req.env,
                "timeout_s": req.timeout_s}  # fmt: skip
        with _mapped_errors():
            if req.background:
                job_id = await self.jobs.start(**args)
                return RunCommandResult(status="started", job_id=job_id)
            result = await run_command(self.policy, **args)
        return RunCommandResult(status="finished", result=_outcome(result))

    async def job_output(self, req: JobOutputRequest) -> JobOutputResult:
        with _mapped_errors():
            out = await self.jobs.output(req.job_id, req.since_offset)
        return JobOutputResult(
            job_id=req.job_id,
            output=out.chunk,
            next_offset=out.next_offset,
            dropped_bytes=out.dropped_bytes,
            finished=out.finished,
            result=_outcome(out.result) if out.result is not None else None,
        )

    async def job_kill(self, req: JobKillRequest) -> JobKillResult:
        with _mapped_errors():
            already_done = self.jobs.is_finished(req.job_id)
            result = await self.jobs.kill(req.job_id)
        return JobKillResult(
            job_id=req.job_id, killed=not already_done, result=_outcome(result) if result is not None else None
        )

    async def status(self, _: SandboxStatusRequest | None = None) -> SandboxStatusResult:
        # The first call for a policy probes the machine (~100 ms, blocking): keep it off the loop.
        status = await asyncio.to_thread(sandbox_status, self.policy)
        return SandboxStatusResult(
            controls=status["controls"], minimum_ok=status["minimum_ok"], unconfined=status["unconfined"]
        )

    async def aclose(self) -> None:
        await self.jobs.aclose()
        await asyncio.to_thread(shutdown_forkserver)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except JobNotFound as exc:
        raise OperationError(ErrorCode.NOT_FOUND, str(exc)) from exc
    except TooManyJobs as exc:
        raise OperationError(ErrorCode.LIMIT_REACHED, str(exc)) from exc
    except CommandRejected as exc:
        raise OperationError(ErrorCode.INVALID_ARGUMENT, str(exc)) from exc
    except SandboxUnavailable as exc:
        raise OperationError(ErrorCode.SANDBOX_UNAVAILABLE, str(exc)) from exc
    except SandboxError as exc:
        raise OperationError(ErrorCode.INTERNAL, f"the sandbox could not start the command: {exc}") from exc


HANDLERS = {
    "exec/run": CommandService.run,
    "exec/job_output": CommandService.job_output,
    "exec/job_kill": CommandService.job_kill,
    "sandbox/status": CommandService.status,
}
