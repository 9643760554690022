"""Workspace file tools. The runner owns the files; these tools check scopes and forward requests."""

from __future__ import annotations

from typing import Annotated, Literal

from agent_runner import protocol as p
from mcp.server import MCPServer
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from ...auth.scopes import Scope
from ...deps import Services
from ...runners.hot_reads import SharedReadFileResult
from ..answers import DerivedAnswers, SharedCallToolResult
from .calls import run_op

Path_ = Annotated[
    str,
    Field(
        min_length=1,
        max_length=p.MAX_PATH_LENGTH,
        description="Path relative to the workspace root, with '/' separators (no '..', no leading '/').",
    ),
]
Workspace = Annotated[
    str | None,
    Field(description="Workspace name within your tenant; omitted means 'default'.", max_length=63),
]

READ_ONLY = ToolAnnotations(
    readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False
)
WRITE_IDEMPOTENT = ToolAnnotations(
    readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False
)
CREATE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
MUTATE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False)

TOOL_SCOPES: dict[str, str] = {}
_read_answers = DerivedAnswers()


def _read_answer(path: str, result: p.ReadFileResult, kind: type[CallToolResult]) -> CallToolResult:
    structured = result.model_dump(mode="json")
    if result.encoding == "base64" and result.mime_type.startswith("image/") and not result.truncated:
        content = [ImageContent(type="image", data=result.content, mime_type=result.mime_type)]
    elif result.encoding == "base64":
        note = f"{path}: binary file ({result.mime_type}, {result.size} bytes); base64 data is in structuredContent.content"
        content = [TextContent(type="text", text=note)]
    else:
        text = result.content
        if result.truncated:
            text += f"\n[truncated: showing lines {result.start_line}-{result.end_line} of {result.total_lines}; use offset/limit]"
        content = [TextContent(type="text", text=text)]
    return kind(content=content, structured_content=structured)


