"""The one exception type that runner operations raise, and its mapping to HTTP statuses.

Every failure a caller can cause (bad path, missing file, refused symlink, ...) is an
`OperationError` carrying a protocol `ErrorCode`, so the API layer never has to guess: anything
else that escapes an operation is a bug and is answered with 500 `internal`.
"""

from __future__ import annotations

import errno

from agent_runner.protocol import ErrorBody, ErrorCode

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.DIRECTORY_NOT_EMPTY: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.LIMIT_REACHED: 429,
    ErrorCode.SANDBOX_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


def status_for(code: ErrorCode) -> int:
    """HTTP status for an error code; codes not listed are the caller's fault, hence 400."""
    return HTTP_STATUS.get(code, 400)


def printable(text: str) -> str:
    """Make a str that may hold undecodable filename bytes safe to put in JSON.

    Python decodes non-UTF-8 filenames with surrogate escapes, which JSON (and pydantic) refuse;
    such bytes are shown as `\\xNN` instead. Valid UTF-8 names come back unchanged.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        # Lone surrogates outside the escape range cannot come from a filename; they come from
        # a request, and only need to be shown.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class OperationError(Exception):
    """A refused or failed operation, described well enough for a person (or a model) to act on."""

    def __init__(self, code: ErrorCode, message: str, path: str | None = None) -> None:
        message = printable(message)
        path = printable(path) if path is not None else None
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path

    @property
    def status(self) -> int:
        return status_for(self.code)

    def to_body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, path=self.path)

    def __repr__(self) -> str:
        return f"OperationError({self.code.value!r}, {self.message!r}, path={self.path!r})"


# errno -> (code, message template). `{path}` is the workspace-relative path the caller gave.
_ERRNO_MAP: dict[int, tuple[ErrorCode, str]] = {
    errno.ENOENT: (ErrorCode.NOT_FOUND, "'{path}' does not exist"),
    errno.ELOOP: (
        ErrorCode.SYMLINK,
        "'{path}' goes through a symbolic link; symlinks are never followed inside the workspace, "
        "use the real path",
    ),
    errno.EXDEV: (
        ErrorCode.ESCAPE,
        "'{path}' resolves outside the workspace (it crosses a mount point or uses a magic link)",
    ),
    errno.ENOTDIR: (ErrorCode.NOT_A_DIRECTORY, "a component of '{path}' is not a directory"),
    errno.EISDIR: (ErrorCode.IS_A_DIRECTORY, "'{path}' is a directory"),
    errno.EEXIST: (ErrorCode.ALREADY_EXISTS, "'{path}' already exists"),
    errno.ENOTEMPTY: (ErrorCode.DIRECTORY_NOT_EMPTY, "directory '{path}' is not empty"),
    errno.EACCES: (ErrorCode.PERMISSION_DENIED, "permission denied for '{path}'"),
    errno.EPERM: (ErrorCode.PERMISSION_DENIED, "operation not permitted on '{path}'"),
    errno.EROFS: (ErrorCode.PERMISSION_DENIED, "'{path}' is on a read-only filesystem"),
    errno.ETXTBSY: (ErrorCode.PERMISSION_DENIED, "'{path}' is a running executable and cannot be written"),
    errno.EBUSY: (ErrorCode.PERMISSION_DENIED, "'{path}' is busy (a mount point or in use by the system)"),
    errno.ENAMETOOLONG: (ErrorCode.INVALID_PATH, "'{path}' has a component longer than 255 bytes"),
    errno.ENXIO: (ErrorCode.NOT_REGULAR, "'{path}' is a socket or device, not a regular file"),
    errno.ENOSPC: (ErrorCode.TOO_LARGE, "no space left on the workspace filesystem while writing '{path}'"),
    errno.EDQUOT: (ErrorCode.TOO_LARGE, "disk quota exceeded while writing '{path}'"),
    errno.EFBIG: (ErrorCode.TOO_LARGE, "'{path}' would exceed the maximum file size"),
    errno.EMLINK: (ErrorCode.TOO_LARGE, "too many entries or links in the directory of '{path}'"),
    errno.EINVAL: (ErrorCode.INVALID_ARGUMENT, "invalid argument for '{path}'"),
}


def from_os_error(exc: OSError, path: str) -> OperationError:
    """Translate an OSError raised while working on `path` into a protocol error.

    Errnos without a meaning for the caller (EIO, EMFILE, ...) become `internal`: they are
    failures of this runner or its host, not of the request.
    """
    code_msg = _ERRNO_MAP.get(exc.errno or 0)
    if code_msg is None:
        reason = exc.strerror or type(exc).__name__
        return OperationError(ErrorCode.INTERNAL, f"operation on '{path}' failed: {reason}", path)
    code, template = code_msg
    return OperationError(code, template.format(path=path), path)
