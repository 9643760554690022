"""Safe resolution of workspace-relative paths.

Every file operation goes through a `Workspace`, which holds one directory fd on the workspace
root for the runner's whole life and opens everything relative to it. Two resolvers, same rules:

- `openat2`: one syscall with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
  RESOLVE_NO_XDEV. The kernel enforces the rules during the lookup itself, so there is no window
  between checking a path and opening it.
- `nofollow-walk` (kernels without openat2, or seccomp filters that hide it): open one component
  at a time with O_NOFOLLOW | O_DIRECTORY relative to the previous component's fd, and compare
  st_dev with the root to refuse mount crossings. Each step is an fd-relative open that refuses
  symlinks, so this is race-free too, only slower.

Never resolve a path to a string and open that string again (realpath-then-open): a directory
swapped for a symlink between the two steps lets the open escape the workspace.

Symlinks are refused everywhere, even ones that point inside the workspace: deciding whether a
symlink target is "inside" is exactly the check that races.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from typing import Literal

from agent_runner.errors import OperationError, from_os_error
from agent_runner.protocol import MAX_PATH_LENGTH, ErrorCode
from agent_runner.workspace import syscalls

logger = logging.getLogger(__name__)

Resolver = Literal["openat2", "nofollow-walk"]
RESOLVERS: tuple[Resolver, ...] = ("openat2", "nofollow-walk")

ROOT = "."

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears, and we
# only learn it is a FIFO after the open (fstat on the fd, so the check cannot race).
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPENAT2_RETRIES = 8
_WALK_RETRIES = 4


@functools.cache
def openat2_supported() -> bool:
    """Whether openat2 works here; probed once per process."""
    return syscalls.openat2_available()


def normalize_path(path: str) -> str:
    """Validate a workspace-relative path and return it in canonical form.

    `.` components and duplicate or trailing slashes are dropped; the workspace root is `.`.
    Raises `OperationError(invalid_path)` with a message that says how to fix the path.
    """
    if not isinstance(path, str):
        raise OperationError(ErrorCode.INVALID_PATH, "path must be a string", None)
    if path == "":
        raise OperationError(ErrorCode.INVALID_PATH, "path is empty; use '.' for the workspace root", path)
    if "\x00" in path:
        raise OperationError(
            ErrorCode.INVALID_PATH, f"path {path!r} contains a NUL byte, which no file name can hold", path
        )
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise OperationError(ErrorCode.INVALID_PATH, f"path {path!r} is not valid UTF-8 text", path) from None
    if len(encoded) > MAX_PATH_LENGTH:
        raise OperationError(
            ErrorCode.INVALID_PATH,
            f"path is {len(encoded)} bytes long; the limit is {MAX_PATH_LENGTH}",
            path[:200],
        )
    if path.startswith("/"):
        raise OperationError(
            ErrorCode.INVALID_PATH,
            f"path '{path}' is absolute; use a path relative to the workspace root",
            path,
        )
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise OperationError(
            ErrorCode.INVALID_PATH,
            f"path '{path}' contains '..'; use a path relative to the workspace root",
            path,
        )
    return "/".join(parts) if parts else ROOT


def split_path(path: str) -> list[str]:
    """Components of a normalized path; the root has none."""
    return [] if path == ROOT else path.split("/")


def join_path(parent: str, name: str) -> str:
    """Join a normalized directory path and an entry name."""
    return name if parent == ROOT else f"{parent}/{name}"


def parent_of(path: str) -> tuple[str, str]:
    """(parent, final name) of a normalized, non-root path."""
    parent, _, name = path.rpartition("/")
    return (parent or ROOT), name


def entry_type_of(mode: int) -> Literal["file", "directory", "symlink", "other"]:
    """Protocol entry type of an lstat mode."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:  # pragma: no cover - only if the fd was already closed by a bug elsewhere
        logger.warning("closing fd %d failed", fd, exc_info=True)


