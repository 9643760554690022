"""AgentProfiles as runner pods see them: pod options (the replica's `kubernetes` settings with the
profile's `SandboxSpec.kubernetes_overrides()`, its command limits as `--sandbox`) and a warm pool
size (spec.sandbox.poolSize, else `kubernetes.warm_pool_size`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .pods import PodOptions, label_value

if TYPE_CHECKING:
    from ...profiles.effective import TenantProfile
    from ...profiles.service import ProfileService


@dataclass(frozen=True)
class PodProfile:
    name: str  # the pods' profile label value
    options: PodOptions
    pool_size: int


def pod_profile(profile: TenantProfile) -> PodProfile:
    name = label_value(profile.pod_profile)
    options = dataclasses.replace(PodOptions.from_settings(profile.kubernetes, profile.sandbox), profile=name)
    return PodProfile(name, options, profile.pool_size)


class ProfilePods:
    """The two questions the backend asks: which pods for this tenant, and which pools to keep."""

    def __init__(self, profiles: ProfileService) -> None:
        self.profiles = profiles

    def for_tenant(self, tenant: str) -> PodProfile:
        return pod_profile(self.profiles.for_tenant(tenant))

    def all(self) -> list[PodProfile]:
        """One pool per profile in force, plus the built-in profile when no `default` is in force
        (tenants no profile lists use it)."""
        from ...profiles.effective import resolve

        registry, settings = self.profiles.registry, self.profiles.settings
        out: dict[str, PodProfile] = {}
        for name in registry.names():
            state = registry.state(name)
            if state is None or state.spec is None:
                continue
            # Pod options do not depend on the tenant (only the agent policy may): any tenant will do.
            pods = pod_profile(resolve(settings, name, state.applied_generation, state.spec, tenant=""))
            out[pods.name] = pods
        fallback = pod_profile(self.profiles.for_tenant("\x00no tenant\x00"))
        out.setdefault(fallback.name, fallback)
        return list(out.values())
