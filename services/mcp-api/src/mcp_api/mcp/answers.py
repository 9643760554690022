"""Answers derived once from a shared, frozen source and reused while that same object is reused.

A hot read (runners/hot_reads.py) hands every reader of an unchanged file the same frozen
`ReadFileResult`. What `read_file` builds from it (a `CallToolResult`) and what the fast lane makes
of that (its JSON) are pure functions of it, so they are kept beside it instead of being rebuilt for
every call: no repeated validation or serialization on the hot path.

Why this is safe:
* only frozen objects are sources (`SharedCallToolResult` here, `SharedReadFileResult` there):
  nobody can change one after its answers were derived;
* entries are keyed by the source's identity and hold it only weakly: an entry dies with its
  source, so an id reused by a later object never finds it, and memory is bounded by whatever keeps
  the sources alive (the hot-read cache's byte bound);
* the tag says which derivation an entry is for (the path as the caller spelled it, the protocol
  version and era), and a source keeps one entry, the last: what a source holds is bounded, however
  many spellings or versions a client tries (runners/hot_reads.py counts it in its byte bound).
"""

from __future__ import annotations

import weakref
from typing import Any

from mcp.types import CallToolResult
from pydantic import ConfigDict


class SharedCallToolResult(CallToolResult):
    """A tool result handed to more than one call: frozen, so none of them can change it for the rest."""

    model_config = ConfigDict(frozen=True)


class DerivedAnswers:
    """One value derived from each source object, with the tag it was derived for, living exactly as
    long as the source. One per source, the last one stored: a source asked for under alternating tags
    (another spelling of the path, another protocol version) is derived again each time, which is
    correct, only not faster, and what a source can hold stays bounded by one value."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Any, Any]] = {}

    def get(self, source: object, tag: Any) -> Any | None:
        entry = self._entries.get(id(source))
        if entry is None or entry[0]() is not source or entry[1] != tag:
            return None
        return entry[2]

    def put(self, source: object, tag: Any, value: Any) -> None:
        key = id(source)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is source:
            ref = entry[0]
        else:
            entries = self._entries

            def forget(ref: weakref.ref, key: int = key) -> None:
                # Only this source's entry: a later object with the same id may have one by now.
                if (current := entries.get(key)) is not None and current[0] is ref:
                    del entries[key]

            ref = weakref.ref(source, forget)
        self._entries[key] = (ref, tag, value)

    def __len__(self) -> int:
        return len(self._entries)
