"""Hot-file read cache of the runner: `files/read` answers for unchanged files, without reading them.

Keyed by what the fstat of the fd the read opened (openat2, no symlinks, in the workspace) says about
the file — (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) — plus the request (path, offset,
limit, max_bytes). It can never serve content the file no longer has, because:

* every change of a file's content changes its ctime (write, truncate, rename over it — a new inode —
  and `utime`, which can forge mtime but sets ctime to now); ctime cannot be set by a user;
* the kernel's file timestamps are coarse (a clock tick, ~1–4 ms), so two changes within one tick can
  leave the same ctime: an answer is only cached when the file's ctime is older than `SETTLE_NS`
  (1 s) — any later change then gets a later ctime, hence another key;
* the fd is fstat'ed again after the read and the answer is cached only if nothing changed meanwhile.

The known limit, as for make or rsync: a process writing through a shared writable mmap of the file
does not update ctime on every store. Each runner process serves one workspace of one tenant, so
entries are never shared across tenants. Bounded in bytes (`AGENT_RUNNER_READ_CACHE_BYTES`, default
16 MiB; 0 turns the cache off) and only files up to 1 MiB are cached.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

CACHE_BYTES_ENV = "AGENT_RUNNER_READ_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024
SETTLE_NS = 1_000_000_000


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ReadCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def cacheable(self, st: os.stat_result) -> bool:
        return (
            self.max_bytes > 0
            and st.st_size <= MAX_FILE_BYTES
            and time.time_ns() - st.st_ctime_ns > SETTLE_NS
        )

    def put(self, key: tuple, value: Any, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def _configured_bytes() -> int:
    value = os.environ.get(CACHE_BYTES_ENV, "")
    return int(value) if value.strip().isdigit() else DEFAULT_CACHE_BYTES


CACHE = ReadCache(_configured_bytes())
