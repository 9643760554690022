"""Wire models of the runner protocol: HTTP+JSON, spoken by mcp-api to one agent-runner.

Locally the runner listens on a Unix socket; on Kubernetes the same API is served on the pod IP.
Every request carries the per-runner token in the `Authorization: Bearer` header. Every route is
`POST /v1/<op>` with a JSON body (one of the `*Request` models) and answers 200 with the matching
`*Result`, or a 4xx with `ErrorBody`. Paths are always relative to the workspace root and use `/`.

These models are the single source of the contract; mcp-api's tool schemas are derived from them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROTOCOL_VERSION = "1"
TOKEN_HEADER = "authorization"  # noqa: S105 - a header name, not a secret

# Caps shared by runner and mcp-api: the runner enforces them, mcp-api advertises them in schemas.
MAX_READ_BYTES = 1024 * 1024
DEFAULT_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 10 * 1024 * 1024
MAX_PATH_LENGTH = 4096
MAX_TREE_ENTRIES = 5000
MAX_FIND_RESULTS = 5000
MAX_GREP_MATCHES = 5000
MAX_GREP_BYTES = 1024 * 1024
MAX_GREP_SECONDS = 30.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorCode(StrEnum):
    INVALID_PATH = "invalid_path"  # absolute, `..`, NUL, empty, too long
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    IS_A_DIRECTORY = "is_a_directory"
    NOT_A_DIRECTORY = "not_a_directory"
    NOT_REGULAR = "not_regular_file"  # FIFO, device, socket
    SYMLINK = "symlink_refused"  # a symlink anywhere in the path
    ESCAPE = "outside_workspace"  # resolution left the workspace (mount crossing, magic link)
    HARDLINKED = "hardlinked_file"  # st_nlink > 1 on a write target
    TOO_LARGE = "too_large"
    DIRECTORY_NOT_EMPTY = "directory_not_empty"
    NO_MATCH = "no_match"
    AMBIGUOUS_MATCH = "ambiguous_match"
    INVALID_ARGUMENT = "invalid_argument"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHORIZED = "unauthorized"
    TIMEOUT = "timeout"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"  # the machine cannot confine commands as required
    LIMIT_REACHED = "limit_reached"  # e.g. too many background jobs
    INTERNAL = "internal"


class ErrorBody(_Model):
    code: ErrorCode
    message: str
    path: str | None = None


class ErrorResponse(_Model):
    error: ErrorBody


class EntryType(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


# --- health ---------------------------------------------------------------------------------


class HealthResult(_Model):
    status: Literal["ok"] = "ok"
    protocol_version: str = PROTOCOL_VERSION
    runner_version: str
    workspace_id: str
    pid: int
    resolver: Literal["openat2", "nofollow-walk"]


# --- files ----------------------------------------------------------------------------------


class ReadFileRequest(_Model):
    path: str
    offset: int = Field(0, ge=0, description="First line to return, 0-based (text files).")
    limit: int | None = Field(None, ge=1, description="Maximum number of lines to return (text files).")
    max_bytes: int = Field(DEFAULT_READ_BYTES, ge=1, le=MAX_READ_BYTES)


class ReadFileResult(_Model):
    path: str
    size: int
    mime_type: str
    encoding: Literal["utf-8", "base64"]
    content: str
    is_binary: bool
    truncated: bool
    start_line: int | None = None
    end_line: int | None = None  # exclusive
    total_lines: int | None = None


class WriteFileRequest(_Model):
    path: str
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    create_parents: bool = True
    overwrite: bool = True


class WriteFileResult(_Model):
    path: str
    bytes_written: int
    created: bool


class Edit(_Model):
    old_text: str = Field(min_length=1)
    new_text: str
    replace_all: bool = False


class EditFileRequest(_Model):
    path: str
    edits: list[Edit] = Field(min_length=1, max_length=100)
    dry_run: bool = False


class EditFileResult(_Model):
    path: str
    applied: bool
    replacements: int
    diff: str


class ListDirectoryRequest(_Model):
    path: str = "."
    max_entries: int = Field(1000, ge=1, le=MAX_TREE_ENTRIES)


class DirEntry(_Model):
    name: str
    type: EntryType
    size: int | None = None


class ListDirectoryResult(_Model):
    path: str
    entries: list[DirEntry]
    truncated: bool


class DirectoryTreeRequest(_Model):
    path: str = "."
    max_depth: int = Field(3, ge=1, le=20)
    max_entries: int = Field(1000, ge=1, le=MAX_TREE_ENTRIES)


class TreeNode(_Model):
    name: str
    type: EntryType
    children: list[TreeNode] | None = None


class DirectoryTreeResult(_Model):
    path: str
    tree: list[TreeNode]
    entries: int
    truncated: bool


class FindFilesRequest(_Model):
    path: str = "."
    pattern: str = Field(min_length=1, max_length=512, description="Glob on file names, e.g. '*.py'.")
    max_results: int = Field(1000, ge=1, le=MAX_FIND_RESULTS)
    include_directories: bool = False


class FindFilesResult(_Model):
    path: str
    matches: list[str]
    truncated: bool


class GrepRequest(_Model):
    pattern: str = Field(min_length=1, max_length=1024, description="Python regular expression.")
    path: str = "."
    glob: str | None = Field(None, max_length=512, description="Only search files whose name matches.")
    case_insensitive: bool = False
    max_matches: int = Field(500, ge=1, le=MAX_GREP_MATCHES)
    max_bytes: int = Field(256 * 1024, ge=1, le=MAX_GREP_BYTES, description="Cap on returned line text.")
    timeout_s: float = Field(10.0, gt=0, le=MAX_GREP_SECONDS)


class GrepMatch(_Model):
    path: str
    line: int  # 1-based
    text: str


class GrepResult(_Model):
    matches: list[GrepMatch]
    files_scanned: int
    binary_files_skipped: int
    truncated: bool
    truncated_reason: Literal["max_matches", "max_bytes", "timeout"] | None = None


class FileInfoRequest(_Model):
    path: str


class FileInfoResult(_Model):
    path: str
    type: EntryType
    size: int
    mode: str  # octal permission bits, e.g. "0644"
    modified: float  # unix seconds
    nlink: int
    mime_type: str | None = None


class CreateDirectoryRequest(_Model):
    path: str
    parents: bool = True


class CreateDirectoryResult(_Model):
    path: str
    created: bool


class MoveFileRequest(_Model):
    source: str
    destination: str
    overwrite: bool = False


class MoveFileResult(_Model):
    source: str
    destination: str


class DeleteFileRequest(_Model):
    path: str
    recursive: bool = False


class DeleteFileResult(_Model):
    path: str
    deleted: int  # entries removed


# --- commands -------------------------------------------------------------------------------

MAX_SHELL_CHARS = 128 * 1024
MAX_STDIN_CHARS = 1024 * 1024


class RunCommandRequest(_Model):
    argv: list[str] | None = Field(
        None, min_length=1, max_length=16384, description="Program and arguments, run without a shell."
    )
    shell: str | None = Field(
        None, min_length=1, max_length=MAX_SHELL_CHARS, description="A command line for /bin/sh -c."
    )
    cwd: str = Field(".", max_length=MAX_PATH_LENGTH, description="Working directory inside the workspace.")
    stdin: str | None = Field(None, max_length=MAX_STDIN_CHARS, description="Text fed to standard input.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables; only allowlisted names are accepted."
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Wall-clock limit; default and maximum come from the sandbox policy.",
    )
    background: bool = Field(False, description="Start as a job and return its id at once.")

    @model_validator(mode="after")
    def _one_command(self) -> RunCommandRequest:
        if (self.argv is None) == (self.shell is None):
            raise ValueError("give exactly one of argv (a list of strings) or shell (a command line)")
        return self


class CommandOutcome(_Model):
    exit_code: int | None = Field(description="Exit status; null when a signal ended the command.")
    signal: str | None = Field(description="Signal that ended the command, e.g. 'SIGKILL'.")
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    limits_hit: list[str] = Field(
        description="Limits that stopped or cut the command: timeout, cpu, memory, output, file_size, processes."
    )
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    cpu_s: float = 0.0


class RunCommandResult(_Model):
    status: Literal["finished", "started"]
    job_id: str | None = None
    result: CommandOutcome | None = None


class JobOutputRequest(_Model):
    job_id: str = Field(min_length=1, max_length=64)
    since_offset: int = Field(0, ge=0, description="Byte offset returned by the previous call.")


class JobOutputResult(_Model):
    job_id: str
    output: str = Field(description="stdout and stderr, interleaved as they arrived, since since_offset.")
    next_offset: int
    dropped_bytes: int = Field(0, description="Output that scrolled out of the job's buffer unread.")
    finished: bool
    result: CommandOutcome | None = None


class JobKillRequest(_Model):
    job_id: str = Field(min_length=1, max_length=64)


class JobKillResult(_Model):
    job_id: str
    killed: bool = Field(description="False when the job had already finished.")
    result: CommandOutcome | None = None


class SandboxStatusRequest(_Model):
    pass


class SandboxStatusResult(_Model):
    controls: dict[str, str] = Field(description="Each control and its state here, e.g. landlock=abi7.")
    minimum_ok: bool = Field(description="Landlock and seccomp, or namespaces, are in force.")
    unconfined: bool = Field(description="The operator's override to run without the minimum is on.")


# Route table: operation name -> (request model, result model). The runner serves POST /v1/<op>.
OPERATIONS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "files/read": (ReadFileRequest, ReadFileResult),
    "files/write": (WriteFileRequest, WriteFileResult),
    "files/edit": (EditFileRequest, EditFileResult),
    "files/list": (ListDirectoryRequest, ListDirectoryResult),
    "files/tree": (DirectoryTreeRequest, DirectoryTreeResult),
    "files/find": (FindFilesRequest, FindFilesResult),
    "files/grep": (GrepRequest, GrepResult),
    "files/info": (FileInfoRequest, FileInfoResult),
    "files/mkdir": (CreateDirectoryRequest, CreateDirectoryResult),
    "files/move": (MoveFileRequest, MoveFileResult),
    "files/delete": (DeleteFileRequest, DeleteFileResult),
}
# Commands: served by the runner's command service (async, sandboxed) rather than the file handlers.
COMMAND_OPERATIONS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "exec/run": (RunCommandRequest, RunCommandResult),
    "exec/job_output": (JobOutputRequest, JobOutputResult),
    "exec/job_kill": (JobKillRequest, JobKillResult),
    "sandbox/status": (SandboxStatusRequest, SandboxStatusResult),
}
ALL_OPERATIONS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {**OPERATIONS, **COMMAND_OPERATIONS}
