"""File operations of the runner protocol: one function per op, each `(Workspace, Request) -> Result`.

Every path goes through `Workspace` (see paths.py); every failure a caller can cause is an
`OperationError`. Writes are atomic: the new content goes to a temporary file created with
O_EXCL in the target's directory, is fsynced, then renamed over the target, so a reader sees the
old file or the new one, never a torn one, and a failed write leaves the old file untouched.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import difflib
import errno
import mimetypes
import os
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

from agent_runner.errors import OperationError, from_os_error, printable
from agent_runner.protocol import (
    MAX_WRITE_BYTES,
    CreateDirectoryRequest,
    CreateDirectoryResult,
    DeleteFileRequest,
    DeleteFileResult,
    DirEntry,
    EditFileRequest,
    EditFileResult,
    EntryType,
    ErrorCode,
    FileInfoRequest,
    FileInfoResult,
    ListDirectoryRequest,
    ListDirectoryResult,
    MoveFileRequest,
    MoveFileResult,
    ReadFileRequest,
    ReadFileResult,
    WriteFileRequest,
    WriteFileResult,
)
from agent_runner.workspace import read_cache, syscalls
from agent_runner.workspace.paths import (
    ROOT,
    Workspace,
    close_quietly,
    describe_kind,
    entry_type_of,
    join_path,
    lstat_at,
    normalize_path,
    parent_of,
    symlink_refused,
)

# A file is text when its first SNIFF_BYTES hold no NUL byte and decode as UTF-8 (the returned
# part must decode too). 8 KiB is what git and grep look at.
SNIFF_BYTES = 8192
_READ_CHUNK = 64 * 1024
# Counting lines for `total_lines` reads the rest of the file; past this much we stop counting
# and report total_lines as unknown rather than stall on a huge log.
LINE_COUNT_SCAN_LIMIT = 256 * 1024 * 1024

_TEMP_PREFIX = ".agent-runner-"

# The standard table is built into Python (system mime.types files differ between hosts and
# are not read), plus source-file types it gets wrong or lacks (.ts is not MPEG video here).
_MIME = mimetypes.MimeTypes()
for _ext, _type in {
    ".ts": "text/x-typescript",
    ".tsx": "text/x-typescript",
    ".jsx": "text/javascript",
    ".md": "text/markdown",
    ".toml": "application/toml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".rs": "text/x-rust",
    ".go": "text/x-go",
    ".ini": "text/plain",
    ".cfg": "text/plain",
    ".lock": "text/plain",
}.items():
    _MIME.add_type(_type, _ext)


def guess_mime(path: str) -> str | None:
    """MIME type from the file name, or None when the extension is unknown."""
    return _MIME.guess_type(path, strict=False)[0]


# --- read -----------------------------------------------------------------------------------


def read_file(ws: Workspace, req: ReadFileRequest) -> ReadFileResult:
    """Read a regular file: a window of lines for text, a base64 prefix for binary data.

    Text: lines [offset, offset+limit) are returned whole until `max_bytes` would be exceeded;
    `truncated` means the byte cap cut the window (if even the first line does not fit, its
    first `max_bytes` are returned). `end_line` is exclusive. Binary (NUL in the first 8 KiB, or
    not UTF-8): the first `max_bytes` bytes, base64; `truncated` means the file is longer.
    """
    path = normalize_path(req.path)
    fd, st = ws.open_regular(path)
    with os.fdopen(fd, "rb", buffering=_READ_CHUNK) as f:
        if not read_cache.CACHE.cacheable(st):
            return _read_open_file(f, path, st, req)
        # The key is the fstat of the fd just opened (see read_cache for why it cannot go stale).
        key = (*read_cache.stat_key(st), path, req.offset, req.limit, req.max_bytes)
        result = read_cache.CACHE.get(key)
        if result is None:
            result = _read_open_file(f, path, st, req)
            if read_cache.stat_key(os.fstat(f.fileno())) == key[:5]:  # unchanged while we read it
                read_cache.CACHE.put(key, result, len(result.content) + 512)
        return result


def read_file_cached(ws: Workspace, req: ReadFileRequest) -> ReadFileResult | None:
    """The cached answer for this read if the file is unchanged, else None: two syscalls (the same
    openat2 resolution as read_file, and fstat), cheap enough for the event loop, so a hot read needs
    no worker thread. Any error also gives None: read_file then runs and reports it properly."""
    if not read_cache.CACHE.enabled:
        return None
    try:
        path = normalize_path(req.path)
        fd, st = ws.open_regular(path)
    except Exception:  # noqa: BLE001 - read_file reports it
        return None
    try:
        if not read_cache.CACHE.cacheable(st):
            return None
        return read_cache.CACHE.get((*read_cache.stat_key(st), path, req.offset, req.limit, req.max_bytes))
    finally:
        os.close(fd)


def _read_open_file(f: BinaryIO, path: str, st: os.stat_result, req: ReadFileRequest) -> ReadFileResult:
    head = f.read(SNIFF_BYTES)
    if not _looks_binary(head):
        f.seek(0)
        window = _read_text_window(f, req.offset, req.limit, req.max_bytes)
        try:
            text = window.data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # invalid UTF-8 past the sniffed prefix: the file is binary after all
        else:
            return ReadFileResult(
                path=path,
                size=st.st_size,
                mime_type=guess_mime(path) or "text/plain",
                encoding="utf-8",
                content=text,
                is_binary=False,
                truncated=window.truncated,
                start_line=req.offset,
                end_line=window.end_line,
                total_lines=window.total_lines,
            )
    f.seek(0)
    data = f.read(req.max_bytes + 1)
    return ReadFileResult(
        path=path,
        size=st.st_size,
        mime_type=guess_mime(path) or "application/octet-stream",
        encoding="base64",
        content=base64.b64encode(data[: req.max_bytes]).decode("ascii"),
        is_binary=True,
        truncated=len(data) > req.max_bytes,
    )


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # final=False: a multi-byte character cut by the sniff boundary is not an error.
        decoder.decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError:
        return True
    return False


class _TextWindow:
    __slots__ = ("data", "end_line", "total_lines", "truncated")

    def __init__(self, data: bytes, end_line: int, total_lines: int | None, truncated: bool) -> None:
        self.data = data
        self.end_line = end_line
        self.total_lines = total_lines
        self.truncated = truncated


def _read_text_window(f: BinaryIO, offset: int, limit: int | None, max_bytes: int) -> _TextWindow:
    stop = None if limit is None else offset + limit
    out = bytearray()
    current = bytearray()  # the line being collected, capped at max_bytes + 1
    line = 0  # index of the line the next piece belongs to
    end_line = offset
    truncated = False
    newlines = scanned = 0
    last_byte = b""

    def commit() -> bool:
        """Add the collected line to the output; False when the byte cap stops the window."""
        nonlocal end_line, truncated, out
        if len(out) + len(current) <= max_bytes:
            out += current
            end_line = line + 1
            return True
        truncated = True
        if not out:
            out = bytearray(_cut_utf8(bytes(current), max_bytes))
            end_line = line + 1
        return False

    window_open = True
    while window_open:
        # readline with a size bound: a single enormous line arrives in pieces, so memory stays
        # bounded by max_bytes whatever the file looks like.
        piece = f.readline(_READ_CHUNK)
        if not piece:
            if current:  # a last line without a trailing newline
                commit()
            total = newlines + (1 if last_byte not in (b"", b"\n") else 0)
            return _TextWindow(bytes(out), end_line, total, truncated)
        scanned += len(piece)
        last_byte = piece[-1:]
        in_window = line >= offset and (stop is None or line < stop)
        if in_window and len(current) <= max_bytes:
            current += piece[: max_bytes + 1 - len(current)]
        if last_byte == b"\n":
            newlines += 1
            if in_window and not commit():
                window_open = False
            current.clear()
            line += 1
            if stop is not None and line >= stop:
                window_open = False

    # The window is complete before EOF: count the remaining lines, within a budget.
    while scanned <= LINE_COUNT_SCAN_LIMIT:
        chunk = f.read(1024 * 1024)
        if not chunk:
            total = newlines + (1 if last_byte not in (b"", b"\n") else 0)
            return _TextWindow(bytes(out), end_line, total, truncated)
        scanned += len(chunk)
        newlines += chunk.count(b"\n")
        last_byte = chunk[-1:]
    return _TextWindow(bytes(out), end_line, None, truncated)


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """data[:limit], moved back so that no multi-byte character is cut in half."""
    if len(data) <= limit:
        return data
    end = limit
    # Continuation bytes are 0b10xxxxxx; a character is at most 4 bytes long.
    while end > 0 and limit - end < 3 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


# --- write ----------------------------------------------------------------------------------


def write_file(ws: Workspace, req: WriteFileRequest) -> WriteFileResult:
    """Create or replace a file atomically.

    Refuses: content over MAX_WRITE_BYTES (too_large), bad base64 (invalid_argument), a target
    that is a directory, symlink, special file or hard-linked file, an existing target when
    `overwrite` is false. The old file is untouched by any failure and no temporary file is left.
    """
    path = normalize_path(req.path)
    data = _decode_content(req.content, req.encoding, path)
    if len(data) > MAX_WRITE_BYTES:
        raise _too_large(path, len(data))
    if path == ROOT:
        raise OperationError(ErrorCode.IS_A_DIRECTORY, "'.' is the workspace root directory", path)
    parent, name = parent_of(path)
    if req.create_parents:
        dir_fd, _ = ws.makedirs(parent)
    else:
        dir_fd = _open_existing_parent(ws, parent, path, hint="pass create_parents=true to create it")
    try:
        existing = lstat_at(dir_fd, name, path)
        mode = None
        if existing is not None:
            _check_replaceable(existing, path)
            if not req.overwrite:
                raise OperationError(
                    ErrorCode.ALREADY_EXISTS,
                    f"'{path}' already exists; pass overwrite=true to replace it",
                    path,
                )
            mode = stat.S_IMODE(existing.st_mode) & 0o777
        _write_atomically(dir_fd, name, path, data, replace=req.overwrite, mode=mode)
    finally:
        os.close(dir_fd)
    return WriteFileResult(path=path, bytes_written=len(data), created=existing is None)


def _decode_content(content: str, encoding: str, path: str) -> bytes:
    if encoding == "base64":
        # Checked before decoding so an oversized request costs no decode buffer (padding
        # makes the decoded size up to 2 bytes smaller than len // 4 * 3).
        if len(content) // 4 * 3 > MAX_WRITE_BYTES + 2:
            raise _too_large(path, len(content) // 4 * 3)
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OperationError(
                ErrorCode.INVALID_ARGUMENT,
                f"content is not valid base64 ({exc}); send standard base64 with padding, "
                "or use encoding 'utf-8' for text",
                path,
            ) from None
    if len(content) > MAX_WRITE_BYTES:
        raise _too_large(path, len(content))
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise OperationError(
            ErrorCode.INVALID_ARGUMENT,
            "content contains unpaired surrogate characters and cannot be encoded as UTF-8",
            path,
        ) from None


def _too_large(path: str, size: int) -> OperationError:
    return OperationError(
        ErrorCode.TOO_LARGE,
        f"content is {size} bytes; the limit is {MAX_WRITE_BYTES} bytes per write",
        path,
    )


def _open_existing_parent(ws: Workspace, parent: str, path: str, *, hint: str) -> int:
    try:
        return ws.open_dir(parent)
    except OperationError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            raise OperationError(
                ErrorCode.NOT_FOUND, f"parent directory '{parent}' of '{path}' does not exist; {hint}", path
            ) from None
        raise


def _check_replaceable(st: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise symlink_refused(path)
    if stat.S_ISDIR(st.st_mode):
        raise OperationError(ErrorCode.IS_A_DIRECTORY, f"'{path}' is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        raise OperationError(
            ErrorCode.NOT_REGULAR,
            f"'{path}' is a {describe_kind(st.st_mode)}, not a regular file, and cannot be written",
            path,
        )
    if st.st_nlink > 1:
        # A hard link makes the same inode reachable from elsewhere, possibly outside the
        # workspace; no path check can see that, so such files are never written.
        raise OperationError(
            ErrorCode.HARDLINKED,
            f"'{path}' has {st.st_nlink} hard links; files with more than one link are never written",
            path,
        )


def _write_atomically(
    dir_fd: int,
    name: str,
    path: str,
    data: bytes,
    *,
    replace: bool,
    mode: int | None,
    expect: tuple[int, int] | None = None,
) -> None:
    """Write `data` to a fresh temp file in `dir_fd`, fsync, and rename it to `name`.

    `expect` is the (st_dev, st_ino) the target must still have just before the rename, so an
    edit never overwrites a file that was replaced since it was read.
    """
    temp = f"{_TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd
        )
    except OSError as exc:
        raise from_os_error(exc, path) from None
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if expect is not None:
            current = lstat_at(dir_fd, name, path)
            if current is None or (current.st_dev, current.st_ino) != expect:
                raise OperationError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"'{path}' was replaced or removed while it was being edited; read it again and retry",
                    path,
                )
        if replace:
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            _rename_noreplace(dir_fd, temp, dir_fd, name, allow_link=True)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            if exc.errno == errno.EEXIST:
                raise OperationError(
                    ErrorCode.ALREADY_EXISTS,
                    f"'{path}' already exists; pass overwrite=true to replace it",
                    path,
                ) from None
            raise from_os_error(exc, path) from None
        raise
    # Make the rename itself durable; the data is already on disk.
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


def _rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str, *, allow_link: bool) -> None:
    """Rename that fails with EEXIST instead of replacing an existing destination."""
    try:
        syscalls.renameat2(src_dir_fd, src, dst_dir_fd, dst, syscalls.RENAME_NOREPLACE)
        return
    except OSError as exc:
        # ENOSYS: no renameat2; EINVAL: this filesystem does not support the flag.
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    if allow_link:
        # Same atomic guarantee for files: link() never replaces an existing name.
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
        os.unlink(src, dir_fd=src_dir_fd)
        return
    # Directories cannot be linked: check, then rename. The window is tiny and only lets a
    # concurrent writer inside the workspace lose its own entry; nothing can escape through it.
    if lstat_at(dst_dir_fd, dst, dst) is not None:
        raise OSError(errno.EEXIST, "destination exists", dst)
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


# --- edit -----------------------------------------------------------------------------------


def edit_file(ws: Workspace, req: EditFileRequest) -> EditFileResult:
    """Apply exact-string replacements to a UTF-8 text file, all or nothing.

    Edits apply in order, each to the result of the previous one. Each `old_text` must occur
    exactly once unless `replace_all`. Nothing is written unless every edit succeeds; `dry_run`
    writes nothing at all. The unified diff is returned in both cases.
    """
    path = normalize_path(req.path)
    fd, st = ws.open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_WRITE_BYTES:
            raise OperationError(
                ErrorCode.TOO_LARGE,
                f"'{path}' is {st.st_size} bytes; files over {MAX_WRITE_BYTES} bytes cannot be edited",
                path,
            )
        raw = f.read(MAX_WRITE_BYTES + 1)
    _check_replaceable(st, path)  # a regular file here; refuses hard-linked ones
    try:
        original = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError(
            ErrorCode.INVALID_ARGUMENT,
            f"'{path}' is not UTF-8 text; edit_file only edits text files (use write_file instead)",
            path,
        ) from None

    text = original
    replacements = 0
    for number, edit in enumerate(req.edits, start=1):
        count = text.count(edit.old_text)
        if count == 0:
            raise OperationError(
                ErrorCode.NO_MATCH,
                f"edit #{number}: old_text was not found in '{path}'"
                + (" (after applying the earlier edits)" if number > 1 else "")
                + "; copy it exactly from the file, including whitespace",
                path,
            )
        if count > 1 and not edit.replace_all:
            raise OperationError(
                ErrorCode.AMBIGUOUS_MATCH,
                f"edit #{number}: old_text occurs {count} times in '{path}'; include more surrounding "
                "text to make it unique, or set replace_all=true",
                path,
            )
        text = text.replace(edit.old_text, edit.new_text)
        replacements += count

    new_data = _encode_edited(text, path)
    diff = unified_diff(original, text, path)
    if not req.dry_run and text != original:
        dir_fd, name = ws.open_parent(path)
        try:
            _write_atomically(
                dir_fd,
                name,
                path,
                new_data,
                replace=True,
                mode=stat.S_IMODE(st.st_mode) & 0o777,
                expect=(st.st_dev, st.st_ino),
            )
        finally:
            os.close(dir_fd)
    return EditFileResult(path=path, applied=not req.dry_run, replacements=replacements, diff=diff)


def _encode_edited(text: str, path: str) -> bytes:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise OperationError(
            ErrorCode.INVALID_ARGUMENT,
            "new_text contains unpaired surrogate characters and cannot be encoded as UTF-8",
            path,
        ) from None
    if len(data) > MAX_WRITE_BYTES:
        raise OperationError(
            ErrorCode.TOO_LARGE,
            f"the edited '{path}' would be {len(data)} bytes; the limit is {MAX_WRITE_BYTES}",
            path,
        )
    return data


def unified_diff(before: str, after: str, path: str) -> str:
    """A `git diff`-style unified diff, with the "No newline at end of file" markers patch needs."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{path}",
        tofile=f"b/{path}",
    )
    out: list[str] = []
    for line in lines:
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


