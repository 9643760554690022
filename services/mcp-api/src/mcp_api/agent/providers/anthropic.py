"""Anthropic Messages API through the official `anthropic` SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from ..config import ProviderSettings
from .base import ModelProvider, ModelReply, ToolCall, ToolSpec, status_reason

DEFAULT_MAX_TOKENS = 4096


class AnthropicProvider(ModelProvider):
    kind = "anthropic"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        key = settings.api_key.get_secret_value() if settings.api_key else "unused"
        self.client = anthropic.AsyncAnthropic(
            api_key=key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=0
        )

    async def aclose(self) -> None:
        await self.client.close()

    def classify(self, exc: BaseException) -> tuple[str, bool]:
        if isinstance(exc, anthropic.APITimeoutError):
            return status_reason(None, timeout=True)
        if isinstance(exc, anthropic.APIConnectionError):
            return status_reason(None, connection=True)
        if isinstance(exc, anthropic.APIStatusError):
            if exc.status_code == 529:  # overloaded
                return "server", True
            return status_reason(exc.status_code)
        return "other", False

    async def complete(
        self, *, model: str, system: str, messages: list[dict], tools: list[ToolSpec], params: dict[str, Any]
    ) -> ModelReply:
        wire = _to_wire(messages)
        specs = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]
        params = dict(params)
        max_tokens = params.pop("max_tokens", DEFAULT_MAX_TOKENS)

        async def call(headers: dict[str, str]) -> ModelReply:
            extra = {"tools": specs} if specs else {}
            response = await self.client.messages.create(
                model=model, system=system, messages=wire, max_tokens=max_tokens,
                extra_headers=headers or None, **extra, **params,
            )  # fmt: skip
            texts, calls = [], []
            for block in response.content:
                if block.type == "text":
                    texts.append(block.text)
                elif block.type == "tool_use":
                    raw = block.input if isinstance(block.input, str) else json.dumps(block.input)
                    calls.append(ToolCall(id=block.id, name=block.name, arguments=raw))
            return ModelReply(
                text="\n".join(texts) or None,
                tool_calls=calls,
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                stop_reason=response.stop_reason,
            )

        return await self.with_retries(model, call)


def _to_wire(messages: list[dict]) -> list[dict]:
    """Neutral messages -> Messages API turns: tool results become user turns with tool_result blocks,
    and consecutive same-role turns are merged (the API wants strict alternation)."""
    out: list[dict] = []
    for message in messages:
        role = message["role"]
        if role == "assistant":
            blocks: list[dict] = []
            if message.get("content"):
                blocks.append({"type": "text", "text": message["content"]})
            for call in message.get("tool_calls") or []:
                try:
                    args = json.loads(call["arguments"]) if call["arguments"] else {}
                except ValueError:
                    args = {}
                if not isinstance(args, dict):
                    args = {}
                blocks.append({"type": "tool_use", "id": call["id"], "name": call["name"], "input": args})
            if not blocks:
                blocks.append({"type": "text", "text": "(no output)"})
            turn = {"role": "assistant", "content": blocks}
        elif role == "tool":
            turn = {
                "role": "user",
                "content": [{
                    "type": "tool_result", "tool_use_id": message["tool_call_id"],
                    "content": message["content"], "is_error": bool(message.get("is_error")),
                }],
            }  # fmt: skip
        else:
            turn = {"role": "user", "content": [{"type": "text", "text": message["content"]}]}
        if out and out[-1]["role"] == turn["role"]:
            out[-1]["content"].extend(turn["content"])
        else:
            out.append(turn)
    return out
