"""Tree-wide operations of the runner protocol: directory_tree, find_files and grep.

All three walk the workspace the same way: each directory is opened through the `Workspace`
resolver (so a directory swapped for a symlink mid-walk is refused, not followed), listed, and
closed before its subdirectories are visited; symlinks are reported or skipped, never followed;
other mounts are never entered. Every walk is bounded by entry counts and wall time.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import regex as regex_lib

from agent_runner.errors import OperationError, printable
from agent_runner.protocol import (
    MAX_GREP_SECONDS,
    DirectoryTreeRequest,
    DirectoryTreeResult,
    EntryType,
    ErrorCode,
    FindFilesRequest,
    FindFilesResult,
    GrepMatch,
    GrepRequest,
    GrepResult,
    TreeNode,
)
from agent_runner.workspace.files import SNIFF_BYTES
from agent_runner.workspace.paths import Workspace, entry_type_of, join_path, normalize_path, symlink_refused

# Walks that return few results can still visit a huge tree; these bound the work itself.
MAX_WALK_ENTRIES = 1_000_000
WALK_SECONDS = MAX_GREP_SECONDS
# Files up to this size are read whole; larger ones line by line so memory stays flat.
GREP_WHOLE_FILE_BYTES = 4 * 1024 * 1024
# Streaming reads lines in pieces of this size and searches at most GREP_MAX_LINE_BYTES of each.
GREP_LINE_PIECE = 64 * 1024
GREP_MAX_LINE_BYTES = 1024 * 1024
# Match text is cut to this many characters so one minified line cannot eat the byte budget.
MAX_MATCH_CHARS = 2000


def _scan_sorted(ws: Workspace, directory: str) -> list[tuple[str, EntryType]] | None:
    """Sorted (name, type) entries of a directory, or None if it cannot be opened safely now."""
    try:
        fd = ws.open_dir(directory)
    except OperationError:
        return None  # vanished, became a symlink, is another mount, or is unreadable
    try:
        with os.scandir(fd) as it:
            entries = []
            for entry in it:
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue  # removed since readdir
                entries.append((entry.name, EntryType(entry_type_of(mode))))
    except OSError:
        return None
    finally:
        os.close(fd)
    entries.sort()
    return entries


class TreeWalk:
    """Iterate (workspace path, name, type) of every entry below `top`, directory by directory.

    Stops at MAX_WALK_ENTRIES entries or at `deadline`, and then sets `cut`, so callers can tell
    a complete walk from a partial one.
    """

    def __init__(self, ws: Workspace, top: str, deadline: float) -> None:
        self.ws = ws
        self.top = top
        self.deadline = deadline
        self.cut = False

    def __iter__(self) -> Iterator[tuple[str, str, EntryType]]:
        pending = [self.top]
        visited = 0
        while pending:
            directory = pending.pop()
            entries = _scan_sorted(self.ws, directory)
            if entries is None:
                continue
            subdirs = []
            for name, kind in entries:
                visited += 1
                if visited > MAX_WALK_ENTRIES or time.monotonic() > self.deadline:
                    self.cut = True
                    return
                path = join_path(directory, name)
                yield path, name, kind
                if kind == EntryType.DIRECTORY:
                    subdirs.append(path)
            # Reversed so that popping visits subdirectories in sorted order.
            pending.extend(reversed(subdirs))


def _entry_kind(ws: Workspace, path: str) -> str:
    """lstat type of the path a search starts from; a symlink there is refused like anywhere."""
    kind = entry_type_of(ws.lstat(path).st_mode)
    if kind == "symlink":
        raise symlink_refused(path)
    return kind


def _require_directory(ws: Workspace, path: str) -> None:
    if _entry_kind(ws, path) != "directory":
        raise OperationError(ErrorCode.NOT_A_DIRECTORY, f"'{path}' is not a directory", path)


# --- directory_tree -------------------------------------------------------------------------


def directory_tree(ws: Workspace, req: DirectoryTreeRequest) -> DirectoryTreeResult:
    """The tree below a directory, breadth first, to `max_depth` levels and `max_entries` nodes.

    In the result, `children` is a list for a directory that was listed (possibly empty) and
    None for files, symlinks, and directories that were not listed: below `max_depth`, cut by
    the caps, or unreadable. When `truncated`, the last listed directory may be partial.
    Breadth first, so a cut tree still shows the top levels whole.
    """
    path = normalize_path(req.path)
    _require_directory(ws, path)
    top: list[TreeNode] = []
    queue: deque[tuple[str, TreeNode | None, int]] = deque([(path, None, 1)])
    count = 0
    truncated = False
    deadline = time.monotonic() + WALK_SECONDS
    while queue and not truncated:
        directory, node, depth = queue.popleft()
        entries = _scan_sorted(ws, directory)
        if entries is None:
            if node is None:  # the requested directory itself
                raise OperationError(ErrorCode.NOT_FOUND, f"'{path}' cannot be listed", path)
            node.children = None
            continue
        siblings = top if node is None else node.children
        assert siblings is not None
        for name, kind in entries:
            if count >= req.max_entries or time.monotonic() > deadline:
                truncated = True
                break
            expand = kind == EntryType.DIRECTORY and depth < req.max_depth
            child = TreeNode(name=printable(name), type=kind, children=[] if expand else None)
            siblings.append(child)
            count += 1
            if expand:
                queue.append((join_path(directory, name), child, depth + 1))
        if truncated and node is not None and not siblings:
            node.children = None  # cut before its first entry: not listed, not empty
    # Directories still queued were never listed.
    for _, node, _ in queue:
        if node is not None:
            node.children = None
    return DirectoryTreeResult(path=path, tree=top, entries=count, truncated=truncated)


# --- find_files -----------------------------------------------------------------------------


def find_files(ws: Workspace, req: FindFilesRequest) -> FindFilesResult:
    """Paths (relative to the workspace root) of files whose name matches a glob.

    The glob (`fnmatch`, case-sensitive) is matched against the entry name; a glob containing
    `/` is matched against the path relative to the search directory instead. Symlinks are
    never followed or returned; directories are returned with `include_directories`.
    """
    path = normalize_path(req.path)
    _require_directory(ws, path)
    by_path = "/" in req.pattern
    matcher = re.compile(fnmatch.translate(req.pattern)).match
    prefix = "" if path == "." else path + "/"
    matches: list[str] = []
    truncated = False
    walk = TreeWalk(ws, path, time.monotonic() + WALK_SECONDS)
    for entry_path, name, kind in walk:
        if kind == EntryType.FILE or (kind == EntryType.DIRECTORY and req.include_directories):
            subject = entry_path[len(prefix) :] if by_path else name
            if matcher(subject):
                if len(matches) >= req.max_results:
                    truncated = True
                    break
                matches.append(printable(entry_path))
    truncated = truncated or walk.cut
    return FindFilesResult(path=path, matches=matches, truncated=truncated)


# --- grep -----------------------------------------------------------------------------------


class _GrepState:
    def __init__(self, req: GrepRequest, deadline: float) -> None:
        self.req = req
        self.deadline = deadline
        self.matches: list[GrepMatch] = []
        self.returned_bytes = 0
        self.files_scanned = 0
        self.binary_skipped = 0
        self.reason: str | None = None

    def add(self, path: str, line: int, text: str) -> bool:
        """Record a match; False once a cap is reached (and the reason is set)."""
        if len(self.matches) >= self.req.max_matches:
            self.reason = "max_matches"
            return False
        if len(text) > MAX_MATCH_CHARS:
            text = text[:MAX_MATCH_CHARS] + "…"
        size = len(text.encode("utf-8"))
        if self.returned_bytes + size > self.req.max_bytes:
            self.reason = "max_bytes"
            return False
        self.returned_bytes += size
        self.matches.append(GrepMatch(path=printable(path), line=line, text=text))
        return True


def grep(ws: Workspace, req: GrepRequest) -> GrepResult:
    """Search text files for a Python regular expression, line by line.

    `path` may be a directory (searched recursively) or one file. Binary files (a NUL byte in
    the first 8 KiB) are skipped and counted; symlinks and special files are skipped. Invalid
    UTF-8 is replaced, not fatal. Stops at the first cap reached (matches, returned bytes, wall
    time) and reports it in `truncated_reason`; a timeout is a partial result, not an error.
    Lines are 1-based. Patterns use the `regex` package (a superset of `re`) because its matcher
    takes a timeout: a catastrophic pattern on one long line cannot outrun the wall-time cap.
    """
    try:
        pattern = regex_lib.compile(req.pattern, regex_lib.IGNORECASE if req.case_insensitive else 0)
    except regex_lib.error as exc:
        raise OperationError(
            ErrorCode.INVALID_ARGUMENT, f"invalid regular expression {req.pattern!r}: {exc}"
        ) from None
    name_matches = re.compile(fnmatch.translate(req.glob)).match if req.glob else None
    path = normalize_path(req.path)
    state = _GrepState(req, time.monotonic() + req.timeout_s)

    kind = _entry_kind(ws, path)
    walk = None
    if kind == "file":
        targets: Iterable[tuple[str, str, EntryType]] = [(path, path.rpartition("/")[2], EntryType.FILE)]
    elif kind == "directory":
        targets = walk = TreeWalk(ws, path, state.deadline)
    else:
        raise OperationError(
            ErrorCode.NOT_REGULAR, f"'{path}' is a {kind}; grep searches files and directories", path
        )

    # The deadline is checked by the walk (per entry) and by _grep_file (per line).
    for file_path, name, entry_kind in targets:
        if entry_kind != EntryType.FILE or (name_matches and not name_matches(name)):
            continue
        if not _grep_file(ws, file_path, pattern, state):
            break
    else:
        if walk is not None and walk.cut:
            # The walk ran out of time (or of its entry budget, reported the same way: the
            # protocol's reasons describe the caller's caps, and both mean "search incomplete").
            state.reason = "timeout"
    return GrepResult(
        matches=state.matches,
        files_scanned=state.files_scanned,
        binary_files_skipped=state.binary_skipped,
        truncated=state.reason is not None,
        truncated_reason=state.reason,
    )


def _grep_file(ws: Workspace, path: str, pattern: regex_lib.Pattern, state: _GrepState) -> bool:
    """Search one file; False when a cap stops the whole grep."""
    try:
        fd, st = ws.open_regular(path)
    except OperationError:
        return True  # became a symlink, a FIFO, or vanished since the walk listed it
    with os.fdopen(fd, "rb") as f:
        head = f.read(SNIFF_BYTES)
        if b"\x00" in head:
            state.binary_skipped += 1
            return True
        state.files_scanned += 1
        if st.st_size <= GREP_WHOLE_FILE_BYTES:
            text = (head + f.read()).decode("utf-8", "replace").removesuffix("\n")
            lines: Iterable[str] = text.split("\n") if text else []
        else:
            f.seek(0)
            lines = _stream_lines(f)
        for number, line in enumerate(lines, start=1):
            remaining = state.deadline - time.monotonic()
            if remaining <= 0:
                state.reason = "timeout"
                return False
            try:
                found = pattern.search(line, timeout=remaining)
            except TimeoutError:
                state.reason = "timeout"
                return False
            if found and not state.add(path, number, line.removesuffix("\r")):
                return False
    return True


def _stream_lines(f: BinaryIO) -> Iterator[str]:
    """Lines of a large file, decoded one at a time so memory stays bounded.

    Only the first GREP_MAX_LINE_BYTES of a longer line are searched (such lines are minified
    or generated data); line numbers stay exact either way.
    """
    kept = bytearray()
    while True:
        piece = f.readline(GREP_LINE_PIECE)
        if not piece:
            if kept:
                yield kept.decode("utf-8", "replace")
            return
        room = GREP_MAX_LINE_BYTES - len(kept)
        if room > 0:
            kept += piece[:room]
        if piece.endswith(b"\n"):
            yield bytes(kept).removesuffix(b"\n").decode("utf-8", "replace")
            kept.clear()
