"""directory_tree, find_files and grep: results, caps, and never following symlinks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from agent_runner.errors import OperationError
from agent_runner.protocol import (
    DirectoryTreeRequest,
    EntryType,
    ErrorCode,
    FindFilesRequest,
    GrepRequest,
)
from agent_runner.workspace import search
from agent_runner.workspace.paths import Workspace

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def project(root: Path, outside: Path) -> Path:
    """A small source tree with a symlink escape, a FIFO and a binary file in it."""
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("import os\nprint('hello')\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'hello world'\n")
    (root / "src" / "pkg" / "notes.txt").write_text("TODO: hello\n")
    (root / "docs").mkdir()
    (root / "docs" / "readme.md").write_text("# Hello\nhello again\n")
    (root / "bin.dat").write_bytes(b"hello\x00binary")
    (root / "escape").symlink_to(outside)
    (root / "file_link.py").symlink_to(outside / "secret.txt")
    os.mkfifo(root / "pipe")
    return root


def names(nodes) -> list[str]:  # noqa: ANN001
    return [n.name for n in nodes]


# --- directory_tree -------------------------------------------------------------------------


def test_tree_structure(ws: Workspace, project: Path) -> None:
    result = search.directory_tree(ws, DirectoryTreeRequest())
    assert names(result.tree) == ["bin.dat", "docs", "escape", "file_link.py", "pipe", "src"]
    by_name = {n.name: n for n in result.tree}
    assert by_name["escape"].type == EntryType.SYMLINK and by_name["escape"].children is None
    assert by_name["pipe"].type == EntryType.OTHER
    src = by_name["src"]
    assert names(src.children) == ["main.py", "pkg"]
    assert names(src.children[1].children) == ["notes.txt", "util.py"]
    assert result.entries == 11 and not result.truncated


def test_tree_depth_and_entry_caps(ws: Workspace, project: Path) -> None:
    shallow = search.directory_tree(ws, DirectoryTreeRequest(max_depth=1))
    assert all(n.children is None for n in shallow.tree)
    assert shallow.entries == 6 and not shallow.truncated
    capped = search.directory_tree(ws, DirectoryTreeRequest(max_entries=7))
    assert capped.truncated and capped.entries == 7
    # Breadth first: every top-level entry is present; directories the cap cut are unlisted.
    assert names(capped.tree) == ["bin.dat", "docs", "escape", "file_link.py", "pipe", "src"]
    by_name = {n.name: n for n in capped.tree}
    assert names(by_name["docs"].children) == ["readme.md"]
    assert by_name["src"].children is None
    top_only = search.directory_tree(ws, DirectoryTreeRequest(max_entries=6))
    assert top_only.truncated and all(n.children is None for n in top_only.tree)
    exact = search.directory_tree(ws, DirectoryTreeRequest(max_entries=11))
    assert exact.entries == 11 and not exact.truncated


def test_tree_empty_directory_is_an_empty_list(ws: Workspace, root: Path) -> None:
    (root / "empty").mkdir()
    (result,) = search.directory_tree(ws, DirectoryTreeRequest(max_entries=1)).tree
    assert result.children == []


def test_tree_of_subdirectory_and_refusals(ws: Workspace, project: Path) -> None:
    result = search.directory_tree(ws, DirectoryTreeRequest(path="src/pkg"))
    assert result.path == "src/pkg" and names(result.tree) == ["notes.txt", "util.py"]
    for path, code in [
        ("escape", ErrorCode.SYMLINK),
        ("src/main.py", ErrorCode.NOT_A_DIRECTORY),
        ("..", ErrorCode.INVALID_PATH),
    ]:
        with pytest.raises(OperationError) as excinfo:
            search.directory_tree(ws, DirectoryTreeRequest(path=path))
        assert excinfo.value.code is code


def test_tree_unlistable_subdirectory_is_left_unexpanded(
    ws: Workspace, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = search._scan_sorted

    def flaky(workspace: Workspace, directory: str):  # noqa: ANN202
        return None if directory == "src" else real(workspace, directory)

    monkeypatch.setattr(search, "_scan_sorted", flaky)
    result = search.directory_tree(ws, DirectoryTreeRequest())
    src = next(n for n in result.tree if n.name == "src")
    assert src.children is None
    monkeypatch.setattr(search, "_scan_sorted", lambda workspace, directory: None)
    with pytest.raises(OperationError) as excinfo:
        search.directory_tree(ws, DirectoryTreeRequest())
    assert excinfo.value.code is ErrorCode.NOT_FOUND


def test_tree_deadline(ws: Workspace, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "WALK_SECONDS", -1.0)
    result = search.directory_tree(ws, DirectoryTreeRequest())
    assert result.truncated and result.entries == 0


def test_scan_skips_entries_that_vanish(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "a").write_text("x")
    (root / "b").write_text("x")

    class Entry:
        def __init__(self, name: str) -> None:
            self.name = name

        def stat(self, follow_symlinks: bool = True) -> os.stat_result:
            if self.name == "a":
                raise FileNotFoundError(self.name)
            return os.stat(root / self.name, follow_symlinks=False)

    class Scanner:
        def __init__(self, fd: int) -> None:
            pass

        def __enter__(self):  # noqa: ANN204
            return iter([Entry("a"), Entry("b")])

        def __exit__(self, *args: object) -> None:
            return None

    monkeypatch.setattr(search.os, "scandir", Scanner)
    assert search._scan_sorted(ws, ".") == [("b", EntryType.FILE)]

    def broken(fd: int) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(search.os, "scandir", broken)
    assert search._scan_sorted(ws, ".") is None
    assert search._scan_sorted(ws, "missing") is None


# --- find_files -----------------------------------------------------------------------------


def test_find_by_name(ws: Workspace, project: Path) -> None:
    result = search.find_files(ws, FindFilesRequest(pattern="*.py"))
    # file_link.py is a symlink: never returned, never followed.
    assert result.matches == ["src/main.py", "src/pkg/util.py"] and not result.truncated
    assert search.find_files(ws, FindFilesRequest(pattern="*.PY")).matches == []
    sub = search.find_files(ws, FindFilesRequest(path="src/pkg", pattern="*"))
    assert sub.matches == ["src/pkg/notes.txt", "src/pkg/util.py"]


def test_find_directories_and_path_globs(ws: Workspace, project: Path) -> None:
    dirs = search.find_files(ws, FindFilesRequest(pattern="p*", include_directories=True))
    assert dirs.matches == ["src/pkg"]
    assert search.find_files(ws, FindFilesRequest(pattern="p*")).matches == []
    by_path = search.find_files(ws, FindFilesRequest(path="src", pattern="pkg/*.py"))
    assert by_path.matches == ["src/pkg/util.py"]


def test_find_caps(ws: Workspace, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capped = search.find_files(ws, FindFilesRequest(pattern="*", max_results=2))
    assert capped.truncated and len(capped.matches) == 2
    monkeypatch.setattr(search, "MAX_WALK_ENTRIES", 3)
    walked = search.find_files(ws, FindFilesRequest(pattern="*"))
    assert walked.truncated


def test_find_refusals(ws: Workspace, project: Path) -> None:
    for path, code in [
        ("escape", ErrorCode.SYMLINK),
        ("/", ErrorCode.INVALID_PATH),
        ("nope", ErrorCode.NOT_FOUND),
    ]:
        with pytest.raises(OperationError) as excinfo:
            search.find_files(ws, FindFilesRequest(path=path, pattern="*"))
        assert excinfo.value.code is code


def test_walk_skips_directory_swapped_for_symlink(
    ws: Workspace, root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "d").mkdir()
    (root / "d" / "inner.txt").write_text("x")
    real = search._scan_sorted

    def swap_then_scan(workspace: Workspace, directory: str):  # noqa: ANN202
        if directory == "d":
            os.rename(root / "d", root / "d.old")
            os.symlink(outside, root / "d")
        return real(workspace, directory)

    monkeypatch.setattr(search, "_scan_sorted", swap_then_scan)
    result = search.find_files(ws, FindFilesRequest(pattern="*"))
    assert result.matches == []  # d was listed as a directory, then refused when entered


# --- grep -----------------------------------------------------------------------------------


def test_grep_basic(ws: Workspace, project: Path) -> None:
    result = search.grep(ws, GrepRequest(pattern="hello"))
    found = [(m.path, m.line, m.text) for m in result.matches]
    assert found == [
        ("docs/readme.md", 2, "hello again"),
        ("src/main.py", 2, "print('hello')"),
        ("src/pkg/notes.txt", 1, "TODO: hello"),
        ("src/pkg/util.py", 2, "    return 'hello world'"),
    ]
    assert result.binary_files_skipped == 1  # bin.dat
    assert result.files_scanned == 4
    assert not result.truncated and result.truncated_reason is None


def test_grep_options(ws: Workspace, project: Path) -> None:
    ci = search.grep(ws, GrepRequest(pattern="^# hello", case_insensitive=True))
    assert [(m.path, m.line) for m in ci.matches] == [("docs/readme.md", 1)]
    glob = search.grep(ws, GrepRequest(pattern="hello", glob="*.py"))
    assert {m.path for m in glob.matches} == {"src/main.py", "src/pkg/util.py"}
    single = search.grep(ws, GrepRequest(pattern="hello", path="src/main.py"))
    assert [(m.path, m.line) for m in single.matches] == [("src/main.py", 2)]
    sub = search.grep(ws, GrepRequest(pattern="hello", path="src/pkg"))
    assert {m.path for m in sub.matches} == {"src/pkg/util.py", "src/pkg/notes.txt"}


def test_grep_never_reads_through_symlinks(ws: Workspace, project: Path) -> None:
    result = search.grep(ws, GrepRequest(pattern="SECRET"))
    assert result.matches == []
    with pytest.raises(OperationError) as excinfo:
        search.grep(ws, GrepRequest(pattern="SECRET", path="escape"))
    assert excinfo.value.code is ErrorCode.SYMLINK
    with pytest.raises(OperationError) as excinfo:
        search.grep(ws, GrepRequest(pattern="SECRET", path="file_link.py"))
    assert excinfo.value.code is ErrorCode.SYMLINK


@pytest.mark.timeout(5)
def test_grep_fifo_path_does_not_hang(ws: Workspace, project: Path) -> None:
    with pytest.raises(OperationError) as excinfo:
        search.grep(ws, GrepRequest(pattern="x", path="pipe"))
    assert excinfo.value.code is ErrorCode.NOT_REGULAR


def test_grep_invalid_regex(ws: Workspace, project: Path) -> None:
    with pytest.raises(OperationError) as excinfo:
        search.grep(ws, GrepRequest(pattern="(unclosed"))
    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert "invalid regular expression '(unclosed'" in excinfo.value.message
    assert "missing )" in excinfo.value.message


def test_grep_max_matches(ws: Workspace, root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * 50)
    result = search.grep(ws, GrepRequest(pattern="hit", max_matches=10))
    assert len(result.matches) == 10 and result.truncated and result.truncated_reason == "max_matches"
    exact = search.grep(ws, GrepRequest(pattern="hit", max_matches=50))
    assert len(exact.matches) == 50 and not exact.truncated


def test_grep_max_bytes(ws: Workspace, root: Path) -> None:
    (root / "many.txt").write_text("0123456789\n" * 50)
    result = search.grep(ws, GrepRequest(pattern="0", max_bytes=35))
    assert len(result.matches) == 3 and result.truncated_reason == "max_bytes"


def test_grep_long_lines_are_cut(ws: Workspace, root: Path) -> None:
    (root / "min.js").write_text("x" * 5000 + "needle\n")
    (match,) = search.grep(ws, GrepRequest(pattern="needle")).matches
    assert len(match.text) == search.MAX_MATCH_CHARS + 1 and match.text.endswith("…")


def test_grep_timeout(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "a.txt").write_text("line\n" * 1000)
    clock = iter(range(10**6))  # one "second" per clock reading
    monkeypatch.setattr(search, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    result = search.grep(ws, GrepRequest(pattern="line", timeout_s=30))
    assert result.truncated and result.truncated_reason == "timeout"
    assert 0 < len(result.matches) < 1000


def test_grep_real_timeout_is_bounded(ws: Workspace, root: Path) -> None:
    for i in range(30):
        (root / f"f{i}.txt").write_text("aaaaaaaaaaaaaaaaaaaaaaaa\n" * 4000)
    started = time.monotonic()
    result = search.grep(ws, GrepRequest(pattern=r"(a|aa)+$x", timeout_s=0.2))
    assert time.monotonic() - started < 5
    assert result.truncated_reason == "timeout"


def test_grep_timeout_between_files(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        (root / f"f{i}.txt").write_text("hit\n")
    real = search._grep_file

    def slow_file(*args):  # noqa: ANN002, ANN202
        result = real(*args)
        time.sleep(0.15)
        return result

    monkeypatch.setattr(search, "_grep_file", slow_file)
    result = search.grep(ws, GrepRequest(pattern="hit", timeout_s=0.2))
    assert result.truncated_reason == "timeout" and 0 < len(result.matches) < 5


def test_grep_walk_cut_reports_timeout(ws: Workspace, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "MAX_WALK_ENTRIES", 2)
    result = search.grep(ws, GrepRequest(pattern="hello"))
    assert result.truncated and result.truncated_reason == "timeout"


def test_grep_large_file_streams(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "GREP_WHOLE_FILE_BYTES", 100)
    monkeypatch.setattr(search, "GREP_LINE_PIECE", 64)
    monkeypatch.setattr(search, "GREP_MAX_LINE_BYTES", 128)
    body = "".join(f"line {i}\n" for i in range(100)) + "y" * 1000 + "needle\n" + "last needle"
    (root / "big.log").write_text(body)
    result = search.grep(ws, GrepRequest(pattern="needle|line 42$"))
    assert [(m.line, m.text) for m in result.matches] == [(43, "line 42"), (102, "last needle")]
    # The needle past GREP_MAX_LINE_BYTES on line 101 is not searched; numbering stays exact.


def test_grep_invalid_utf8_is_replaced(ws: Workspace, root: Path) -> None:
    (root / "mixed.txt").write_bytes(b"caf\xe9 hello\r\nplain\n")
    (match,) = search.grep(ws, GrepRequest(pattern="hello")).matches
    assert match.text == "caf\ufffd hello"


def test_grep_empty_file_and_trailing_newline(ws: Workspace, root: Path) -> None:
    (root / "empty.txt").write_text("")
    (root / "one.txt").write_text("x\n")
    result = search.grep(ws, GrepRequest(pattern="^$"))
    assert result.matches == [] and result.files_scanned == 2


def test_grep_skips_file_replaced_during_walk(
    ws: Workspace, root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "a.txt").write_text("SECRET? no\n")
    real_walk_iter = search.TreeWalk.__iter__

    def swap_during_walk(self):  # noqa: ANN001, ANN202
        for item in real_walk_iter(self):
            os.remove(root / "a.txt")
            os.symlink(outside / "secret.txt", root / "a.txt")
            yield item

    monkeypatch.setattr(search.TreeWalk, "__iter__", swap_during_walk)
    result = search.grep(ws, GrepRequest(pattern="SECRET"))
    assert result.matches == [] and result.files_scanned == 0


def test_grep_catastrophic_pattern_on_one_line_is_cut_by_the_timeout(ws: Workspace, root: Path) -> None:
    # Exponential backtracking inside a single search: only a matcher timeout can stop it.
    (root / "evil.txt").write_text("a" * 40 + "\n")
    started = time.monotonic()
    result = search.grep(ws, GrepRequest(pattern=r"(a|aa)+$x", timeout_s=0.5))
    assert time.monotonic() - started < 3
    assert result.truncated_reason == "timeout" and result.matches == []
