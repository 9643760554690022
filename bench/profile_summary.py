"""Where the CPU goes in a py-spy raw profile (bench/profile_secure.py): samples by owning layer.

    python bench/profile_summary.py bench/results/profiles/secure-legacy-c1-before.txt

Idle leaves (epoll, thread waits) are dropped; each sample goes to the innermost frame that belongs
to a known layer, skipping generic frames (asyncio, anyio, contextlib, ...), so event-loop machinery
is charged to the server that runs the loop (uvicorn). Covers mcp-api and its runner together.
"""

from __future__ import annotations

import collections
import sys

IDLE = ("EpollSelector.select", "Condition.wait", "_connection_worker_thread (", "Event.wait",
        "JSONRPCDispatcher.run ")
GENERIC = ("asyncio/", "anyio/", "threading.py", "contextlib.py", "<frozen", "typing.py", "abc.py",
           "functools.py", "dataclasses.py", "re/", "enum.py", "copy.py", "json/", "uuid.py", "sniffio",
           "greenlet", "weakref")
OWNERS = [
    ("aiosqlite", "store (aiosqlite)"), ("sqlalchemy", "store (sqlalchemy)"), ("api_keys.py", "auth"),
    ("logging/", "logging"), ("pythonjsonlogger", "logging"), ("observability/logs.py", "logging"),
    ("redaction.py", "log redaction"), ("httpcore", "runner client"), ("httpx/", "runner client"),
    ("agent_runner/client.py", "runner client"), ("prometheus", "metrics"),
    ("observability/metrics", "metrics"), ("opentelemetry", "tracing"), ("tracing.py", "tracing"),
    ("fastapi/telemetry", "fastapi telemetry"), ("mcp/", "mcp SDK"), ("pydantic", "pydantic"),
    ("starlette", "starlette"), ("fastapi", "fastapi"), ("uvicorn", "uvicorn + event loop"),
    ("h11", "uvicorn + event loop"), ("httptools", "uvicorn + event loop"), ("mcp_api/", "mcp_api (other)"),
    ("agent_runner", "agent_runner (other)"),
]


def owner(frames: list[str]) -> str:
    for frame in reversed(frames):
        loc = frame[frame.rfind("(") + 1:]
        if any(g in loc for g in GENERIC):
            continue
        for key, name in OWNERS:
            if key in loc:
                return name
    return "other"


def summarize(path: str) -> tuple[int, list[tuple[str, int]]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in open(path):
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        if any(frames[-1].startswith(i) for i in IDLE):
            continue
        counts[owner(frames)] += int(n)
    return sum(counts.values()), counts.most_common()


def main() -> None:
    total, rows = summarize(sys.argv[1])
    print(f"{total} busy samples")
    for name, n in rows:
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
