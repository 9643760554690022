"""ProfileService: the app's AgentProfiles — one registry, its source, and per-tenant resolution.

The source is chosen by the runner backend: `kubernetes` watches the namespace's AgentProfile
custom resources (watch.py, status written back); `local` polls `profiles.directory` (files.py).
`start()`/`stop()` run in the app lifespan. `for_tenant()` is read on every tool call, so it is a
dict lookup: results are cached per registry version (bumped whenever a spec in force changes),
which is also what makes a changed profile apply to the very next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .effective import TenantProfile, checker, resolve
from .registry import ProfileRegistry

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def watch_namespace(settings: Settings) -> str:
    if settings.profiles.namespace:
        return settings.profiles.namespace
    try:  # in a pod: its own namespace, where the chart installs the AgentProfiles
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or settings.kubernetes.namespace
    except OSError:
        return settings.kubernetes.namespace


class ProfileService:
    def __init__(self, settings: Settings, registry: ProfileRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or ProfileRegistry()
        self.registry.check = checker(settings)
        self._cache: dict[str, TenantProfile] = {}
        self._cache_version = -1
        self.files: Any = None  # ProfileFiles (local)
        self.watcher: Any = None  # ProfileWatcher (kubernetes)
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    @property
    def source(self) -> str:
        if self.settings.runner.backend == "kubernetes":
            return f"kubernetes:{watch_namespace(self.settings)}"
        directory = self.settings.profiles.directory
        return f"files:{directory}" if directory is not None else "none"

    # -- resolution -------------------------------------------------------------------------------
    def for_tenant(self, tenant: str) -> TenantProfile:
        version = self.registry.version
        if version != self._cache_version:
            self._cache, self._cache_version = {}, version
        cached = self._cache.get(tenant)
        if cached is None:
            chosen = self.registry.effective(tenant)
            cached = resolve(self.settings, chosen.name, chosen.generation, chosen.spec, tenant)
            if len(self._cache) < 10_000:  # bounded: tenant names come from keys, still
                self._cache[tenant] = cached
        return cached

    def synced(self) -> bool:
        """The profile source has been read once (on Kubernetes: the first list of the AgentProfiles
        landed). Until then an empty registry means "not known yet", not "no profiles"."""
        if self.watcher is not None:
            return self.watcher.synced.is_set()
        return self.settings.runner.backend != "kubernetes"

    # -- sources ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load what is there now (so the first request already sees it), then follow changes."""
        if self.settings.runner.backend == "kubernetes":
            await self._start_watch()
            return
        directory = self.settings.profiles.directory
        if directory is None:
            return
        from .files import ProfileFiles

        self.files = ProfileFiles(
            directory, self.registry, poll_interval_s=self.settings.profiles.poll_interval_s
        )
        await asyncio.to_thread(self.files.check)
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(
            self.files.run(self._stop), name="secure-agent-profile-files"
        )

    async def _start_watch(self) -> None:
        from ..runners.kubernetes.launcher import api_client
        from .watch import ProfileWatcher

        k8s = self.settings.kubernetes
        client = api_client(k8s.api_url, in_cluster=k8s.in_cluster, timeout_s=k8s.api_timeout_s)
        self.watcher = ProfileWatcher(client, self.registry, watch_namespace(self.settings))
        await self.watcher.start()
        # Serve with the cluster's profiles when the API answers quickly; a slow API must not
        # block start-up (the built-in defaults serve until the first list lands).
        if not await self.watcher.wait_synced(timeout_s=min(10.0, k8s.api_timeout_s)):
            log.warning("AgentProfiles not listed yet; built-in defaults serve until they are")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.watcher is not None:
            await self.watcher.stop()
            with contextlib.suppress(Exception):
                self.watcher.api.api_client.close()
            self.watcher = None

    def diagnostics(self) -> dict[str, Any]:
        return {"source": self.source, "profiles": self.registry.snapshot()}