# --- inspect --------------------------------------------------------------------------------


def list_directory(ws: Workspace, req: ListDirectoryRequest) -> ListDirectoryResult:
    """Entries of one directory, sorted by name; symlinks are reported as such, never followed.

    `size` is given for regular files only.
    """
    path = normalize_path(req.path)
    fd = ws.open_dir(path)
    try:
        names_types = sorted(_scan(fd))
        entries = []
        for name, kind in names_types[: req.max_entries]:
            size = None
            if kind == EntryType.FILE:
                st = lstat_at(fd, name, join_path(path, name))
                if st is None:
                    continue  # removed since the scan
                size = st.st_size
            entries.append(DirEntry(name=printable(name), type=kind, size=size))
    finally:
        os.close(fd)
    return ListDirectoryResult(path=path, entries=entries, truncated=len(names_types) > req.max_entries)


def _scan(dir_fd: int) -> Iterator[tuple[str, EntryType]]:
    """(name, type) of each entry, from d_type where the filesystem provides it (no extra stat)."""
    with os.scandir(dir_fd) as it:
        for entry in it:
            try:
                if entry.is_symlink():
                    kind = EntryType.SYMLINK
                elif entry.is_dir(follow_symlinks=False):
                    kind = EntryType.DIRECTORY
                elif entry.is_file(follow_symlinks=False):
                    kind = EntryType.FILE
                else:
                    kind = EntryType.OTHER
            except OSError:  # pragma: no cover - d_type missing and the entry vanished
                continue
            yield entry.name, kind