def register(mcp: MCPServer, services: Services) -> None:
    def tool(name: str, scope: Scope, annotations: ToolAnnotations, title: str):
        TOOL_SCOPES[name] = scope.value
        return mcp.tool(name=name, title=title, annotations=annotations)

    @tool("read_file", Scope.FILES_READ, READ_ONLY, "Read file")
    async def read_file(
        path: Path_,
        offset: Annotated[
            int, Field(ge=0, description="First line to return (0-based), text files only.")
        ] = 0,
        limit: Annotated[int | None, Field(ge=1, description="Maximum number of lines to return.")] = None,
        max_bytes: Annotated[
            int,
            Field(ge=1, le=p.MAX_READ_BYTES, description="Cap on bytes returned; the result says if it cut."),
        ] = p.DEFAULT_READ_BYTES,
        workspace: Workspace = None,
    ) -> Annotated[CallToolResult, p.ReadFileResult]:
        """Read a file of the workspace. Text comes back as text (optionally a line window); images as
        image content; other binary files as base64 in the structured result."""
        request = p.ReadFileRequest(path=path, offset=offset, limit=limit, max_bytes=max_bytes)
        result: p.ReadFileResult = await run_op(
            services, "read_file", Scope.FILES_READ, workspace, "files/read", request
        )
        if type(result) is SharedReadFileResult:  # a hot read: the same answer as the last such call
            answer = _read_answers.get(result, path)  # the path as given: the binary note repeats it
            if answer is None:
                answer = _read_answer(path, result, SharedCallToolResult)
                _read_answers.put(result, path, answer)
            return answer
        return _read_answer(path, result, CallToolResult)

    @tool("write_file", Scope.FILES_WRITE, WRITE_IDEMPOTENT, "Write file")
    async def write_file(
        path: Path_,
        content: Annotated[str, Field(max_length=p.MAX_WRITE_BYTES * 2, description="New file content.")],
        encoding: Annotated[
            Literal["utf-8", "base64"], Field(description="'utf-8' text or 'base64' bytes.")
        ] = "utf-8",
        create_parents: Annotated[bool, Field(description="Create missing parent directories.")] = True,
        overwrite: Annotated[
            bool, Field(description="Replace an existing file; false fails if it exists.")
        ] = True,
        workspace: Workspace = None,
    ) -> p.WriteFileResult:
        """Create or replace a file atomically (the old file stays intact if anything fails)."""
        request = p.WriteFileRequest(
            path=path, content=content, encoding=encoding, create_parents=create_parents, overwrite=overwrite
        )
        return await run_op(services, "write_file", Scope.FILES_WRITE, workspace, "files/write", request)

    @tool("edit_file", Scope.FILES_WRITE, MUTATE, "Edit file")
    async def edit_file(
        path: Path_,
        edits: Annotated[
            list[p.Edit],
            Field(
                min_length=1,
                max_length=100,
                description="Exact-text replacements, applied in order, all or none.",
            ),
        ],
        dry_run: Annotated[bool, Field(description="Only return the unified diff; change nothing.")] = False,
        workspace: Workspace = None,
    ) -> p.EditFileResult:
        """Replace exact text in a file. Each old_text must match exactly once unless replace_all is set;
        an ambiguous or missing match changes nothing. Returns a unified diff."""
        request = p.EditFileRequest(path=path, edits=edits, dry_run=dry_run)
        return await run_op(services, "edit_file", Scope.FILES_WRITE, workspace, "files/edit", request)

    @tool("list_directory", Scope.FILES_READ, READ_ONLY, "List directory")
    async def list_directory(
        path: Annotated[
            str, Field(max_length=p.MAX_PATH_LENGTH, description="Directory; '.' is the root.")
        ] = ".",
        max_entries: Annotated[int, Field(ge=1, le=p.MAX_TREE_ENTRIES)] = 1000,
        workspace: Workspace = None,
    ) -> p.ListDirectoryResult:
        """List one directory of the workspace (names, types, sizes; symlinks are shown, never followed)."""
        request = p.ListDirectoryRequest(path=path, max_entries=max_entries)
        return await run_op(services, "list_directory", Scope.FILES_READ, workspace, "files/list", request)

    @tool("directory_tree", Scope.FILES_READ, READ_ONLY, "Directory tree")
    async def directory_tree(
        path: Annotated[
            str, Field(max_length=p.MAX_PATH_LENGTH, description="Directory; '.' is the root.")
        ] = ".",
        max_depth: Annotated[int, Field(ge=1, le=20)] = 3,
        max_entries: Annotated[int, Field(ge=1, le=p.MAX_TREE_ENTRIES)] = 1000,
        workspace: Workspace = None,
    ) -> p.DirectoryTreeResult:
        """A nested view of a directory, bounded in depth and entries."""
        request = p.DirectoryTreeRequest(path=path, max_depth=max_depth, max_entries=max_entries)
        return await run_op(services, "directory_tree", Scope.FILES_READ, workspace, "files/tree", request)

    @tool("find_files", Scope.FILES_READ, READ_ONLY, "Find files")
    async def find_files(
        pattern: Annotated[
            str, Field(min_length=1, max_length=512, description="Glob on names, e.g. '*.py'.")
        ],
        path: Annotated[
            str, Field(max_length=p.MAX_PATH_LENGTH, description="Where to search; '.' is the root.")
        ] = ".",
        max_results: Annotated[int, Field(ge=1, le=p.MAX_FIND_RESULTS)] = 1000,
        include_directories: bool = False,
        workspace: Workspace = None,
    ) -> p.FindFilesResult:
        """Find files whose name matches a glob, recursively."""
        request = p.FindFilesRequest(
            path=path, pattern=pattern, max_results=max_results, include_directories=include_directories
        )
        return await run_op(services, "find_files", Scope.FILES_READ, workspace, "files/find", request)

    @tool("grep", Scope.FILES_READ, READ_ONLY, "Search file contents")
    async def grep(
        pattern: Annotated[
            str, Field(min_length=1, max_length=1024, description="Python regular expression.")
        ],
        path: Annotated[
            str, Field(max_length=p.MAX_PATH_LENGTH, description="File or directory to search.")
        ] = ".",
        glob: Annotated[
            str | None, Field(max_length=512, description="Only files whose name matches.")
        ] = None,
        case_insensitive: bool = False,
        max_matches: Annotated[int, Field(ge=1, le=p.MAX_GREP_MATCHES)] = 500,
        workspace: Workspace = None,
    ) -> p.GrepResult:
        """Search file contents with a regular expression; binary files are skipped; results are capped."""
        request = p.GrepRequest(
            pattern=pattern, path=path, glob=glob, case_insensitive=case_insensitive, max_matches=max_matches
        )
        return await run_op(services, "grep", Scope.FILES_READ, workspace, "files/grep", request)

    @tool("file_info", Scope.FILES_READ, READ_ONLY, "File info")
    async def file_info(path: Path_, workspace: Workspace = None) -> p.FileInfoResult:
        """Type, size, permissions and modification time of a path (symlinks are described, not followed)."""
        request = p.FileInfoRequest(path=path)
        return await run_op(services, "file_info", Scope.FILES_READ, workspace, "files/info", request)

    @tool("create_directory", Scope.FILES_WRITE, CREATE, "Create directory")
    async def create_directory(
        path: Path_,
        parents: Annotated[bool, Field(description="Create missing parents too.")] = True,
        workspace: Workspace = None,
    ) -> p.CreateDirectoryResult:
        """Create a directory (succeeds if it already exists)."""
        request = p.CreateDirectoryRequest(path=path, parents=parents)
        return await run_op(
            services, "create_directory", Scope.FILES_WRITE, workspace, "files/mkdir", request
        )

    @tool("move_file", Scope.FILES_WRITE, MUTATE, "Move or rename")
    async def move_file(
        source: Path_,
        destination: Path_,
        overwrite: Annotated[bool, Field(description="Replace an existing destination.")] = False,
        workspace: Workspace = None,
    ) -> p.MoveFileResult:
        """Move or rename a file or directory inside the workspace."""
        request = p.MoveFileRequest(source=source, destination=destination, overwrite=overwrite)
        return await run_op(services, "move_file", Scope.FILES_WRITE, workspace, "files/move", request)

    @tool("delete_file", Scope.FILES_WRITE, MUTATE, "Delete")
    async def delete_file(
        path: Path_,
        recursive: Annotated[bool, Field(description="Delete a directory and everything in it.")] = False,
        workspace: Workspace = None,
    ) -> p.DeleteFileResult:
        """Delete a file, an empty directory, or (recursive) a whole tree. Symlinks are removed, not followed."""
        request = p.DeleteFileRequest(path=path, recursive=recursive)
        return await run_op(services, "delete_file", Scope.FILES_WRITE, workspace, "files/delete", request)
