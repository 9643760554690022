"""The one settings model of mcp-api, read once at start and injected everywhere.

Every field can be set from the environment with the `SECURE_AGENT_` prefix; nested models use
`__` (e.g. `SECURE_AGENT_RUNNER__IDLE_TIMEOUT_S=600`). Lists are JSON (`'["a:*","b"]'`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from agent_runner.sandbox.policy import SandboxPolicy
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .agent.config import AgentSettings
from .security.config import (
    OAuthSettings,
    PrivacySettings,
    RateLimitSettings,
    RequestLimitSettings,
    RetentionSettings,
)

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class RunnerSettings(BaseModel):
    backend: Literal["local", "kubernetes"] = Field(
        "local", description="Where workspace runners live: child processes here, or pods (see `kubernetes`)."
    )
    idle_timeout_s: float = Field(900.0, gt=0, description="Stop a workspace runner after this idle time.")
    start_timeout_s: float = Field(15.0, gt=0, description="How long to wait for a new runner to answer.")
    request_timeout_s: float = Field(60.0, gt=0, description="Timeout of one runner API call.")
    max_runners: int = Field(64, ge=1, description="Runner processes alive at once, all tenants together.")
    hot_read_cache_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description=(
            "Local backend: bytes of read_file answers mcp-api keeps, all workspaces together, to answer "
            "reads of provably unchanged files without the runner hop (mcp-api looks the path up, metadata "
            "only, and never opens a workspace file; see mcp_api.runners.hot_reads); 0 turns it off."
        ),
    )


class KubernetesSettings(BaseModel):
    """Runner pods, used when `runner.backend` is `kubernetes` (see mcp_api.runners.kubernetes)."""

    namespace: str = Field(
        "secure-agent-runners", description="Namespace of the runner pods and their Secrets."
    )
    in_cluster: bool = Field(True, description="Use the pod's service account; false reads kubeconfig.")
    api_url: str | None = Field(
        None, description="Kubernetes API URL overriding in-cluster/kubeconfig discovery."
    )
    image: str = Field("secure-agent/agent-runner:latest", description="The agent-runner image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of the runner pods."
    )
    port: int = Field(8700, ge=1024, le=65535, description="Port the runner listens on inside the pod.")
    seccomp: Literal["Localhost", "RuntimeDefault"] = Field(
        "Localhost", description="Localhost uses profiles/agent-runner.json installed on every node."
    )
    seccomp_localhost_profile: str = Field(
        "profiles/agent-runner.json",
        description="Localhost seccomp profile path, relative to the kubelet's seccomp dir (/var/lib/kubelet/seccomp).",
    )
    runtime_class_name: str | None = Field(None, description="e.g. gvisor or kata; none uses the default.")
    service_account_name: str | None = Field(
        None,
        description="ServiceAccount of the runner pods (its token is never mounted); none: the namespace's default.",
    )
    cpu_request: str = Field("100m", description="CPU request of a runner pod.")
    cpu_limit: str = Field("1", description="CPU limit of a runner pod.")
    memory_request: str = Field("256Mi", description="Memory request of a runner pod.")
    memory_limit: str = Field("1Gi", description="Memory limit of a runner pod.")
    ephemeral_storage_limit: str = Field("2Gi", description="Ephemeral-storage limit of a runner pod.")
    workspace_size_limit: str = Field("1Gi", description="sizeLimit of the emptyDir workspace.")
    workspace_pvc: str | None = Field(
        None, description="Use this PVC (persistent workspaces) instead of emptyDir."
    )
    tmp_size_limit: str = Field("64Mi", description="sizeLimit of the memory-backed /tmp.")
    active_deadline_s: int = Field(86400, ge=60, description="A runner pod lives at most this long.")
    owner_api_version: str | None = Field(
        None, description="Owner of runner pods (the release's Deployment)."
    )
    owner_kind: str | None = Field(None, description="Kind of the owner of runner pods (see owner_api_version).")
    owner_name: str | None = Field(None, description="Name of the owner of runner pods (see owner_api_version).")
    owner_uid: str | None = Field(None, description="UID of the owner of runner pods (see owner_api_version).")
    warm_pool_size: int = Field(2, ge=0, description="Idle pre-started pods kept per profile.")
    profile: str = Field("default", description="Profile name of the pods this replica starts and claims.")
    ready_timeout_s: float = Field(120.0, gt=0, description="How long a new pod may take to become ready.")
    api_timeout_s: float = Field(10.0, gt=0, description="Timeout of one Kubernetes API call.")
    api_retries: int = Field(4, ge=0, description="Retries of a safe API call after 429, 5xx or a timeout.")
    refill_interval_s: float = Field(5.0, gt=0, description="How often the warm pool is topped up.")
    reconcile_interval_s: float = Field(
        60.0, gt=0, description="How often runner pods are reconciled with the store (orphans removed)."
    )
    workspace_noexec_mount: bool = Field(
        False,
        description="Mount the workspace with volumeMounts[].bindMountOptions noexec (alpha in Kubernetes "
        "1.37, needs its feature gate; older API servers drop the field or reject the pod). Off: noexec "
        "rests on the runner's Landlock EXECUTE right, as /diagnostics says.",
    )


class ProfileSettings(BaseModel):
    """Where AgentProfiles come from (mcp_api.profiles): YAML files locally, custom resources on Kubernetes."""

    directory: Path | None = Field(
        Path("config/profiles"),
        description="Local AgentProfile YAML files (*.yaml), re-read when they change; null: none. With "
        "`runner.backend=kubernetes` the namespace's AgentProfile custom resources are used instead.",
    )
    poll_interval_s: float = Field(2.0, gt=0, description="How often the profile directory is checked.")
    namespace: str | None = Field(
        None,
        description="Namespace whose AgentProfile resources are watched (kubernetes backend); default: "
        "this pod's namespace, else `kubernetes.namespace`.",
    )


def _policy_field(name: str):
    """A settings field that mirrors SandboxPolicy's default and description (the one source)."""
    source = SandboxPolicy.model_fields[name]
    return Field(source.default, description=source.description)