def file_info(ws: Workspace, req: FileInfoRequest) -> FileInfoResult:
    """lstat-like information; a trailing symlink is described as a symlink, never followed."""
    path = normalize_path(req.path)
    st = ws.lstat(path)
    kind = EntryType(entry_type_of(st.st_mode))
    return FileInfoResult(
        path=path,
        type=kind,
        size=st.st_size,
        mode=f"{stat.S_IMODE(st.st_mode):04o}",
        modified=st.st_mtime,
        nlink=st.st_nlink,
        mime_type=guess_mime(path) if kind == EntryType.FILE else None,
    )


# --- create, move, delete -------------------------------------------------------------------


def create_directory(ws: Workspace, req: CreateDirectoryRequest) -> CreateDirectoryResult:
    """Create a directory (and, with `parents`, its missing parents). An existing one is fine."""
    path = normalize_path(req.path)
    if path == ROOT:
        return CreateDirectoryResult(path=path, created=False)
    try:
        st = ws.lstat(path)
    except OperationError as exc:
        if exc.code is not ErrorCode.NOT_FOUND:
            raise
    else:
        if stat.S_ISDIR(st.st_mode):
            return CreateDirectoryResult(path=path, created=False)
        if stat.S_ISLNK(st.st_mode):
            raise symlink_refused(path)
        raise OperationError(
            ErrorCode.ALREADY_EXISTS,
            f"'{path}' already exists and is a {entry_type_of(st.st_mode)}, not a directory",
            path,
        )
    if req.parents:
        fd, created = ws.makedirs(path)
        os.close(fd)
        return CreateDirectoryResult(path=path, created=created)
    parent, name = parent_of(path)
    dir_fd = _open_existing_parent(ws, parent, path, hint="pass parents=true to create it")
    try:
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    except FileExistsError:
        return CreateDirectoryResult(path=path, created=False)
    except OSError as exc:
        raise from_os_error(exc, path) from None
    finally:
        os.close(dir_fd)
    return CreateDirectoryResult(path=path, created=True)


