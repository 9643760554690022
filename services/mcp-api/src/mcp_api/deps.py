"""Wiring: the long-lived services of one app, built once from settings and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from .agent.loop import SecureAgent
from .auth.api_keys import ApiKeyService
from .profiles.service import ProfileService
from .runners.base import RunnerBackend
from .runners.local import LocalRunnerBackend
from .security.audit import AuditLog
from .security.pii import StorageRedactor
from .security.rate_limit import RateLimiter
from .settings import Settings
from .store.store import Store

if TYPE_CHECKING:
    from .auth.middleware import BearerAuthMiddleware


@dataclass
class Services:
    settings: Settings
    store: Store
    keys: ApiKeyService
    runners: RunnerBackend
    auth: BearerAuthMiddleware | None = field(default=None)
    # AuditLog.record(action, actor, tenant, target, details) for every administrative action.
    audit: AuditLog | None = field(default=None)
    limiter: RateLimiter | None = field(default=None)
    # The SecureAgent (agent/loop.py), built once per app; tests swap its providers.
    agent: SecureAgent | None = field(default=None)
    # AgentProfiles in force (profiles/service.py): tools, limits, policy, models per tenant.
    profiles: ProfileService | None = field(default=None)

    async def aclose(self) -> None:
        if self.agent is not None:
            await self.agent.aclose()
        await self.runners.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()
        self.keys.close()
        await self.store.aclose()


def build_services(settings: Settings) -> Services:
    store = Store(settings.store_url)
    profiles = ProfileService(settings)
    runners: RunnerBackend
    if settings.runner.backend == "kubernetes":
        from .runners.kubernetes.backend import KubernetesRunnerBackend  # the client loads only here

        runners = KubernetesRunnerBackend.from_settings(settings, profiles=profiles)
    else:
        runners = LocalRunnerBackend(
            settings.workspaces_dir,
            settings.data_dir / "run",
            settings.runner,
            settings.sandbox,
            max_per_tenant=settings.rate_limits.max_runners_per_tenant or None,
            sandbox_for=lambda tenant: profiles.for_tenant(tenant).sandbox,
            max_per_tenant_for=lambda tenant: profiles.for_tenant(tenant).max_runners,
        )
    audit = AuditLog(store, StorageRedactor(settings.privacy))
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    return Services(
        settings=settings, store=store, runners=runners, audit=audit,
        keys=ApiKeyService(store, audit, cache_ttl_s=settings.api_key_cache_ttl_s,
                           cache_exact=settings.api_key_cache_exact),
        limiter=RateLimiter(settings.rate_limits, redis_url,
                            inflight_cap_for=lambda tenant: profiles.for_tenant(tenant).max_inflight_tool_calls),
        agent=SecureAgent(settings.agent, store, audit=audit), profiles=profiles,
    )  # fmt: skip


def get_services(request: Request) -> Services:
    """FastAPI dependency: the Services object of the app serving this request."""
    return request.app.state.services
