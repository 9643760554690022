"""Settings of the SecureAgent (`SECURE_AGENT_AGENT__*`): providers, role assignment, budgets, policy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

WORKSPACE_TOOLS = (
    "read_file", "write_file", "edit_file", "list_directory", "directory_tree", "find_files", "grep",
    "file_info", "create_directory", "move_file", "delete_file", "run_command",
)  # fmt: skip


class ProviderSettings(BaseModel):
    kind: Literal["openai", "anthropic"] = Field(
        description="'openai': any OpenAI-compatible Chat Completions API (OpenAI, vLLM, Ollama, LiteLLM); "
        "'anthropic': the Anthropic Messages API."
    )
    base_url: str | None = Field(None, description="API base URL; default: the vendor's public endpoint.")
    api_key: SecretStr | None = Field(None, description="API key; stays in mcp-api, never reaches a runner.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one model call.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries on 429, 5xx, connection errors, timeouts.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry (capped at 30s).")


class ModelAssignment(BaseModel):
    provider: str = Field(description="Key of `providers`.")
    model: str = Field(description="Model name sent to the provider.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Extra request parameters (temperature, max_tokens, ...)."
    )
    context_tokens: int = Field(
        32_000, ge=1_000, description="Context window; history is compacted to fit ~75% of it."
    )


class SupervisorPolicy(BaseModel):
    """What the agent may do; checked for every tool call the model proposes."""

    allowed_tools: list[str] = Field(
        default_factory=lambda: list(WORKSPACE_TOOLS), description="Tools the agent may call at all."
    )
    ask_tools: list[str] = Field(default_factory=list, description="Tools that need a human approval.")
    allowed_paths: list[str] = Field(default_factory=lambda: ["**"], description="Glob patterns (fnmatch).")
    denied_paths: list[str] = Field(
        default_factory=lambda: ["**/.env", ".env", "**/*.pem", "*.pem", ".git/**"],
        description="Glob patterns the agent may not touch.",
    )
    command_allow: list[str] = Field(
        default_factory=list, description="Regexes; when non-empty a command must match one."
    )
    command_deny: list[str] = Field(
        default_factory=lambda: [
            r"\b(curl|wget|nc|ncat|netcat|ssh|scp|sftp|ftp|telnet|socat)\b",
            r"(https?|ftp)://",
            r"/dev/tcp/",
            r"\bsudo\b",
        ],
        description="Regexes that refuse a command.",
    )
    command_ask: list[str] = Field(default_factory=list, description="Regexes that need a human approval.")
    max_write_bytes: int = Field(1024 * 1024, ge=1, description="Largest write_file content.")
    max_command_timeout_s: float = Field(300.0, gt=0, description="Longest command the agent may start.")


class AgentSettings(BaseModel):
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict,
        description='Named model providers, e.g. {"oai": {"kind": "openai", "api_key": "..."}}.',
    )
    roles: dict[str, ModelAssignment] = Field(
        default_factory=dict,
        description='Role -> provider/model/params; "default" is used when no other role matches.',
    )
    clients: dict[str, str] = Field(
        default_factory=dict,
        description='MCP client name (clientInfo.name) -> role, e.g. {"claude-code": "coder"}.',
    )
    max_steps: int = Field(20, ge=1, le=500, description="Default and maximum model turns per agent_run.")
    max_tokens: int = Field(200_000, ge=100, description="Token budget (input + output) per agent_run.")
    timeout_s: float = Field(600.0, gt=0, description="Default and maximum wall time of one agent_run.")
    max_tool_result_chars: int = Field(
        8000, ge=200, description="Tool results longer than this are cut before they reach the model."
    )
    policy: SupervisorPolicy = Field(default_factory=SupervisorPolicy)
    tenant_policies: dict[str, SupervisorPolicy] = Field(
        default_factory=dict, description="Per-tenant policy replacing `policy`."
    )
    approval_ttl_s: float = Field(86_400.0, gt=0, description="How long an approval token stays valid.")

    def policy_for(self, tenant: str) -> SupervisorPolicy:
        return self.tenant_policies.get(tenant, self.policy)
