"""Model providers: OpenAI-compatible Chat Completions and Anthropic Messages, behind one interface."""

from __future__ import annotations

from ..config import ProviderSettings
from .base import ModelProvider, ModelReply, ProviderError, ToolCall, ToolSpec


def preload(kinds: set[str]) -> None:
    """Import the SDKs of these provider kinds now. They take 0.5-1.5 s to import; imported lazily by
    the first agent_run, that time would block the event loop and every request in flight with it."""
    if "openai" in kinds:
        from . import openai  # noqa: F401
    if "anthropic" in kinds:
        from . import anthropic  # noqa: F401


def build_provider(name: str, settings: ProviderSettings) -> ModelProvider:
    if settings.kind == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(name, settings)
    from .anthropic import AnthropicProvider

    return AnthropicProvider(name, settings)


__all__ = ["ModelProvider", "ModelReply", "ProviderError", "ToolCall", "ToolSpec", "build_provider", "preload"]
