"""Local AgentProfiles: `config/profiles/*.yaml`, reloaded on change.

Each file holds one AgentProfile document, the same shape as the custom resource (apiVersion,
kind, metadata.name, spec); metadata.name defaults to the file name without `.yaml`. Changes are
found by polling (mtime_ns, size, inode) — cheap for a handful of files and reliable on every
filesystem, including bind mounts where inotify events do not arrive. A file that fails to parse
or validate keeps the profile's last good spec in force and is reported in `problems()` and logs.
A deleted file removes its profile.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import yaml

from .model import API_VERSION, KIND
from .registry import ProfileRegistry

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("config/profiles")


class ProfileFiles:
    def __init__(self, directory: Path, registry: ProfileRegistry, *, poll_interval_s: float = 2.0) -> None:
        self.directory = Path(directory)
        self.registry = registry
        self.poll_interval_s = poll_interval_s
        self._seen: dict[Path, tuple[int, int, int]] = {}
        self._names: dict[Path, str] = {}

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())

    def check(self) -> list[str]:
        """Apply new, changed and deleted files now; returns the profile names that were processed."""
        touched: list[str] = []
        current = self._files()
        for path in current:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._seen.get(path) == key:
                continue
            self._seen[path] = key
            touched.append(self._load(path))
        for path in set(self._seen) - set(current):
            del self._seen[path]
            name = self._names.pop(path, path.stem)
            if name not in self._names.values():
                self.registry.remove(name)
                log.info("profile file removed", extra={"profile": name, "path": str(path)})
            touched.append(name)
        return touched

    def _load(self, path: Path) -> str:
        name = self._names.get(path, path.stem)
        source = f"file:{path}"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self.registry.record_problem(name, "ParseError", f"{path.name}: {exc}", source=source)
            return name
        if not isinstance(doc, dict):
            self.registry.record_problem(
                name, "ParseError", f"{path.name}: not a YAML mapping", source=source
            )
            return name
        if doc.get("apiVersion", API_VERSION) != API_VERSION or doc.get("kind", KIND) != KIND:
            self.registry.record_problem(
                name,
                "WrongKind",
                f"{path.name}: expected apiVersion {API_VERSION}, kind {KIND}",
                source=source,
            )
            return name
        meta = doc.get("metadata") or {}
        name = str(meta.get("name") or path.stem)
        old = self._names.get(path)
        if old is not None and old != name and old not in [n for p, n in self._names.items() if p != path]:
            self.registry.remove(old)
        self._names[path] = name
        generation = meta.get("generation") if isinstance(meta.get("generation"), int) else None
        self.registry.apply(name, doc.get("spec"), generation=generation, source=source)
        return name

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("profile directory scan failed", extra={"path": str(self.directory)})
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
