"""OpenAI-compatible Chat Completions (OpenAI, vLLM, Ollama, LiteLLM) through the official `openai` SDK."""

from __future__ import annotations

import json
from typing import Any

import openai

from ..config import ProviderSettings
from .base import ModelProvider, ModelReply, ToolCall, ToolSpec, status_reason


class OpenAIProvider(ModelProvider):
    kind = "openai"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        key = settings.api_key.get_secret_value() if settings.api_key else "unused"  # local servers need none
        # Retries are ours (bounded, counted, logged), so the SDK's own are off.
        self.client = openai.AsyncOpenAI(
            api_key=key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=0
        )

    async def aclose(self) -> None:
        await self.client.close()

    def classify(self, exc: BaseException) -> tuple[str, bool]:
        if isinstance(exc, openai.APITimeoutError):
            return status_reason(None, timeout=True)
        if isinstance(exc, openai.APIConnectionError):
            return status_reason(None, connection=True)
        if isinstance(exc, openai.APIStatusError):
            return status_reason(exc.status_code)
        return "other", False

    async def complete(
        self, *, model: str, system: str, messages: list[dict], tools: list[ToolSpec], params: dict[str, Any]
    ) -> ModelReply:
        wire = [{"role": "system", "content": system}, *(_to_wire(m) for m in messages)]
        specs = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in tools
        ]

        async def call(headers: dict[str, str]) -> ModelReply:
            extra = {"tools": specs} if specs else {}
            response = await self.client.chat.completions.create(
                model=model, messages=wire, extra_headers=headers or None, **extra, **params
            )
            choice = response.choices[0]
            calls = [
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
                for c in (choice.message.tool_calls or [])
                if getattr(c, "function", None) is not None
            ]
            usage = response.usage
            return ModelReply(
                text=choice.message.content,
                tool_calls=calls,
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
                stop_reason=choice.finish_reason,
            )

        return await self.with_retries(model, call)


def _to_wire(message: dict) -> dict:
    role = message["role"]
    if role == "assistant":
        wire: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            wire["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in message["tool_calls"]
            ]
        return wire
    if role == "tool":
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]}
    return {"role": "user", "content": message["content"]}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
