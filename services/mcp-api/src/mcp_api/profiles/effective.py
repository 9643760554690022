"""What one tenant's AgentProfile means for this replica: the spec laid over the replica's settings.

A profile states only what differs from the replica: a field the document leaves out keeps the
setting (`SECURE_AGENT_SANDBOX__*`, `SECURE_AGENT_KUBERNETES__*`, `SECURE_AGENT_AGENT__*`), the same
rule `SandboxSpec.kubernetes_overrides()` follows for pod fields. "Leaves out" is pydantic's
`model_fields_set`: a default the document did not write is not an override.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .model import AgentProfileSpec, format_validation_error
from .registry import SpecRejected

if TYPE_CHECKING:
    from ..agent.config import AgentSettings
    from ..settings import KubernetesSettings, SandboxSettings, Settings

# Quotas field -> the AgentSettings field it sets for the tenant's agent runs.
AGENT_QUOTAS = {
    "agent_max_steps": "max_steps",
    "agent_max_tokens": "max_tokens",
    "agent_timeout_s": "timeout_s",
}
BUILT_IN = "<built-in>"


def sandbox_limits(base: SandboxSettings, spec: AgentProfileSpec) -> SandboxSettings:
    """The replica's command limits with the fields the profile writes under spec.sandbox.limits."""
    if "limits" not in spec.sandbox.model_fields_set:
        return base
    limits = spec.sandbox.limits
    written = {name: getattr(limits, name) for name in limits.model_fields_set}
    if not written:
        return base
    try:
        # Validated again as a whole: timeout_s may only fit under the replica's max_timeout_s.
        return type(base).model_validate({**base.model_dump(), **written})
    except ValidationError as exc:
        raise SpecRejected(format_validation_error(exc, "spec.sandbox.limits")) from None


def agent_settings(base: AgentSettings, spec: AgentProfileSpec, tenant: str) -> AgentSettings:
    """The replica's agent settings with the profile's roles, client mapping, budgets and policy.
    Providers (and their keys) stay settings-only: a profile names a provider, never defines one."""
    update: dict = {}
    if spec.models.roles:
        update["roles"] = {**base.roles, **spec.models.roles}
    if spec.models.clients:
        update["clients"] = {**base.clients, **spec.models.clients}
    if "quotas" in spec.model_fields_set:
        for field, target in AGENT_QUOTAS.items():
            if field in spec.quotas.model_fields_set:
                update[target] = getattr(spec.quotas, field)
    if "policy" in spec.model_fields_set:
        # The profile's policy is the tenant's policy (it replaces a settings tenant_policies entry).
        update["policy"] = spec.policy
        update["tenant_policies"] = {}
    elif tenant in base.tenant_policies:
        update["policy"] = base.tenant_policies[tenant]
    return base.model_copy(update=update) if update else base


@dataclass(frozen=True)
class TenantProfile:
    """The profile in force for one tenant, resolved against this replica's settings."""

    name: str
    generation: int | None
    spec: AgentProfileSpec
    sandbox: SandboxSettings
    agent: AgentSettings
    kubernetes: KubernetesSettings
    max_runners: int | None  # workspace runners the tenant may hold at once; None: no cap
    # Tool calls of the tenant in flight at once in one process (security/rate_limit.py); 0: no cap.
    max_inflight_tool_calls: int = 0

    @property
    def pod_profile(self) -> str:
        """The value of the runner pods' profile label (label-safe even for the built-in profile)."""
        return self.kubernetes.profile if self.name == BUILT_IN else self.name

    @property
    def pool_size(self) -> int:
        return self.kubernetes.warm_pool_size

    def allows_tool(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.spec.allowed_tools)


def resolve(
    settings: Settings, name: str, generation: int | None, spec: AgentProfileSpec, tenant: str
) -> TenantProfile:
    return TenantProfile(
        name=name,
        generation=generation,
        spec=spec,
        sandbox=sandbox_limits(settings.sandbox, spec),
        agent=agent_settings(settings.agent, spec, tenant),
        kubernetes=settings.kubernetes.model_copy(update=spec.sandbox.kubernetes_overrides()),
        max_runners=max_runners(settings.rate_limits.max_runners_per_tenant, spec),
        max_inflight_tool_calls=max_inflight_tool_calls(
            settings.rate_limits.max_inflight_tool_calls_per_tenant, spec
        ),
    )


def max_runners(base: int, spec: AgentProfileSpec) -> int | None:
    """spec.quotas.maxRunners when the profile writes it, else the replica's setting; 0 = no cap."""
    if "quotas" in spec.model_fields_set and "max_runners" in spec.quotas.model_fields_set:
        base = spec.quotas.max_runners
    return base or None


def max_inflight_tool_calls(base: int, spec: AgentProfileSpec) -> int:
    """spec.quotas.maxInflightToolCalls when the profile writes it, else the replica's setting
    (`rate_limits.max_inflight_tool_calls_per_tenant`); 0 = no cap."""
    if "quotas" in spec.model_fields_set and "max_inflight_tool_calls" in spec.quotas.model_fields_set:
        return spec.quotas.max_inflight_tool_calls
    return base


def checker(settings: Settings):
    """`ProfileRegistry.check` for this replica: the profile's limits merged onto the replica's must
    still validate. (A role naming an undefined provider is not refused here: the rest of the profile
    should still apply on a replica without that provider; agent_run then names the missing provider.)"""

    def check(spec: AgentProfileSpec) -> None:
        sandbox_limits(settings.sandbox, spec)

    return check
