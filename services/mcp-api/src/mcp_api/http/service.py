"""Service endpoints beside /mcp: liveness, readiness, diagnostics. /metrics is added by the instrumentator."""

from __future__ import annotations

import asyncio
import platform

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..auth.principal import Principal
from ..auth.scopes import Scope
from ..deps import Services, get_services
from ..observability.instrument import check_dependencies, observability_status
from ..runners.sandbox_report import cached_probe
from ..settings import redacted
from .protocol_info import LEGACY_REVISIONS, MODERN_REVISIONS

router = APIRouter()


@router.get("/health", tags=["service"])
async def health() -> dict:
    """Liveness: the process answers. Checks no dependency, so a slow database never restarts pods."""
    return {"status": "ok"}


@router.get("/ready", tags=["service"])
async def ready(services: Services = Depends(get_services)) -> JSONResponse:
    """Readiness: the store and the runner backend are reachable. Fails closed; also updates the
    secure_agent_ready / secure_agent_dependency_up gauges."""
    checks = await check_dependencies(services)
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
    )


async def require_admin(request: Request, services: Services = Depends(get_services)) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    oauth = services.auth.oauth if services.auth is not None else None
    principal = None
    if scheme.lower() == "bearer" and token:  # API keys, or OAuth access tokens when configured
        use_oauth = oauth is not None and not token.startswith("sa_")
        principal = await (oauth.verify(token) if use_oauth else services.keys.verify(token))
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="send 'Authorization: Bearer <API key>' with a valid key",
            headers={"WWW-Authenticate": 'Bearer realm="secure-agent"'},
        )
    if not principal.has(Scope.ADMIN):
        raise HTTPException(status_code=403, detail="diagnostics need an API key with the 'admin' scope")
    return principal


def workspace_noexec(settings) -> dict:
    """What stops a command from executing a file written into the workspace."""
    if settings.runner.backend != "kubernetes":
        return {"mount": "local runner: noexec idmapped mount where the runner is root (see sandbox)",
                "landlock": "no EXECUTE right in the workspace"}  # fmt: skip
    if settings.kubernetes.workspace_noexec_mount:
        return {"mount": "bindMountOptions [noexec, nosuid, nodev] (Kubernetes 1.37 alpha, VolumeBindMountOptions)",
                "landlock": "no EXECUTE right in the workspace"}  # fmt: skip
    return {
        "mount": "none: emptyDir cannot be mounted noexec without bindMountOptions "
        "(SECURE_AGENT_KUBERNETES__WORKSPACE_NOEXEC_MOUNT is off)",
        "landlock": "noexec relies on Landlock's EXECUTE right: the runner grants no EXECUTE in the workspace",
    }


@router.get("/diagnostics", tags=["service"])
async def diagnostics(
    _: Principal = Depends(require_admin), services: Services = Depends(get_services)
) -> dict:
    status = await services.runners.status()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "protocol_revisions": {"modern": MODERN_REVISIONS, "legacy": LEGACY_REVISIONS},
        "transport": {"path": "/mcp", "stateless": True, "responses": ["application/json", "text/event-stream"]},
        "runner_backend": {"name": status.backend, "healthy": status.healthy, "runners": status.runners,
                           **status.detail},
        "sandbox": await asyncio.to_thread(cached_probe, services.settings.sandbox),
        "workspace_noexec": workspace_noexec(services.settings),
        "profiles": services.profiles.diagnostics() if services.profiles is not None else None,
        "dependencies": await check_dependencies(services),
        "observability": observability_status(services.settings),
        "settings": redacted(services.settings),
    }  # fmt: skip
