"""Wiring: the long-lived services of one app, built once from settings and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from .auth.api_keys import ApiKeyService
from .runners.base import RunnerBackend
from .runners.local import LocalRunnerBackend
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

    async def aclose(self) -> None:
        await self.runners.aclose()
        await self.store.aclose()


def build_services(settings: Settings) -> Services:
    store = Store(settings.store_url)
    runners = LocalRunnerBackend(settings.workspaces_dir, settings.data_dir / "run", settings.runner)
    return Services(settings=settings, store=store, keys=ApiKeyService(store), runners=runners)


def get_services(request: Request) -> Services:
    """FastAPI dependency: the Services object of the app serving this request."""
    return request.app.state.services