def move_file(ws: Workspace, req: MoveFileRequest) -> MoveFileResult:
    """Rename a file or directory inside the workspace.

    Without `overwrite` an existing destination is refused atomically (renameat2
    RENAME_NOREPLACE). The destination's parent must exist. Symlinks are refused as source and
    destination.
    """
    source = normalize_path(req.source)
    destination = normalize_path(req.destination)
    for label, p in (("source", source), ("destination", destination)):
        if p == ROOT:
            raise OperationError(
                ErrorCode.INVALID_PATH, f"the {label} '.' is the workspace root, which cannot be moved", p
            )
    if source == destination:
        ws.lstat(source)  # still report a missing source
        return MoveFileResult(source=source, destination=destination)
    if destination.startswith(source + "/"):
        raise OperationError(
            ErrorCode.INVALID_ARGUMENT,
            f"cannot move '{source}' into itself ('{destination}')",
            destination,
        )
    src_fd, src_name = ws.open_parent(source)
    try:
        src_st = lstat_at(src_fd, src_name, source)
        if src_st is None:
            raise OperationError(ErrorCode.NOT_FOUND, f"source '{source}' does not exist", source)
        dst_parent, _ = parent_of(destination)
        try:
            dst_fd, dst_name = ws.open_parent(destination)
        except OperationError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                raise OperationError(
                    ErrorCode.NOT_FOUND,
                    f"destination directory '{dst_parent}' does not exist; create it first",
                    destination,
                ) from None
            raise
        try:
            _rename(src_fd, src_name, dst_fd, dst_name, req.overwrite, stat.S_ISDIR(src_st.st_mode))
        except OSError as exc:
            raise _move_error(exc, source, destination) from None
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return MoveFileResult(source=source, destination=destination)


