"""The one settings model of mcp-api, read once at start and injected everywhere.

Every field can be set from the environment with the `SECURE_AGENT_` prefix; nested models use
`__` (e.g. `SECURE_AGENT_RUNNER__IDLE_TIMEOUT_S=600`). Lists are JSON (`'["a:*","b"]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class RunnerSettings(BaseModel):
    backend: Literal["local"] = Field("local", description="Where workspace runners live.")
    idle_timeout_s: float = Field(900.0, gt=0, description="Stop a workspace runner after this idle time.")
    start_timeout_s: float = Field(15.0, gt=0, description="How long to wait for a new runner to answer.")
    request_timeout_s: float = Field(60.0, gt=0, description="Timeout of one runner API call.")
    max_runners: int = Field(64, ge=1, description="Runner processes alive at once, all tenants together.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SECURE_AGENT_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    host: str = Field("127.0.0.1", description="Listen address. Keep loopback unless behind a proxy.")
    port: int = Field(8080, ge=1, le=65535, description="Listen port.")
    data_dir: Path = Field(Path(".data"), description="Store, workspaces and runner sockets live here.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default: SQLite file under data_dir."
    )
    dev_api_key: SecretStr | None = Field(
        None, description="Fix the dev tenant's API key (scripts, CI). Only its hash is stored."
    )
    dev_tenant: str = Field("dev", description="Tenant that owns the dev API key created at first start.")
    public_url: str | None = Field(
        None, description="External base URL (e.g. https://mcp.example.com) shown in configs and metadata."
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: list(LOCAL_HOSTS),
        description="Host header allowlist; 'name:*' allows any port. Other hosts get 421.",
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: list(LOCAL_ORIGINS),
        description="Origin header allowlist for browser clients; 'scheme://name:*' allows any port.",
    )
    legacy_sessions: Literal["stateless", "stateful"] = Field(
        "stateless",
        description=(
            "Legacy (initialize-based) clients: 'stateless' lets any worker or replica answer any request; "
            "'stateful' keeps sessions in this process so the server can send sampling and elicitation "
            "requests back to legacy clients (one worker, or sticky routing on Mcp-Session-Id)."
        ),
    )
    max_request_bytes: int = Field(
        4 * 1024 * 1024 * 2, ge=1024, description="Largest accepted MCP POST body."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    plugins: list[str] = Field(
        default_factory=list,
        description="Extra modules (file paths or module names) with register(ctx). Empty in production.",
    )
    runner: RunnerSettings = Field(default_factory=RunnerSettings)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Runner sockets and workspace paths are handed to child processes: make them cwd-proof.
        return value.expanduser().resolve()

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'secure-agent.db'}"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def local_url(self) -> str:
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{(self.public_url or self.local_url).rstrip('/')}/mcp"


SECRET_FIELDS = frozenset({"dev_api_key", "database_url"})


def redacted(settings: Settings) -> dict:
    """Settings as JSON-able data with secrets replaced, for /diagnostics."""
    data = settings.model_dump(mode="json")
    for name in SECRET_FIELDS:
        if data.get(name):
            data[name] = "**redacted**"
    return data
