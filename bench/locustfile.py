"""A realistic mix of MCP clients against secure-agent, for locust (driven by bench/load_mix.py).

Users (weights): modern (2026-07-28, stateless, Mcp-Method/Mcp-Name headers and `_meta`) and legacy
(2025-11-25) readers, writers, command runners, and agent runs against the instant scripted model
(bench/servers/instant_model.py: three read_file steps per run). Every request is a real JSON-RPC
`tools/call`; a JSON-RPC error or a tool result with isError counts as a failure.

The load shape comes from LOCUST_MODE:
  ramp  — add LOCUST_STEP_USERS users every LOCUST_STEP_S seconds (up to LOCUST_MAX_USERS) and stop
          at the first step whose p99 exceeds LOCUST_P99_MS or that had a failure: the last step
          that met the objective is the capacity (written to LOCUST_RESULT as JSON).
  soak  — LOCUST_USERS users for LOCUST_SOAK_S seconds; RSS of the server tree (LOCUST_SERVER_PID)
          sampled every LOCUST_SAMPLE_S seconds into LOCUST_RESULT.
  smoke — LOCUST_USERS users for LOCUST_SOAK_S seconds (the bench smoke test).
Host: --host http://127.0.0.1:PORT. Key: BENCH_API_KEY (default: the benchmark's dev key).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcp_bench as mb  # noqa: E402

MODE = os.environ.get("LOCUST_MODE", "smoke")
P99_MS = float(os.environ.get("LOCUST_P99_MS", "100"))
STEP_USERS = int(os.environ.get("LOCUST_STEP_USERS", "8"))
STEP_S = float(os.environ.get("LOCUST_STEP_S", "15"))
MAX_USERS = int(os.environ.get("LOCUST_MAX_USERS", "128"))
USERS = int(os.environ.get("LOCUST_USERS", "8"))
SOAK_S = float(os.environ.get("LOCUST_SOAK_S", "60"))
SAMPLE_S = float(os.environ.get("LOCUST_SAMPLE_S", "30"))
RESULT = os.environ.get("LOCUST_RESULT")
SERVER_PID = int(os.environ.get("LOCUST_SERVER_PID", "0") or 0)
API_KEY = os.environ.get("BENCH_API_KEY", mb.API_KEY)
_ids = itertools.count(1)


class McpUser(FastHttpUser):
    abstract = True
    era = "modern"
    wait_time = between(0.0, 0.02)

    def tool(self, name: str, arguments: dict, label: str | None = None) -> dict | None:
        body, headers = mb.request_for(self.era, name, arguments, next(_ids))
        headers["authorization"] = f"Bearer {API_KEY}"
        with self.client.post(
            "/mcp",
            data=json.dumps(body),
            headers=headers,
            name=label or f"{self.era} {name}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return None
            try:
                message = response.json()
            except ValueError:
                response.failure(f"not JSON: {response.text[:200]}")
                return None
            result = message.get("result")
            if not result or result.get("isError"):
                response.failure(json.dumps(message)[:300])
                return None
            response.success()
            return result


class ModernReader(McpUser):
    weight = 6
    era = "modern"

    @task
    def read(self) -> None:
        self.tool("read_file", {"path": mb.FILE_PATH})


class LegacyReader(McpUser):
    weight = 3
    era = "legacy"

    @task
    def read(self) -> None:
        self.tool("read_file", {"path": mb.FILE_PATH})


class Writer(McpUser):
    weight = 2
    era = "modern"

    @task
    def write(self) -> None:
        n = random.randrange(64)  # noqa: S311 - which file to overwrite, not a secret
        self.tool("write_file", {"path": f"load/w{n:02d}.txt", "content": "x" * 1024})


class CommandRunner(McpUser):
    weight = 1
    era = "legacy"
    wait_time = between(0.05, 0.2)

    @task
    def run_true(self) -> None:
        self.tool("run_command", {"command": ["true"]})


class AgentUser(McpUser):
    weight = 1
    era = "modern"
    wait_time = between(0.1, 0.3)

    @task
    def agent(self) -> None:
        prompt = f"steps=3 tool=read_file path={mb.FILE_PATH}"
        self.tool("agent_run", {"prompt": prompt, "max_steps": 10})


def _tree_rss_mb(pid: int) -> float | None:
    """RSS of mcp-api and its runner(s): the long-lived processes of the tree (a sandboxed command's
    short-lived processes are left out, so a sample does not depend on what is in flight)."""
    if not pid:
        return None
    pids = []
    for p in mb.tree(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"mcp_api" in cmdline or b"agent_runner\x00serve" in cmdline:
            pids.append(p)
    return round(sum(mb.rss_kib(pids, "VmRSS")) / 1024, 1) if pids else None


class Shape(LoadTestShape):
    """ramp / soak / smoke, as described above."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict] = []
        self.samples: list[dict] = []
        self.stopped_because: str | None = None
        self._step_start = 0.0
        self._mark: tuple[int, int] | None = None
        self._last_sample = -1e9

    def _totals(self) -> tuple[int, int]:
        total = self.runner.stats.total
        return total.num_requests, total.num_failures

    def tick(self):
        now = self.get_run_time()
        if MODE == "ramp":
            users = STEP_USERS * (1 + int(now // STEP_S))
            if self._mark is None:
                self._mark = self._totals()
                self._step_start = now
                self.runner.stats.reset_all()
            if now - self._step_start >= STEP_S:
                total = self.runner.stats.total
                p99 = total.get_response_time_percentile(0.99)
                step = {
                    "users": len(self.steps) * STEP_USERS + STEP_USERS,
                    "rps": round(total.num_requests / max(now - self._step_start, 1e-9), 1),
                    "requests": total.num_requests,
                    "failures": total.num_failures,
                    "p50_ms": total.get_response_time_percentile(0.5),
                    "p99_ms": p99,
                    "rss_mb": _tree_rss_mb(SERVER_PID),
                }
                self.steps.append(step)
                self._write()
                self.runner.stats.reset_all()
                self._step_start = now
                if total.num_failures or (p99 or 0) > P99_MS:
                    self.stopped_because = (
                        "failures" if total.num_failures else f"p99 {p99} ms > {P99_MS:g} ms"
                    )
                    self._write()
                    return None
                if users > MAX_USERS:
                    self.stopped_because = f"reached {MAX_USERS} users"
                    self._write()
                    return None
            return min(users, MAX_USERS), max(STEP_USERS, 1)
        if now >= SOAK_S:
            return None  # the final sample is taken when locust quits
        self._sample(now)
        return USERS, max(USERS, 1)

    def _sample(self, now: float, force: bool = False) -> None:
        if MODE == "soak" and (force or now - self._last_sample >= SAMPLE_S):
            self._last_sample = now
            total = self.runner.stats.total
            self.samples.append(
                {
                    "t_s": round(now, 1),
                    "requests": total.num_requests,
                    "failures": total.num_failures,
                    "rss_mb": _tree_rss_mb(SERVER_PID),
                }
            )

    def _write(self) -> None:
        if RESULT:
            capacity = [s for s in self.steps if not s["failures"] and (s["p99_ms"] or 0) <= P99_MS]
            Path(RESULT).write_text(json.dumps({
                "mode": MODE, "p99_objective_ms": P99_MS, "steps": self.steps, "samples": self.samples,
                "capacity": capacity[-1] if capacity else None, "stopped_because": self.stopped_because,
            }, indent=2) + "\n")  # fmt: skip


@events.quitting.add_listener
def _final(environment, **_kwargs) -> None:  # noqa: ANN001
    shape = environment.shape_class
    if isinstance(shape, Shape) and MODE in ("soak", "smoke") and RESULT:
        total = environment.stats.total
        shape.samples.append(
            {
                "t_s": round(shape.get_run_time(), 1),
                "requests": total.num_requests,
                "failures": total.num_failures,
                "rss_mb": _tree_rss_mb(SERVER_PID),
                "final": True,
            }
        )
        shape._write()