def _rename(src_fd: int, src: str, dst_fd: int, dst: str, overwrite: bool, is_dir: bool) -> None:
    if overwrite:
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
    else:
        _rename_noreplace(src_fd, src, dst_fd, dst, allow_link=not is_dir)


def _move_error(exc: OSError, source: str, destination: str) -> OperationError:
    messages = {
        errno.EEXIST: (
            ErrorCode.ALREADY_EXISTS,
            f"destination '{destination}' already exists; pass overwrite=true to replace it",
        ),
        errno.ENOTEMPTY: (
            ErrorCode.DIRECTORY_NOT_EMPTY,
            f"destination '{destination}' is a directory that is not empty",
        ),
        errno.EISDIR: (
            ErrorCode.IS_A_DIRECTORY,
            f"destination '{destination}' is a directory and '{source}' is not",
        ),
        errno.ENOTDIR: (
            ErrorCode.NOT_A_DIRECTORY,
            f"'{source}' is a directory and destination '{destination}' is not",
        ),
        errno.EXDEV: (
            ErrorCode.INVALID_ARGUMENT,
            f"'{source}' and '{destination}' are on different filesystems; moves cannot cross mounts",
        ),
        errno.EINVAL: (ErrorCode.INVALID_ARGUMENT, f"cannot move '{source}' into itself"),
    }
    if exc.errno in messages:
        code, message = messages[exc.errno]
        return OperationError(code, message, destination)
    return from_os_error(exc, source)


