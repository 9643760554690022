"""Hot reads for local runners: a `files/read` answer the runner gave, served again without the hop.

Why: with a local runner, half of mcp-api's cost of a `read_file` is the round trip to a second
process (docs/performance.md). When the file is provably unchanged, the runner's last answer for
the same request is the answer it would give again.

mcp-api still never opens a workspace file for reading or writing. It looks the path up with O_PATH
(metadata only) through the runner's own resolver and rules (`agent_runner.workspace.paths`: openat2
beneath the workspace, no symlinks, no mount crossings) and compares the file's identity —
(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns), see `agent_runner.workspace.read_cache` for why
it cannot miss a change — with the identity recorded around the runner's answer:

* the file is looked up before the call and again after it; the answer is kept only if both agree,
  so it is the content of exactly that file in exactly that state (replacing, renaming, linking,
  writing or truncating the file changes its ctime);
* only files whose ctime is older than a second are kept or served, so two changes within one tick
  of the kernel's coarse clock cannot share an identity;
* every other request, and any lookup that fails (a symlink, `..`, a missing file, a FIFO), goes to
  the runner, which gives its answer or its error as before.

A hit hands out the entry itself, a frozen `SharedReadFileResult`, so what the layers above derive
from it is derived once (mcp/answers.py). Entries belong to one runner (its id is part of the key): a
runner restarted with another sandbox policy, or for a recreated workspace, starts with none. One
bound in bytes for all workspaces (`runner.hot_read_cache_bytes`; 0 turns this off), each entry
counted with the answers derived from it (`charge`). Kubernetes runners own their files in their
pod, so this exists only for the local backend.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from agent_runner.client import RunnerClient
from agent_runner.protocol import ReadFileRequest, ReadFileResult
from agent_runner.workspace.paths import Workspace, normalize_path
from agent_runner.workspace.read_cache import ReadCache, stat_key
from pydantic import BaseModel, ConfigDict

from ..observability.metrics import HOT_READS

READ_OP = "files/read"
_ENTRY_OVERHEAD = 1024  # the models' own sizes, roughly, beyond the content
_ids = itertools.count(1)
_HIT, _MISS = HOT_READS.labels(result="hit"), HOT_READS.labels(result="miss")


def charge(content: str) -> int:
    """The memory an entry may come to hold, counted against the bound: its content and the tool
    result's text (a copy when a truncation note is added), and the JSON answer the fast lane keeps,
    which carries the content twice (text and structuredContent), escaped as json.dumps escapes it
    (6 bytes for a character outside ASCII). One answer per entry (mcp/answers.py)."""
    return 2 * sys.getsizeof(content) + 2 * len(json.dumps(content)) + _ENTRY_OVERHEAD


class SharedReadFileResult(ReadFileResult):
    """A runner's answer handed to every reader of the same unchanged file: frozen, so none can change it
    for the others."""

    model_config = ConfigDict(frozen=True)


class HotReadClient(RunnerClient):
    """A RunnerClient of a local runner that answers unchanged `files/read` requests itself."""

    def __init__(self, *, workspace: Path, cache: ReadCache, **client_args: Any) -> None:
        super().__init__(**client_args)
        self._cache = cache
        self._id = next(_ids)
        # Held open for the runner's life, as the runner holds its own: a workspace directory
        # replaced meanwhile is not the one this runner serves.
        self._workspace = Workspace(workspace)

    async def aclose(self) -> None:
        self._workspace.close()
        await super().aclose()

    async def call(
        self, op: str, request: BaseModel | dict[str, Any], *, request_timeout: float | None = None
    ) -> BaseModel:
        if op != READ_OP or not self._cache.enabled or self._workspace.root_fd < 0:
            return await super().call(op, request, request_timeout=request_timeout)
        if isinstance(request, dict):
            request = ReadFileRequest.model_validate(request)
        elif not isinstance(request, ReadFileRequest):
            return await super().call(op, request, request_timeout=request_timeout)
        before = self._identity(request.path)
        if before is None:
            _MISS.inc()
            return await super().call(op, request, request_timeout=request_timeout)
        key = (self._id, *before, request.offset, request.limit, request.max_bytes)
        cached = self._cache.get(key)
        if cached is not None:
            _HIT.inc()
            return cached
        _MISS.inc()
        result = await super().call(op, request, request_timeout=request_timeout)
        # Looked up again after the answer: kept only if the file was that same file throughout. (Its
        # ctime already tells any change; this costs one lookup per miss, and keeps an answer read
        # across a change from being stored even on a filesystem whose ctime were less strict.)
        if isinstance(result, ReadFileResult) and self._identity(request.path) == before:
            shared = SharedReadFileResult.model_validate(result.model_dump())
            self._cache.put(key, shared, charge(result.content))
        return result

    def _identity(self, path: str) -> tuple | None:
        """(stat key, normalized path) of a settled regular file at `path`, or None."""
        try:
            path = normalize_path(path)
            fd = self._workspace.open(path, os.O_PATH)
        except Exception:  # noqa: BLE001 - the runner reports it
            return None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode) or not self._cache.cacheable(st):
            return None
        return (*stat_key(st), path)
