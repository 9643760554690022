"""Scripted model servers over real HTTP: one uvicorn server (in a thread) that speaks the OpenAI Chat
Completions API (`POST /v1/chat/completions`) and the Anthropic Messages API (`POST /v1/messages`).

A test queues steps; each request pops one and answers it in the wire format of the endpoint hit:
  Step.tools(("write_file", {"path": "a", "content": "x"}), ...)   model proposes tool calls
  Step.raw_tool("run_command", '{"shell": "ls"')                    malformed arguments JSON
  Step.text("done")                                                  final answer
  Step.status(500)                                                   HTTP error
A step may also be a callable(request_json) -> Step, to look at what the agent sent.
Every request body is kept in `requests`."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

INPUT_TOKENS = 100
OUTPUT_TOKENS = 20


@dataclass
class Step:
    kind: str
    text: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, raw JSON arguments)
    status_code: int = 200

    @classmethod
    def tools(cls, *calls: tuple[str, dict[str, Any]], text: str | None = None) -> Step:
        return cls("tools", text=text, calls=[(name, json.dumps(args)) for name, args in calls])

    @classmethod
    def raw_tool(cls, name: str, raw_arguments: str) -> Step:
        return cls("tools", calls=[(name, raw_arguments)])

    @classmethod
    def answer(cls, text: str) -> Step:
        return cls("text", text=text)

    @classmethod
    def status(cls, code: int) -> Step:
        return cls("status", status_code=code)


class ScriptedModel:
    def __init__(self) -> None:
        self.script: deque[Step | Callable[[dict], Step]] = deque()
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def push(self, *steps: Step | Callable[[dict], Step]) -> None:
        self.script.extend(steps)

    def start(self) -> ScriptedModel:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def _next(self, request: Request) -> tuple[dict, Step]:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.paths.append(request.url.path)
            self.headers.append(dict(request.headers))
            step = self.script.popleft() if self.script else Step.answer("script exhausted")
        if callable(step):
            step = step(body)
        return body, step

    async def _openai(self, request: Request) -> JSONResponse:
        body, step = await self._next(request)
        if step.kind == "status":
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}}, step.status_code
            )
        n = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": step.text}
        if step.calls:
            message["tool_calls"] = [
                {"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                for i, (name, args) in enumerate(step.calls)
            ]
        return JSONResponse({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if step.calls else "stop"}],
            "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                      "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS},
        })  # fmt: skip

    async def _anthropic(self, request: Request) -> JSONResponse:
        body, step = await self._next(request)
        if step.kind == "status":
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "scripted failure"}},
                                step.status_code)  # fmt: skip
        n = next(self._ids)
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        for i, (name, args) in enumerate(step.calls):
            try:
                parsed = json.loads(args)
            except ValueError:
                parsed = args  # a broken tool_use: input is not an object (the SDK passes it through)
            content.append({"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": parsed})
        return JSONResponse({
            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": body["model"], "content": content,
            "stop_reason": "tool_use" if step.calls else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        })  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_env(model: ScriptedModel, kind: str = "openai", **extra: str) -> dict[str, str]:
    """SECURE_AGENT_AGENT__* variables pointing a server at the scripted model."""
    base = f"{model.base_url}/v1" if kind == "openai" else model.base_url
    providers = {
        "scripted": {"kind": kind, "base_url": base, "api_key": "sk-test-provider-secret", "backoff_s": 0.05}
    }
    return {
        "SECURE_AGENT_AGENT__PROVIDERS": json.dumps(providers),
        "SECURE_AGENT_AGENT__ROLES": json.dumps(
            {"default": {"provider": "scripted", "model": f"scripted-{kind}"}}
        ),
        **extra,
    }


async def run_agent(client, tool: str = "agent_run", **arguments) -> dict:
    """An agent tool's structured result (error results carry it too), through a real MCP tools/call."""
    message = await client.request("tools/call", {"name": tool, "arguments": arguments}, name=tool)
    assert "result" in message, message
    result = message["result"]
    assert "structuredContent" in result, result
    return result["structuredContent"]