def delete_file(ws: Workspace, req: DeleteFileRequest) -> DeleteFileResult:
    """Delete a file, a symlink (the link itself), an empty directory, or with `recursive` a tree.

    The tree walk opens each directory with O_NOFOLLOW relative to its parent's fd and never
    enters another mount, so a symlink or mount inside the tree cannot redirect the deletion.
    """
    path = normalize_path(req.path)
    if path == ROOT:
        raise OperationError(
            ErrorCode.INVALID_PATH,
            "refusing to delete the workspace root; delete the entries inside it instead",
            path,
        )
    dir_fd, name = ws.open_parent(path, allow_symlink=True)
    try:
        st = lstat_at(dir_fd, name, path)
        if st is None:
            raise OperationError(ErrorCode.NOT_FOUND, f"'{path}' does not exist", path)
        if not stat.S_ISDIR(st.st_mode):
            _unlink(dir_fd, name, path)
            return DeleteFileResult(path=path, deleted=1)
        if req.recursive:
            return DeleteFileResult(path=path, deleted=_remove_tree(ws, dir_fd, name, path))
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise OperationError(
                    ErrorCode.DIRECTORY_NOT_EMPTY,
                    f"directory '{path}' is not empty; pass recursive=true to delete it and its contents",
                    path,
                ) from None
            raise from_os_error(exc, path) from None
        return DeleteFileResult(path=path, deleted=1)
    finally:
        os.close(dir_fd)


