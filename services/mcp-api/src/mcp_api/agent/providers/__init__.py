"""Model providers: OpenAI-compatible Chat Completions and Anthropic Messages, behind one interface."""

from __future__ import annotations

from ..config import ProviderSettings
from .base import ModelProvider, ModelReply, ProviderError, ToolCall, ToolSpec


def build_provider(name: str, settings: ProviderSettings) -> ModelProvider:
    if settings.kind == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(name, settings)
    from .anthropic import AnthropicProvider

    return AnthropicProvider(name, settings)


__all__ = ["ModelProvider", "ModelReply", "ProviderError", "ToolCall", "ToolSpec", "build_provider"]