class Workspace:
    """The workspace root directory, held open, and every way to open something beneath it.

    All methods take normalized paths (see `normalize_path`) or normalize them themselves, and
    raise `OperationError` for anything a caller can cause. File descriptors they return belong
    to the caller, who must close them.
    """

    def __init__(self, root: str | os.PathLike[str], *, resolver: str | None = None) -> None:
        if resolver in (None, "auto"):
            chosen: Resolver = "openat2" if openat2_supported() else "nofollow-walk"
        elif resolver == "openat2":
            if not openat2_supported():
                raise RuntimeError("openat2 is not available on this kernel; use resolver 'nofollow-walk'")
            chosen = "openat2"
        elif resolver == "nofollow-walk":
            chosen = "nofollow-walk"
        else:
            raise ValueError(f"unknown resolver {resolver!r}; expected one of {', '.join(RESOLVERS)}")
        # The root itself may be reached through symlinks: it is chosen by the operator, not by
        # a request. From here on everything is relative to this fd.
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.root_dev = os.fstat(self.root_fd).st_dev
        self.root_path = os.fspath(root)
        self.resolver: Resolver = chosen

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening ------------------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """Open `path` beneath the root with `flags`, refusing symlinks and mount crossings.

        A trailing symlink is refused too, except with O_PATH | O_NOFOLLOW, which opens the link
        itself (for lstat-like inspection) and never follows it.
        """
        path = normalize_path(path)
        # openat2 is strict about flags: O_PATH allows only O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC.
        flags |= os.O_CLOEXEC if flags & os.O_PATH else os.O_CLOEXEC | os.O_NOCTTY
        try:
            if self.resolver == "openat2":
                return self._open_openat2(path, flags, mode)
            return self._open_walk(path, flags, mode)
        except OSError as exc:
            raise from_os_error(exc, path) from None

    def open_dir(self, path: str) -> int:
        """Open a directory for listing (a real fd, usable with os.scandir and as dir_fd)."""
        return self.open(path, _DIR_FLAGS)

    def open_regular(self, path: str) -> tuple[int, os.stat_result]:
        """Open a regular file for reading; refuse directories, FIFOs, devices and sockets.

        The type check is an fstat of the opened fd, so it describes exactly what will be read.
        """
        path = normalize_path(path)
        fd = self.open(path, _READ_FLAGS)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise OperationError(
                    ErrorCode.IS_A_DIRECTORY, f"'{path}' is a directory; use list_directory", path
                )
            if not stat.S_ISREG(st.st_mode):
                raise OperationError(
                    ErrorCode.NOT_REGULAR,
                    f"'{path}' is a {describe_kind(st.st_mode)}, not a regular file; "
                    "only regular files can be read",
                    path,
                )
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def lstat(self, path: str) -> os.stat_result:
        """lstat of `path`: a trailing symlink is described, never followed; earlier ones refused."""
        fd = self.open(path, os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def open_parent(self, path: str, *, allow_symlink: bool = False) -> tuple[int, str]:
        """Open the parent directory of `path`; return (dir fd, final component).

        For operations that create, rename or unlink the final component through the dir fd
        (`os.open(name, dir_fd=)`, `os.rename(src_dir_fd=, dst_dir_fd=)`, `os.unlink(dir_fd=)`),
        which never follow a symlink in the parent chain because the parent is already open.
        The final component is checked with lstat and refused if it is a symlink, unless
        `allow_symlink` (unlinking a symlink removes the link, never its target).
        """
        path = normalize_path(path)
        if path == ROOT:
            raise OperationError(
                ErrorCode.INVALID_PATH,
                "'.' is the workspace root; this operation needs a path inside it",
                path,
            )
        parent, name = parent_of(path)
        dir_fd = self.open_dir(parent)
        try:
            st = lstat_at(dir_fd, name, path)
            if st is not None and stat.S_ISLNK(st.st_mode) and not allow_symlink:
                raise symlink_refused(path)
        except BaseException:
            os.close(dir_fd)
            raise
        return dir_fd, name

    def makedirs(self, path: str) -> tuple[int, bool]:
        """Create `path` and any missing parents; return (fd of the directory, whether created).

        Each component is created with mkdir(name, dir_fd=parent) and entered with an
        O_NOFOLLOW | O_DIRECTORY open of the same name, so a component swapped for a symlink
        between the two calls is refused instead of followed.
        """
        path = normalize_path(path)
        try:
            return self.open_dir(path), False
        except OperationError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
        created = False
        current = os.dup(self.root_fd)
        try:
            done: list[str] = []
            for part in split_path(path):
                done.append(part)
                prefix = "/".join(done)
                try:
                    os.mkdir(part, 0o777, dir_fd=current)
                    created = True
                except FileExistsError:
                    created = False
                except OSError as exc:
                    raise from_os_error(exc, prefix) from None
                try:
                    child = self.open_child_dir(current, part)
                except OSError as exc:
                    raise from_os_error(exc, prefix) from None
                os.close(current)
                current = child
        except BaseException:
            os.close(current)
            raise
        return current, created

    # -- resolvers ----------------------------------------------------------------------------

    def _open_openat2(self, path: str, flags: int, mode: int) -> int:
        # Unlike open(2), openat2 rejects a mode without O_CREAT / O_TMPFILE (EINVAL).
        # (O_TMPFILE contains the O_DIRECTORY bit, hence the full-mask comparison.)
        creates = flags & os.O_CREAT or (flags & os.O_TMPFILE) == os.O_TMPFILE
        how_mode = mode if creates else 0
        for _ in range(_OPENAT2_RETRIES):
            try:
                return syscalls.openat2(self.root_fd, path, flags, how_mode, syscalls.RESOLVE_WORKSPACE)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    # The kernel saw a concurrent rename or mount during the lookup and asks
                    # for a retry rather than risk a wrong answer.
                    continue
                if exc.errno == errno.ENOSYS:
                    # A seccomp filter installed after start-up can hide openat2; the walk gives
                    # the same guarantees.
                    logger.warning("openat2 became unavailable (ENOSYS); switching to nofollow-walk")
                    self.resolver = "nofollow-walk"
                    return self._open_walk(path, flags, mode)
                raise
        raise OSError(errno.EAGAIN, "path resolution kept racing with concurrent renames", path)

    def _open_walk(self, path: str, flags: int, mode: int) -> int:
        parts = split_path(path)
        if not parts:
            return os.open(ROOT, flags, mode, dir_fd=self.root_fd)
        current = self.root_fd
        try:
            for part in parts[:-1]:
                child = self.open_child_dir(current, part)
                if current != self.root_fd:
                    os.close(current)
                current = child
            last = parts[-1]
            if flags & os.O_DIRECTORY:
                fd = _open_dir_nofollow(current, last, flags, mode)
            else:
                fd = os.open(last, flags | os.O_NOFOLLOW, mode, dir_fd=current)
            try:
                if os.fstat(fd).st_dev != self.root_dev:
                    raise OSError(errno.EXDEV, "crosses a mount point", path)
            except BaseException:
                os.close(fd)
                raise
            return fd
        finally:
            if current != self.root_fd:
                os.close(current)

    def open_child_dir(self, dir_fd: int, name: str) -> int:
        """Enter directory `name` of `dir_fd` without following a symlink or crossing a mount.

        Raises OSError (ELOOP for a symlink, EXDEV for another filesystem) for callers that
        walk trees themselves and map errors with their own path.
        """
        fd = _open_dir_nofollow(dir_fd, name, _DIR_FLAGS, 0)
        if os.fstat(fd).st_dev != self.root_dev:
            os.close(fd)
            raise OSError(errno.EXDEV, "crosses a mount point", name)
        return fd


def symlink_refused(path: str) -> OperationError:
    """The error for a path whose final component is a symlink."""
    return OperationError(
        ErrorCode.SYMLINK,
        f"'{path}' is a symbolic link; symlinks are never followed inside the workspace",
        path,
    )


def lstat_at(dir_fd: int, name: str, path: str) -> os.stat_result | None:
    """lstat of `name` in `dir_fd`, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise from_os_error(exc, path) from None


def _open_dir_nofollow(dir_fd: int, name: str, flags: int, mode: int) -> int:
    """open(name, O_DIRECTORY | O_NOFOLLOW) that reports a symlink as ELOOP.

    The kernel answers ENOTDIR for a symlink under O_DIRECTORY | O_NOFOLLOW, so the entry is
    looked at again to say what it was. If it is a directory by then, it was swapped while we
    opened it: try again a few times rather than report a misleading error.
    """
    for _ in range(_WALK_RETRIES):
        try:
            return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        except NotADirectoryError:
            try:
                now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except OSError:
                raise OSError(errno.ENOTDIR, "not a directory", name) from None
            if stat.S_ISLNK(now):
                raise OSError(errno.ELOOP, "symbolic link refused", name) from None
            if not stat.S_ISDIR(now):
                raise
    raise OSError(errno.ENOTDIR, "kept changing while being opened", name)


def describe_kind(mode: int) -> str:
    """Human name of a non-regular file type, for error messages."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "special file"