def _unlink(dir_fd: int, name: str, path: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        raise from_os_error(exc, path) from None


def _remove_tree(ws: Workspace, parent_fd: int, name: str, path: str) -> int:
    """Remove directory `name` of `parent_fd` and everything below it; return entries removed.

    Iterative (a deep tree must not hit the recursion limit); holds one fd per level.
    """
    removed = 0
    # (dir fd, its name in its parent, its workspace path, remaining entry names)
    stack: list[tuple[int, str, str, Iterator[str]]] = []
    try:
        try:
            fd = ws.open_child_dir(parent_fd, name)
        except OSError as exc:
            raise _tree_error(exc, path) from None
        stack.append((fd, name, path, iter(os.listdir(fd))))
        while stack:
            fd, dir_name, dir_path, pending = stack[-1]
            for entry in pending:
                entry_path = join_path(dir_path, entry)
                st = lstat_at(fd, entry, entry_path)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    try:
                        child = ws.open_child_dir(fd, entry)
                    except OSError as exc:
                        raise _tree_error(exc, entry_path) from None
                    stack.append((child, entry, entry_path, iter(os.listdir(child))))
                    break
                _unlink(fd, entry, entry_path)
                removed += 1
            else:
                stack.pop()
                os.close(fd)
                container = stack[-1][0] if stack else parent_fd
                try:
                    os.rmdir(dir_name, dir_fd=container)
                except OSError as exc:
                    raise _tree_error(exc, dir_path) from None
                removed += 1
    finally:
        for fd, *_ in stack:
            close_quietly(fd)
    return removed


def _tree_error(exc: OSError, path: str) -> OperationError:
    if exc.errno == errno.EXDEV:
        return OperationError(
            ErrorCode.ESCAPE,
            f"'{path}' is a mount point; recursive delete does not cross into other filesystems",
            path,
        )
    return from_os_error(exc, path)
