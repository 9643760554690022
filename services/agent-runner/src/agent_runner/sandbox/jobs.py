"""Background commands: started now, read later by offset, killed on demand or at shutdown.

A job runs exactly like `run_command` (same confinement, same wall-clock limit, which defaults
to the policy's maximum for jobs since they are meant to run long) and additionally copies what
it prints, stdout and stderr interleaved as they arrive, into a bounded buffer addressed by
absolute byte offsets. A reader passes the offset it got last time and receives what came
since; if the buffer has moved past that offset the reply says how many bytes were dropped.

Jobs belong to one JobManager (one per workspace runner): at most `max_jobs` run at once, the
last `keep_finished` finished ones stay readable, and `aclose()` kills every running job, so
no job outlives its runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .policy import SandboxPolicy
from .spawn import CommandRejected, CommandResult, ForkServer, _Process, execute, validate

KILL_WAIT_S = 10.0


class TooManyJobs(CommandRejected):
    """`max_jobs` jobs are already running: a limit the caller can wait out, not a malformed request."""


class JobNotFound(LookupError):
    """No job with this id (never started, or finished and since forgotten)."""


class JobOutput(NamedTuple):
    """What `output()` returns: (chunk, next_offset, finished, result, dropped_bytes)."""

    chunk: str  # starts with a "[... N bytes dropped ...]" line if the buffer moved past the offset
    next_offset: int
    finished: bool
    result: CommandResult | None  # set once finished
    dropped_bytes: int = 0  # output that scrolled out of the buffer before it was read


class OutputRing:
    """The last `limit` bytes of a stream, addressed by absolute offsets."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.start = 0  # absolute offset of buf[0]

    @property
    def end(self) -> int:
        return self.start + len(self.buf)

    def append(self, data: bytes) -> None:
        self.buf += data
        excess = len(self.buf) - self.limit
        if excess > 0:
            del self.buf[:excess]
            self.start += excess

    def read(self, since: int, complete: bool) -> tuple[bytes, int, int]:
        """(bytes from `since`, the offset after them, bytes lost before them)."""
        since = max(0, min(since, self.end))
        dropped = max(0, self.start - since)
        data = bytes(self.buf[max(since, self.start) - self.start :])
        if not complete:
            data = data[: _complete_utf8(data)]
        return data, max(since, self.start) + len(data), dropped


def _complete_utf8(data: bytes) -> int:
    """Length of `data` without a trailing, still incomplete UTF-8 sequence (held back until
    the rest arrives, so a chunk never ends in half a character)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if back < need else len(data)
    return len(data)


@dataclass
class Job:
    id: str
    argv: list[str]
    cwd: str
    started_at: float
    ring: OutputRing
    task: asyncio.Task | None = None
    process: _Process | None = None
    result: CommandResult | None = None
    error: BaseException | None = None
    killed: bool = False
    finished_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "argv": self.argv,
            "cwd": self.cwd,
            "running": not self.finished,
            "killed": self.killed,
            "output_bytes": self.ring.end,
            "exit_code": self.result.exit_code if self.result else None,
            "signal": self.result.signal if self.result else None,
            "runtime_s": round((self.finished_at or time.monotonic()) - self.started_at, 3),
        }


class JobManager:
    def __init__(
        self,
        policy: SandboxPolicy,
        *,
        max_jobs: int = 4,
        keep_finished: int = 16,
        buffer_bytes: int | None = None,
        server: ForkServer | None = None,
    ) -> None:
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.policy = policy
        self.max_jobs = max_jobs
        self.keep_finished = keep_finished
        self.buffer_bytes = buffer_bytes or policy.max_output_bytes
        self.server = server
        self._jobs: dict[str, Job] = {}
        self._closed = False

    def running(self) -> list[Job]:
        return [job for job in self._jobs.values() if not job.finished]

    async def start(
        self,
        argv: list[str] | None = None,
        shell: str | None = None,
        cwd: str = ".",
        stdin: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """Start a background command; returns its job id once it is running.

        Raises like run_command (CommandRejected, SandboxUnavailable, SandboxError), and
        CommandRejected when `max_jobs` jobs are already running.
        """
        if self._closed:
            raise CommandRejected("the job manager is shut down")
        if len(self.running()) >= self.max_jobs:
            raise TooManyJobs(
                f"at most {self.max_jobs} background jobs may run at once; kill one (job_kill) or wait for one to finish"
            )
        request = validate(
            self.policy,
            argv,
            shell,
            cwd,
            stdin,
            env,
            self.policy.max_timeout_s if timeout_s is None else timeout_s,
        )
        job = Job(
            id="job-" + secrets.token_hex(6),
            argv=request.argv,
            cwd=request.cwd,
            started_at=time.monotonic(),
            ring=OutputRing(self.buffer_bytes),
        )
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_output(stream: str, data: bytes) -> None:
            job.ring.append(data)
            job.changed.set()

        def on_started(proc: _Process) -> None:
            job.process = proc
            if not started.done():
                started.set_result(None)

        async def run() -> None:
            try:
                job.result = await execute(
                    self.policy, request, server=self.server, on_output=on_output, on_started=on_started
                )
            except BaseException as exc:
                job.error = exc
                if not started.done():
                    started.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                job.finished_at = time.monotonic()
                job.process = None
                job.changed.set()

        self._jobs[job.id] = job
        job.task = asyncio.create_task(run(), name=f"sandbox {job.id}")
        try:
            await started
        except BaseException:
            self._jobs.pop(job.id, None)
            raise
        self._forget_old()
        return job.id

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}: it never existed or finished long ago")
        return job

    def is_finished(self, job_id: str) -> bool:
        return self._get(job_id).finished

    async def output(self, job_id: str, since_offset: int = 0, wait_s: float = 0.0) -> JobOutput:
        """What the job printed from `since_offset` on. With `wait_s`, waits that long for
        something new (or the end) when there is nothing yet."""
        job = self._get(job_id)
        if since_offset < 0:
            raise CommandRejected("since_offset must be >= 0")
        if wait_s > 0 and not job.finished and job.ring.end <= since_offset:
            job.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), timeout=min(wait_s, 60.0))
        data, next_offset, dropped = job.ring.read(since_offset, complete=job.finished)
        chunk = data.decode("utf-8", "replace")
        if dropped:
            chunk = (
                f"[... {dropped} bytes dropped: the job buffer keeps the last {job.ring.limit} bytes ...]\n"
                + chunk
            )
        return JobOutput(chunk, next_offset, job.finished, job.result, dropped)

    async def kill(self, job_id: str) -> CommandResult | None:
        """Kill the job's whole process tree and return its result (None if it never ran)."""
        job = self._get(job_id)
        if not job.finished:
            job.killed = True
            if job.process is not None:
                job.process.send_signal(signal.SIGTERM)  # the supervisor kills the tree and reports
            if job.task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(job.task), timeout=KILL_WAIT_S)
                except TimeoutError:
                    job.task.cancel()
        return job.result

    def summaries(self) -> list[dict[str, Any]]:
        return [job.summary() for job in self._jobs.values()]

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished_at or 0)
        for job in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job.id]

    async def aclose(self) -> None:
        """Kill every running job and wait for them (the runner is shutting down)."""
        self._closed = True
        await asyncio.gather(*(self.kill(job.id) for job in self.running()), return_exceptions=True)
        for job in self._jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
                with contextlib.suppress(BaseException):
                    await job.task
