"""Optional extension modules named in settings (`SECURE_AGENT_PLUGINS`); none are enabled by default.

A plugin is a module (dotted name or .py file path) with `register(ctx: PluginContext) -> None`.
The test suite uses one to add the conformance fixtures; production deployments list none.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from mcp.server import MCPServer

from .auth.api_keys import validate_tenant
from .auth.middleware import BearerAuthMiddleware
from .auth.principal import Principal
from .auth.scopes import parse_scopes
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PluginContext:
    mcp: MCPServer
    settings: Settings
    auth: BearerAuthMiddleware

    def allow_anonymous(self, tenant: str, scopes: list[str]) -> None:
        """Let requests without credentials act as `tenant`: for test harnesses that cannot send headers."""
        log.warning("plugin enabled ANONYMOUS access as tenant %r with scopes %s", tenant, scopes)
        self.auth.anonymous = Principal(
            tenant=validate_tenant(tenant),
            key_id="anonymous",
            scopes=frozenset(parse_scopes(scopes)),
            auth_method="none",
        )


class PluginError(RuntimeError):
    pass


def load_plugins(names: list[str], ctx: PluginContext) -> None:
    for name in names:
        module = _import(name)
        register = getattr(module, "register", None)
        if not callable(register):
            raise PluginError(f"plugin {name!r} has no register(ctx) function")
        log.warning("loading plugin %s", name)
        register(ctx)


def _import(name: str):
    if name.endswith(".py") or "/" in name:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"secure_agent_plugin_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise PluginError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        # Registered before executing so pydantic can resolve the module's postponed annotations.
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PluginError(f"cannot import plugin module {name!r}: {exc}") from exc
