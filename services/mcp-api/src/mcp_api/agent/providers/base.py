"""The provider interface, the neutral message format, and bounded retries with backoff.

Neutral messages (what the store keeps):
  {"role": "user", "content": str}
  {"role": "assistant", "content": str | None, "tool_calls": [{"id", "name", "arguments": raw JSON str}]}
  {"role": "tool", "tool_call_id": str, "name": str, "content": str, "is_error": bool, "decision": str}
  {"role": "user", "content": str, "note": "compaction"}  (synthesized, never stored)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...observability.metrics import record_model_call
from ...observability.tracing import model_call_span
from ..config import ProviderSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model sent it (may be malformed)


@dataclass
class ModelReply:
    text: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None


class ProviderError(Exception):
    """A model call that failed for good (after retries); `reason` is a metrics label."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


class ModelProvider:
    kind = "base"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings

    async def complete(
        self, *, model: str, system: str, messages: list[dict], tools: list[ToolSpec], params: dict[str, Any]
    ) -> ModelReply:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    def classify(self, exc: BaseException) -> tuple[str, bool]:
        """(metrics reason, retryable) for an SDK exception."""
        raise NotImplementedError

    async def with_retries(
        self, model: str, call: Callable[[dict[str, str]], Awaitable[ModelReply]]
    ) -> ModelReply:
        """Call with bounded retries and exponential backoff on 429, 5xx, timeouts and connection errors."""
        attempts = self.settings.max_retries + 1
        delay = self.settings.backoff_s
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                with model_call_span(self.kind, model) as headers:
                    reply = await call(headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the SDKs raise their own hierarchies; classify decides
                reason, retryable = self.classify(exc)
                record_model_call(self.kind, model, time.perf_counter() - started, error=reason)
                if not retryable or attempt == attempts:
                    tried = f" after {attempt} attempts" if attempt > 1 else ""
                    raise ProviderError(
                        f"model provider '{self.name}' ({self.kind}, model {model}) failed{tried}: "
                        f"{reason}: {_short(exc)}",
                        reason,
                    ) from exc
                log.warning(
                    "model call failed (%s), retry %d/%d in %.1fs", reason, attempt, attempts - 1, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            record_model_call(
                self.kind, model, time.perf_counter() - started,
                input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            )  # fmt: skip
            return reply
        raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def status_reason(status: int | None, *, timeout: bool = False, connection: bool = False) -> tuple[str, bool]:
    if timeout:
        return "timeout", True
    if connection:
        return "connection", True
    if status == 429:
        return "rate_limited", True
    if status in (401, 403):
        return "auth", False
    if status is not None and status >= 500:
        return "server", True
    if status == 408:
        return "timeout", True
    return "other", False