class SandboxSettings(BaseModel):
    """What an operator tunes about command execution; the runner turns it into a SandboxPolicy
    (agent_runner.sandbox.policy), which validates it and fills in every other control."""

    allow_network: bool = _policy_field("allow_network")
    timeout_s: float = _policy_field("timeout_s")
    max_timeout_s: float = _policy_field("max_timeout_s")
    cpu_seconds: int = _policy_field("cpu_seconds")
    memory_bytes: int = _policy_field("memory_bytes")
    file_size_bytes: int = _policy_field("file_size_bytes")
    max_open_files: int = _policy_field("max_open_files")
    max_processes: int = _policy_field("max_processes")
    max_output_bytes: int = _policy_field("max_output_bytes")
    use_namespaces: bool | Literal["auto"] = _policy_field("use_namespaces")
    use_cgroups: bool | Literal["auto"] = _policy_field("use_cgroups")
    allow_unconfined: bool = _policy_field("allow_unconfined")

    @model_validator(mode="after")
    def _valid_policy(self) -> SandboxSettings:
        # Fail at start-up, naming the setting, rather than when the first runner refuses it.
        with tempfile.TemporaryDirectory() as probe:
            SandboxPolicy(workspace=Path(probe), tmp_dir=Path(probe) / "tmp", **self.model_dump())
        return self


class LoggingSettings(BaseModel):
    format: Literal["json", "text"] = Field(
        "json", description="Log line format: one JSON object per line (default), or text for a terminal."
    )
    file: Path | None = Field(
        None, description="Also write logs to this file (plain hosts); containers log to stdout only."
    )
    file_max_bytes: int = Field(
        50 * 1024 * 1024,
        ge=0,
        description="Rotate the log file at this size, keeping file_backups old files; 0 leaves rotation "
        "to an external logrotate (use 0 with several gunicorn workers).",
    )
    file_backups: int = Field(5, ge=0, description="Rotated log files to keep.")
    tenant_hash_key: SecretStr | None = Field(
        None,
        description="HMAC key for the tenant hashes in logs and traces; set a random secret in production "
        "so hashes cannot be reversed by guessing tenant names. Same value on every replica.",
    )
    access_log: bool = Field(
        True, description="One line per HTTP request (probes and /metrics at DEBUG)."
    )


