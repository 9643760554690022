"""An instant, stateless scripted model for load tests: OpenAI Chat Completions (`POST
/v1/chat/completions`), answering in well under a millisecond, so what a benchmark measures is the
agent loop and the tools, not a model.

The script is read from the first user message, so any number of concurrent agent runs can share
one server: `steps=N tool=read_file path=bench/file4k.txt` makes the model call the tool N times
(one call per turn), then answer "done". Without `steps=`, it answers at once. Other tools:
`tool=write_file` (writes `path` with a short content), `tool=run_command` (runs `true`).

    uvicorn instant_model:app --app-dir bench/servers --port 8199
"""

from __future__ import annotations

import itertools
import json
import re
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_ids = itertools.count(1)
_SCRIPT = re.compile(r"(\w+)=(\S+)")


def _script(messages: list[dict]) -> dict[str, str]:
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return dict(_SCRIPT.findall(content or ""))
    return {}


def _arguments(tool: str, path: str, n: int) -> dict:
    if tool == "write_file":
        return {"path": path, "content": f"written by step {n}\n"}
    if tool == "run_command":
        return {"command": ["true"]}
    return {"path": path}


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    messages = body.get("messages", [])
    script = _script(messages)
    done = sum(1 for m in messages if m.get("role") == "tool")
    steps = int(script.get("steps", "0"))
    n = next(_ids)
    message: dict = {"role": "assistant", "content": None}
    if done < steps:
        tool = script.get("tool", "read_file")
        arguments = _arguments(tool, script.get("path", "bench/file4k.txt"), done)
        message["tool_calls"] = [
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": tool, "arguments": json.dumps(arguments)},
            }
        ]
        finish = "tool_calls"
    else:
        message["content"] = "done"
        finish = "stop"
    return JSONResponse({
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "instant"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    })  # fmt: skip


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
