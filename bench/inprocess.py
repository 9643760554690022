"""mcp-api's own CPU per `read_file`, in-process: calls its ASGI stack directly (no HTTP, no load
generator), with the benchmark's settings and a real runner process.

    uv run python bench/inprocess.py [--calls 3000] [--rounds 3] [--concurrency 64] [--profile modern --out prof.pstats]
    uv run python bench/inprocess.py --concurrency 64 --eras modern --ablate runner-hop --ablate result-sieve
    PYTHONPATH=<worktree>/services/mcp-api/src:<worktree>/services/agent-runner/src uv run python bench/inprocess.py

Reports CPU µs per call (process time of this process, which runs mcp-api; the runner's CPU is not
counted) for each era, interleaved over rounds. The least noisy figure this machine gives, good
for comparing two versions of mcp-api's request path (the second form runs another checkout's) or
the two eras; cProfile's stats (`--profile`) tell where a difference comes from; `--ablate` what a
part of the call costs, by measuring it taken out (an experiment, interleaved with the full call). It
runs on uvloop, as uvicorn serves mcp-api, and by default one call at a time (`--concurrency` keeps
more in flight, so that one loop wake-up serves several, as under load), so absolute figures differ
from `make bench`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402


def settings_env(root: Path) -> dict[str, str]:
    """The settings mcp_bench gives (c). The log goes to stdout, as (c)'s does (main() points stdout
    at a file): the rotating file handler of `logging.file` costs more per line (it stats the file)."""
    return {"SECURE_AGENT_DATA_DIR": str(root / "data"), **mb.SECURE_SETTINGS}


def asgi_request(era: str, name: str, arguments: dict) -> tuple[dict, bytes]:
    body, headers = mb.request_for(era, name, arguments)
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = [(b"host", b"127.0.0.1:8080"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "",
        "headers": head, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8080), "state": {},
    }  # fmt: skip
    return scope, raw


async def call(app, era: str, name: str, arguments: dict) -> list[dict]:
    scope, raw = asgi_request(era, name, arguments)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def calls(app, era: str, arguments: dict, count: int, concurrency: int) -> None:
    """`count` read_file calls, `concurrency` at a time (as wrk's connections keep that many in
    flight: the event loop then serves several per wake-up, as it does under load)."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call(app, era, "read_file", arguments)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _without_runner_hop():
    """Each runner operation answered by its first real answer: what the hop costs mcp-api."""
    from agent_runner.client import RunnerClient

    real = RunnerClient.call
    answers: dict[str, object] = {}

    async def canned(self, op, request, **kwargs):
        if op not in answers:
            answers[op] = await real(self, op, request, **kwargs)
        return answers[op]

    RunnerClient.call = canned
    return lambda: setattr(RunnerClient, "call", real)


def _without_output_conversion():
    """The SDK's output conversion (a CallToolResult's structuredContent validated again) skipped."""
    from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata

    real = FuncMetadata.convert_result
    FuncMetadata.convert_result = lambda self, result: result
    return lambda: setattr(FuncMetadata, "convert_result", real)


def _without_result_sieve():
    """The SDK's per-revision result sieve replaced by its first answer per (method, revision)."""
    from mcp.server.runner import ServerRunner

    real = ServerRunner._serialize
    answers: dict[tuple[str, str], object] = {}

    def remembered(self, method, version, result):
        if (method, version) not in answers:
            answers[method, version] = real(self, method, version, result)
        return answers[method, version]

    ServerRunner._serialize = remembered
    return lambda: setattr(ServerRunner, "_serialize", real)


# --ablate: a part of the call taken out, measured interleaved with the full call (an experiment: the
# answers are the same file's, so the canned ones are right here and nowhere else).
ABLATIONS = {
    "runner-hop": _without_runner_hop,
    "output-conversion": _without_output_conversion,
    "result-sieve": _without_result_sieve,
}


def report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # stdout carries the servers' log lines


async def run(args: argparse.Namespace) -> None:
    from mcp_api.app import create_app
    from mcp_api.observability.logging import setup_logging
    from mcp_api.settings import Settings

    settings = Settings()
    app = create_app(settings)
    setup_logging(settings)
    async with app.router.lifespan_context(app):
        answer = await call(app, "legacy", "write_file", {"path": mb.FILE_PATH, "content": mb.file_content()})
        if answer[0]["status"] != 200:
            raise RuntimeError(f"write_file failed: {answer}")
        arguments = {"path": mb.FILE_PATH}
        eras = args.eras.split(",")
        for era in eras:  # warm up, and check the answer is the file
            body = (await call(app, era, "read_file", arguments))[-1]["body"]
            if mb.file_content()[:200].encode() not in body.replace(b"\\n", b"\n"):
                raise RuntimeError(f"{era}: read_file did not return the file: {body[:200]!r}")
        for rnd in range(args.rounds):
            for era in eras:
                for variant in ["full", *args.ablate]:
                    undo = ABLATIONS[variant]() if variant != "full" else None
                    try:
                        started = time.process_time()
                        await calls(app, era, arguments, args.calls, args.concurrency)
                        per_call = (time.process_time() - started) / args.calls * 1e6
                    finally:
                        if undo is not None:
                            undo()
                    row = {"round": rnd, "era": era, "cpu_us_per_call": round(per_call, 1)}
                    report(json.dumps(row if variant == "full" else {**row, "without": variant}))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await calls(app, args.profile, arguments, args.calls, args.concurrency)
            profiler.disable()
            profiler.dump_stats(args.out)
            report(f"wrote {args.out} ({args.calls} calls, {args.profile})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="calls per era and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eras", default="legacy,modern")
    parser.add_argument("--concurrency", type=int, default=1, help="calls in flight at once")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="uvloop: as served")
    parser.add_argument("--ablate", action="append", default=[], choices=sorted(ABLATIONS),
                        help="also measure without this part (repeatable; the access line: "
                             "SECURE_AGENT_LOGGING__ACCESS_LOG=false)")  # fmt: skip
    parser.add_argument("--profile", choices=["legacy", "modern"], help="then profile this era with cProfile")
    parser.add_argument("--out", type=Path, default=Path("inprocess.pstats"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sa-inprocess-", dir="/tmp"))
    root.chmod(0o755)
    os.environ.update(settings_env(root))
    # Both processes' log lines (the runner inherits stdout) to a file, as make bench's servers write.
    log = open(root / "servers.log", "w")  # noqa: SIM115 - closed below
    os.dup2(log.fileno(), sys.stdout.fileno())
    try:
        if args.loop == "uvloop":
            import uvloop  # what uvicorn's loop="auto" runs mcp-api on

            uvloop.run(run(args))
        else:
            asyncio.run(run(args))
    finally:
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