class TracingSettings(BaseModel):
    enabled: bool = Field(
        True,
        description="Make trace and span ids (for log lines and runner propagation). Spans are exported "
        "only when an OTLP endpoint is set.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318) or full /v1/traces URL. "
        "Unset: the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else no export.",
    )
    otlp_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers for the collector (e.g. an auth token); never logged."
    )
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Fraction of new traces sampled; a caller's sampling decision wins."
    )
    propagate_to_runner: bool = Field(
        True, description="Give local runners the collector endpoint so their spans join the same traces."
    )


class MetricsSettings(BaseModel):
    probe_interval_s: float = Field(
        15.0, gt=0, description="How often readiness (store, runner backend) is re-checked for the metrics."
    )
    tls_cert_files: list[Path] = Field(
        default_factory=list,
        description="PEM certificates in use (e.g. the mounted ingress TLS secret): their expiry is exported "
        "as secure_agent_tls_certificate_expiry_timestamp_seconds for the certificate-expiry alert.",
    )


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
    request_state_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys (each >= 32 bytes, JSON list) sealing the requestState of multi-round-trip "
        "(input-required) results; the first seals, all unseal (rotation). Give every replica the same "
        "list (a Secret) so a retry may land on any of them. Empty: a random key per process.",
    )
    dev_tenant: str = Field("dev", description="Tenant that owns the dev API key created at first start.")
    fast_lane: bool = Field(
        True,
        description="Serve plain tools/call requests (JSON Accept, no notifications) without the SDK's "
        "per-request transport machinery (mcp/fastlane.py); same validation, same answers. false: every "
        "request goes through the SDK's Streamable HTTP entry.",
    )
    gc_freeze: bool = Field(
        True,
        description="Move the objects that exist after start-up out of the garbage collector's reach "
        "(gc.freeze): full collections then take ~2 ms instead of ~125 ms. false: the interpreter default.",
    )
    api_key_cache_ttl_s: float = Field(
        0.0,
        ge=0,
        le=30,
        description="Opt-in: how long a verified API key is trusted without asking the store again. A "
        "revoked or erased key is then refused at once by the process that revoked it but only within "
        "this many seconds by every other process and replica. 0 (default): every request is checked "
        "against the store (concurrent checks of one key share one lookup), so revocation is immediate "
        "everywhere.",
    )
    api_key_cache_exact: bool = Field(
        True,
        description="SQLite store only: serve a verified API key from memory while SQLite's data_version "
        "shows that nothing at all was committed to the database since the key was looked up, so "
        "revocation stays immediate everywhere; any commit makes the next check ask the store. false: "
        "every request asks the store (or the api_key_cache_ttl_s cache). Other stores: no effect.",
    )
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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of mcp-api and of the local runners it starts."
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Extra modules (file paths or module names) with register(ctx). Empty in production.",
    )
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    redis_url: SecretStr | None = Field(
        None, description="Redis URL (redis://host:6379/0): rate limits shared by every process and replica."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy IPs/CIDRs whose X-Forwarded-For/-Proto are believed (JSON list); none by default.",
    )
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    limits: RequestLimitSettings = Field(default_factory=RequestLimitSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)

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
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else self.host  # noqa: S104  # nosec B104 - compares the configured host, binds nothing
        return f"http://{host}:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{(self.public_url or self.local_url).rstrip('/')}/mcp"


SECRET_FIELDS = frozenset({"dev_api_key", "database_url", "request_state_keys"})


def redacted(settings: Settings) -> dict:
    """Settings as JSON-able data with secrets replaced, for /diagnostics."""
    data = settings.model_dump(mode="json")
    for name in SECRET_FIELDS:
        if data.get(name):
            data[name] = "**redacted**"
    return data
