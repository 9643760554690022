"""The AgentProfile model: the one source of the operator-style config (ARCHITECTURE decision 5).

The same document is an AgentProfile custom resource on Kubernetes and a YAML file under
`config/profiles/` locally. Sections reuse the settings models instead of repeating their fields:
`spec.sandbox.limits` is `SandboxSettings` (command limits, validated into a SandboxPolicy),
`spec.policy` is the agent's `SupervisorPolicy` (allowed tools, exec policy), `spec.models.roles`
are `ModelAssignment`s, and the quotas mirror the defaults, bounds and descriptions of
`RateLimitSettings` / `AgentSettings`. Our own fields are camelCase (Kubernetes style); the reused
sections keep the snake_case names they have in the settings and environment variables.
"""

from __future__ import annotations

import copy
import ipaddress
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from ..agent.config import AgentSettings, ModelAssignment, SupervisorPolicy
from ..security.config import RateLimitSettings
from ..settings import SandboxSettings

GROUP = "secure-agent.dev"
VERSION = "v1alpha1"
KIND = "AgentProfile"
PLURAL = "agentprofiles"
SINGULAR = "agentprofile"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_PROFILE = "default"


def _mirror(model: type[BaseModel], name: str) -> Any:
    """A field with the default, bounds and description of `model.<name>` (the one source)."""
    source: FieldInfo = model.model_fields[name]
    return copy.deepcopy(source)


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Resources(_Spec):
    """Kubernetes requests/limits of the runner pod (quantities as Kubernetes writes them); a resource
    left out keeps the replica's `kubernetes` setting."""

    requests: dict[str, str] = Field(default_factory=dict, description="e.g. {cpu: 100m, memory: 256Mi}.")
    limits: dict[str, str] = Field(
        default_factory=dict, description="e.g. {cpu: '1', memory: 1Gi, ephemeral-storage: 2Gi}."
    )

    @field_validator("requests", "limits")
    @classmethod
    def _known_resources(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {"cpu", "memory", "ephemeral-storage"}
        if unknown:
            raise ValueError(f"unknown resource(s) {sorted(unknown)}; use cpu, memory, ephemeral-storage")
        return value


class EgressRule(_Spec):
    """One allowed destination of runner traffic (rendered into the runner NetworkPolicy)."""

    cidr: str = Field(description="Destination network, e.g. 10.0.0.0/8 or 2001:db8::/32.")
    ports: list[int] = Field(
        default_factory=list, description="Destination ports (1-65535); empty: every port of the network."
    )
    protocol: Literal["TCP", "UDP"] = Field("TCP", description="Transport protocol of the ports.")

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(f"not a CIDR network: {exc}") from None

    @field_validator("ports")
    @classmethod
    def _valid_ports(cls, value: list[int]) -> list[int]:
        bad = [port for port in value if not 1 <= port <= 65535]
        if bad:
            raise ValueError(f"ports out of range 1-65535: {bad}")
        return value


INHERIT = "unset: the replica's `kubernetes` setting"

# SandboxSpec field -> the KubernetesSettings field (settings.py) it overrides for this profile's pods.
KUBERNETES_OVERRIDES = {
    "image": "image",
    "runtime_class_name": "runtime_class_name",
    "seccomp": "seccomp",
    "seccomp_localhost_profile": "seccomp_localhost_profile",
    "pool_size": "warm_pool_size",
    "active_deadline_seconds": "active_deadline_s",
}
_RESOURCE_OVERRIDES = {
    ("requests", "cpu"): "cpu_request",
    ("requests", "memory"): "memory_request",
    ("limits", "cpu"): "cpu_limit",
    ("limits", "memory"): "memory_limit",
    ("limits", "ephemeral-storage"): "ephemeral_storage_limit",
}


class SandboxSpec(_Spec):
    """The runner pods of this profile. Pod fields left unset keep the replica's `kubernetes` settings
    (one source for defaults); `limits` are the command limits inside the sandbox (SandboxSettings)."""

    image: str | None = Field(None, min_length=1, description=f"agent-runner image; {INHERIT}.")
    resources: Resources = Field(default_factory=Resources)
    runtime_class_name: str | None = Field(
        None, min_length=1, description=f"RuntimeClass of the runner pods (e.g. gvisor, kata); {INHERIT}."
    )
    seccomp: Literal["Localhost", "RuntimeDefault"] | None = Field(
        None,
        description=f"Pod seccomp profile type (Localhost: the generated agent-runner profile); {INHERIT}.",
    )
    seccomp_localhost_profile: str | None = Field(
        None, min_length=1, description=f"Path of the Localhost profile on the node; {INHERIT}."
    )
    egress: list[EgressRule] = Field(
        default_factory=list, description="Allowed egress of runner pods; empty: all egress denied."
    )
    pool_size: int | None = Field(
        None, ge=0, le=1000, description=f"Idle pre-started runner pods kept for this profile; {INHERIT}."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=60, description=f"Hard lifetime of one runner pod (activeDeadlineSeconds); {INHERIT}."
    )
    limits: SandboxSettings = Field(
        default_factory=SandboxSettings, description="Command limits inside the sandbox (SandboxSettings)."
    )

    def kubernetes_overrides(self) -> dict[str, Any]:
        """The fields this profile sets, named as in KubernetesSettings:
        `settings.kubernetes.model_copy(update=spec.sandbox.kubernetes_overrides())`."""
        out = {
            target: getattr(self, name)
            for name, target in KUBERNETES_OVERRIDES.items()
            if getattr(self, name) is not None
        }
        for (section, resource), target in _RESOURCE_OVERRIDES.items():
            value = getattr(self.resources, section).get(resource)
            if value is not None:
                out[target] = value
        return out


class ModelsSpec(_Spec):
    roles: dict[str, ModelAssignment] = Field(
        default_factory=dict,
        description='Role -> provider/model/params (providers and their keys stay in settings); "default" '
        "is used when no other role matches.",
    )
    clients: dict[str, str] = _mirror(AgentSettings, "clients")


class Quotas(_Spec):
    max_runners: int = _mirror(RateLimitSettings, "max_runners_per_tenant")
    max_inflight_tool_calls: int = _mirror(RateLimitSettings, "max_inflight_tool_calls_per_tenant")
    agent_max_steps: int = _mirror(AgentSettings, "max_steps")
    agent_max_tokens: int = _mirror(AgentSettings, "max_tokens")
    agent_timeout_s: float = _mirror(AgentSettings, "timeout_s")


class AgentProfileSpec(_Spec):
    """What one group of tenants gets: sandbox, tools, exec policy, model roles and quotas."""

    tenants: list[str] = Field(
        default_factory=list,
        description="Tenants this profile applies to; the profile named 'default' covers everyone else.",
    )
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    allowed_tools: list[str] = Field(
        default_factory=lambda: ["*"],
        description="MCP tools (fnmatch patterns) the tenant may call; ['*']: every tool its scopes allow.",
    )
    policy: SupervisorPolicy = Field(
        default_factory=SupervisorPolicy,
        description="The agent's supervisor policy: allowed tools, paths and the exec (command) policy.",
    )
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    quotas: Quotas = Field(default_factory=Quotas)


class Condition(_Spec):
    type: str = Field(description="Ready or Invalid.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = Field(None, ge=0)


class AgentProfileStatus(_Spec):
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation last processed.")
    applied_generation: int | None = Field(
        None, ge=0, description="metadata.generation of the spec in force (the last good one)."
    )
    conditions: list[Condition] = Field(default_factory=list)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(None, alias="resourceVersion")


class AgentProfile(BaseModel):
    """A whole AgentProfile document (custom resource or local YAML file)."""

    model_config = ConfigDict(populate_by_name=True)
    api_version: Literal["secure-agent.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["AgentProfile"] = KIND
    metadata: ObjectMeta
    spec: AgentProfileSpec = Field(default_factory=AgentProfileSpec)
    status: AgentProfileStatus | None = None


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_validation_error(exc: Exception, prefix: str = "spec") -> str:
    """One line per problem, `spec.sandbox.limits.timeout_s: Input should be greater than 0`."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for error in errors():
        where = ".".join(str(part) for part in (prefix, *error.get("loc", ())))
        lines.append(f"{where}: {error.get('msg')}")
    return "; ".join(lines)
