"""File operations: semantics, and the controls (symlinks, FIFOs, hard links, atomicity)."""

from __future__ import annotations

import base64
import errno
import os
import stat
from pathlib import Path

import pytest
from agent_runner.errors import OperationError
from agent_runner.protocol import (
    MAX_WRITE_BYTES,
    CreateDirectoryRequest,
    DeleteFileRequest,
    Edit,
    EditFileRequest,
    EntryType,
    ErrorCode,
    FileInfoRequest,
    ListDirectoryRequest,
    MoveFileRequest,
    ReadFileRequest,
    WriteFileRequest,
)
from agent_runner.workspace import files, syscalls
from agent_runner.workspace.paths import Workspace

pytestmark = pytest.mark.timeout(30)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def fails(code: ErrorCode, fn, *args) -> OperationError:  # noqa: ANN001, ANN002
    with pytest.raises(OperationError) as excinfo:
        fn(*args)
    assert excinfo.value.code is code, excinfo.value.message
    return excinfo.value


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.rglob(".agent-runner-*")]


# --- read_file ------------------------------------------------------------------------------


def test_read_text_whole(ws: Workspace, root: Path) -> None:
    (root / "a.py").write_text("one\ntwo\nthree\n")
    result = files.read_file(ws, ReadFileRequest(path="a.py"))
    assert result.content == "one\ntwo\nthree\n"
    assert result.encoding == "utf-8" and not result.is_binary and not result.truncated
    assert (result.start_line, result.end_line, result.total_lines) == (0, 3, 3)
    assert result.mime_type == "text/x-python"
    assert result.size == 14


def test_read_text_window(ws: Workspace, root: Path) -> None:
    (root / "lines.txt").write_text("".join(f"line {i}\n" for i in range(10)))
    result = files.read_file(ws, ReadFileRequest(path="lines.txt", offset=3, limit=2))
    assert result.content == "line 3\nline 4\n"
    assert (result.start_line, result.end_line, result.total_lines) == (3, 5, 10)
    assert not result.truncated
    past = files.read_file(ws, ReadFileRequest(path="lines.txt", offset=50))
    assert past.content == "" and past.end_line == 50 and past.total_lines == 10


def test_read_without_trailing_newline_and_empty(ws: Workspace, root: Path) -> None:
    (root / "n.txt").write_text("a\nb")
    result = files.read_file(ws, ReadFileRequest(path="n.txt"))
    assert result.content == "a\nb" and result.total_lines == 2 and result.end_line == 2
    (root / "empty.txt").write_text("")
    result = files.read_file(ws, ReadFileRequest(path="empty.txt"))
    assert result.content == "" and result.total_lines == 0 and not result.is_binary
    assert result.mime_type == "text/plain"


def test_read_byte_cap_keeps_whole_lines(ws: Workspace, root: Path) -> None:
    (root / "t.txt").write_text("aaaa\nbbbb\ncccc\n")
    result = files.read_file(ws, ReadFileRequest(path="t.txt", max_bytes=12))
    assert result.content == "aaaa\nbbbb\n"
    assert result.truncated and result.end_line == 2 and result.total_lines == 3


def test_read_byte_cap_cuts_a_long_first_line_at_a_character_boundary(ws: Workspace, root: Path) -> None:
    (root / "long.txt").write_text("é" * 100 + "\nnext\n")
    result = files.read_file(ws, ReadFileRequest(path="long.txt", max_bytes=11))
    assert result.content == "é" * 5  # 10 bytes: the 11th would split a character
    assert result.truncated and result.end_line == 1 and result.total_lines == 2


def test_read_huge_single_line_streams(ws: Workspace, root: Path) -> None:
    (root / "big.txt").write_bytes(b"x" * (3 * 1024 * 1024))
    result = files.read_file(ws, ReadFileRequest(path="big.txt", max_bytes=100))
    assert result.content == "x" * 100 and result.truncated and result.total_lines == 1


def test_read_total_lines_unknown_past_scan_limit(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "LINE_COUNT_SCAN_LIMIT", 1000)
    (root / "many.txt").write_text("line\n" * 2000)
    result = files.read_file(ws, ReadFileRequest(path="many.txt", limit=1))
    assert result.content == "line\n" and result.total_lines is None
    small = files.read_file(ws, ReadFileRequest(path="many.txt", offset=1, limit=1, max_bytes=3))
    assert small.truncated and small.content == "lin"


def test_read_binary_nul_byte(ws: Workspace, root: Path) -> None:
    (root / "img.png").write_bytes(PNG)
    result = files.read_file(ws, ReadFileRequest(path="img.png"))
    assert result.is_binary and result.encoding == "base64"
    assert base64.b64decode(result.content) == PNG
    assert result.mime_type == "image/png" and not result.truncated
    assert result.start_line is None and result.total_lines is None
    capped = files.read_file(ws, ReadFileRequest(path="img.png", max_bytes=10))
    assert base64.b64decode(capped.content) == PNG[:10] and capped.truncated


def test_read_invalid_utf8_is_binary(ws: Workspace, root: Path) -> None:
    (root / "latin1.dat").write_bytes("café".encode("latin-1"))
    result = files.read_file(ws, ReadFileRequest(path="latin1.dat"))
    assert result.is_binary and result.mime_type == "application/octet-stream"
    # Invalid UTF-8 after the sniffed 8 KiB is caught when the window is decoded.
    (root / "late.txt").write_bytes(b"a" * 9000 + b"\n\xff\xfe\n")
    late = files.read_file(ws, ReadFileRequest(path="late.txt"))
    assert late.is_binary


def test_read_utf8_split_at_sniff_boundary_is_text(ws: Workspace, root: Path) -> None:
    data = ("a" * (files.SNIFF_BYTES - 1) + "é\n").encode()
    (root / "edge.txt").write_bytes(data)
    assert not files.read_file(ws, ReadFileRequest(path="edge.txt")).is_binary


def test_read_svg_keeps_image_mime_as_text(ws: Workspace, root: Path) -> None:
    (root / "logo.svg").write_text("<svg/>")
    result = files.read_file(ws, ReadFileRequest(path="logo.svg"))
    assert result.mime_type == "image/svg+xml" and not result.is_binary


def test_read_refusals(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "dir").mkdir()
    (root / "link").symlink_to(outside / "secret.txt")
    os.mkfifo(root / "fifo")
    fails(ErrorCode.IS_A_DIRECTORY, files.read_file, ws, ReadFileRequest(path="dir"))
    fails(ErrorCode.SYMLINK, files.read_file, ws, ReadFileRequest(path="link"))
    fails(ErrorCode.NOT_REGULAR, files.read_file, ws, ReadFileRequest(path="fifo"))
    fails(ErrorCode.NOT_FOUND, files.read_file, ws, ReadFileRequest(path="nope"))
    fails(ErrorCode.INVALID_PATH, files.read_file, ws, ReadFileRequest(path="../outside/secret.txt"))


def test_cut_utf8() -> None:
    assert files._cut_utf8(b"abc", 5) == b"abc"
    assert files._cut_utf8("aé".encode(), 2) == b"a"
    assert files._cut_utf8("a😀".encode(), 4) == b"a"


# --- write_file -----------------------------------------------------------------------------


def test_write_creates_with_parents(ws: Workspace, root: Path) -> None:
    result = files.write_file(ws, WriteFileRequest(path="new/dir/f.txt", content="hello"))
    assert result.created and result.bytes_written == 5 and result.path == "new/dir/f.txt"
    assert (root / "new/dir/f.txt").read_text() == "hello"
    assert no_temp_files(root)


def test_write_replaces_and_keeps_mode(ws: Workspace, root: Path) -> None:
    target = root / "run.sh"
    target.write_text("old")
    target.chmod(0o750)
    result = files.write_file(ws, WriteFileRequest(path="run.sh", content="new"))
    assert not result.created
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_write_base64(ws: Workspace, root: Path) -> None:
    encoded = base64.b64encode(PNG).decode()
    result = files.write_file(ws, WriteFileRequest(path="img.png", content=encoded, encoding="base64"))
    assert result.bytes_written == len(PNG)
    assert (root / "img.png").read_bytes() == PNG


def test_write_without_create_parents(ws: Workspace, root: Path) -> None:
    err = fails(
        ErrorCode.NOT_FOUND,
        files.write_file,
        ws,
        WriteFileRequest(path="missing/f.txt", content="x", create_parents=False),
    )
    assert "parent directory 'missing'" in err.message and "create_parents=true" in err.message
    (root / "f").write_text("x")
    fails(
        ErrorCode.NOT_A_DIRECTORY,
        files.write_file,
        ws,
        WriteFileRequest(path="f/g", content="x", create_parents=False),
    )


def test_write_overwrite_false(ws: Workspace, root: Path) -> None:
    (root / "keep.txt").write_text("original")
    err = fails(
        ErrorCode.ALREADY_EXISTS,
        files.write_file,
        ws,
        WriteFileRequest(path="keep.txt", content="x", overwrite=False),
    )
    assert "overwrite=true" in err.message
    assert (root / "keep.txt").read_text() == "original"
    result = files.write_file(ws, WriteFileRequest(path="fresh.txt", content="x", overwrite=False))
    assert result.created and (root / "fresh.txt").read_text() == "x"
    assert no_temp_files(root)


def test_write_overwrite_false_race_is_atomic(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file appearing between the existence check and the rename is not replaced."""
    real_fsync = os.fsync

    def fsync_then_create(fd: int) -> None:
        real_fsync(fd)
        if not (root / "late.txt").exists():
            (root / "late.txt").write_text("theirs")

    monkeypatch.setattr(os, "fsync", fsync_then_create)
    fails(
        ErrorCode.ALREADY_EXISTS,
        files.write_file,
        ws,
        WriteFileRequest(path="late.txt", content="mine", overwrite=False),
    )
    assert (root / "late.txt").read_text() == "theirs"
    assert no_temp_files(root)


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL])
def test_write_noreplace_fallback_uses_link(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    def unsupported(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(syscalls, "renameat2", unsupported)
    files.write_file(ws, WriteFileRequest(path="a.txt", content="one", overwrite=False))
    assert (root / "a.txt").read_text() == "one"
    fails(
        ErrorCode.ALREADY_EXISTS,
        files.write_file,
        ws,
        WriteFileRequest(path="a.txt", content="two", overwrite=False),
    )
    assert (root / "a.txt").read_text() == "one"
    assert (root / "a.txt").stat().st_nlink == 1
    assert no_temp_files(root)


def test_write_renameat2_other_error_propagates(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(syscalls, "renameat2", denied)
    fails(
        ErrorCode.PERMISSION_DENIED,
        files.write_file,
        ws,
        WriteFileRequest(path="a.txt", content="x", overwrite=False),
    )
    assert no_temp_files(root)


def test_write_refuses_symlink_target(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside / "secret.txt")
    fails(ErrorCode.SYMLINK, files.write_file, ws, WriteFileRequest(path="link", content="pwned"))
    assert (outside / "secret.txt").read_text() == "SECRET-OUTSIDE"
    (root / "ldir").symlink_to(outside)
    fails(ErrorCode.SYMLINK, files.write_file, ws, WriteFileRequest(path="ldir/new.txt", content="pwned"))
    fails(
        ErrorCode.SYMLINK,
        files.write_file,
        ws,
        WriteFileRequest(path="ldir/new.txt", content="pwned", create_parents=False),
    )
    assert not (outside / "new.txt").exists()


def test_write_refuses_hardlinked_target(ws: Workspace, root: Path, outside: Path) -> None:
    os.link(outside / "secret.txt", root / "hard.txt")
    err = fails(
        ErrorCode.HARDLINKED, files.write_file, ws, WriteFileRequest(path="hard.txt", content="pwned")
    )
    assert "2 hard links" in err.message
    assert (outside / "secret.txt").read_text() == "SECRET-OUTSIDE"


def test_write_refuses_directory_and_special_targets(ws: Workspace, root: Path) -> None:
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    fails(ErrorCode.IS_A_DIRECTORY, files.write_file, ws, WriteFileRequest(path="dir", content="x"))
    fails(ErrorCode.IS_A_DIRECTORY, files.write_file, ws, WriteFileRequest(path=".", content="x"))
    fails(ErrorCode.NOT_REGULAR, files.write_file, ws, WriteFileRequest(path="fifo", content="x"))
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)


def test_failed_write_leaves_old_content(ws: Workspace, root: Path) -> None:
    target = root / "keep.txt"
    target.write_text("old content")
    too_big = "x" * (MAX_WRITE_BYTES + 1)
    fails(ErrorCode.TOO_LARGE, files.write_file, ws, WriteFileRequest(path="keep.txt", content=too_big))
    too_big_b64 = base64.b64encode(b"x" * (MAX_WRITE_BYTES + 1)).decode()
    far_too_big_b64 = "QUJD" * (MAX_WRITE_BYTES // 3 + 10)
    err = fails(
        ErrorCode.TOO_LARGE,
        files.write_file,
        ws,
        WriteFileRequest(path="keep.txt", content=far_too_big_b64, encoding="base64"),
    )
    assert f"the limit is {MAX_WRITE_BYTES} bytes" in err.message
    fails(
        ErrorCode.TOO_LARGE,
        files.write_file,
        ws,
        WriteFileRequest(path="keep.txt", content=too_big_b64, encoding="base64"),
    )
    err = fails(
        ErrorCode.INVALID_ARGUMENT,
        files.write_file,
        ws,
        WriteFileRequest(path="keep.txt", content="not base64!", encoding="base64"),
    )
    assert "not valid base64" in err.message
    fails(
        ErrorCode.INVALID_ARGUMENT,
        files.write_file,
        ws,
        WriteFileRequest(path="keep.txt", content="bad\ud800"),
    )
    assert target.read_text() == "old content"
    assert no_temp_files(root)


def test_write_exactly_max_bytes_is_allowed(ws: Workspace, root: Path) -> None:
    data = b"\x00" * MAX_WRITE_BYTES
    files.write_file(
        ws, WriteFileRequest(path="max.bin", content=base64.b64encode(data).decode(), encoding="base64")
    )
    assert (root / "max.bin").stat().st_size == MAX_WRITE_BYTES


def test_write_failure_during_io_leaves_old_file_and_no_temp(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = root / "keep.txt"
    target.write_text("old content")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    err = fails(ErrorCode.TOO_LARGE, files.write_file, ws, WriteFileRequest(path="keep.txt", content="new"))
    assert "no space left" in err.message
    assert target.read_text() == "old content"
    assert no_temp_files(root)


def test_write_temp_creation_failure(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def refuse_temp(path, flags, mode=0o777, *, dir_fd=None):  # noqa: ANN001
        if isinstance(path, str) and path.startswith(".agent-runner-"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse_temp)
    fails(ErrorCode.PERMISSION_DENIED, files.write_file, ws, WriteFileRequest(path="x.txt", content="x"))


# --- edit_file ------------------------------------------------------------------------------


def test_edit_applies_and_returns_diff(ws: Workspace, root: Path) -> None:
    (root / "m.py").write_text("def f():\n    return 1\n")
    result = files.edit_file(
        ws, EditFileRequest(path="m.py", edits=[Edit(old_text="return 1", new_text="return 2")])
    )
    assert result.applied and result.replacements == 1
    assert (root / "m.py").read_text() == "def f():\n    return 2\n"
    assert result.diff.startswith("--- a/m.py\n+++ b/m.py\n")
    assert "-    return 1\n+    return 2\n" in result.diff
    assert no_temp_files(root)


def test_edit_dry_run_writes_nothing(ws: Workspace, root: Path) -> None:
    target = root / "m.txt"
    target.write_text("alpha beta\n")
    before = target.stat()
    result = files.edit_file(
        ws, EditFileRequest(path="m.txt", edits=[Edit(old_text="beta", new_text="gamma")], dry_run=True)
    )
    assert not result.applied and result.replacements == 1
    assert "+alpha gamma" in result.diff
    assert target.read_text() == "alpha beta\n"
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_edit_sequential_and_replace_all(ws: Workspace, root: Path) -> None:
    (root / "t.txt").write_text("a a a\nb\n")
    result = files.edit_file(
        ws,
        EditFileRequest(
            path="t.txt",
            edits=[
                Edit(old_text="a", new_text="c", replace_all=True),
                Edit(old_text="c c c", new_text="done"),
            ],
        ),
    )
    assert result.replacements == 4
    assert (root / "t.txt").read_text() == "done\nb\n"


def test_edit_ambiguous_and_no_match_are_all_or_nothing(ws: Workspace, root: Path) -> None:
    target = root / "t.txt"
    target.write_text("x = 1\nx = 1\ny = 2\n")
    err = fails(
        ErrorCode.AMBIGUOUS_MATCH,
        files.edit_file,
        ws,
        EditFileRequest(
            path="t.txt",
            edits=[Edit(old_text="y = 2", new_text="y = 3"), Edit(old_text="x = 1", new_text="x = 0")],
        ),
    )
    assert "edit #2" in err.message and "occurs 2 times" in err.message and "replace_all" in err.message
    err = fails(
        ErrorCode.NO_MATCH,
        files.edit_file,
        ws,
        EditFileRequest(
            path="t.txt", edits=[Edit(old_text="y = 2", new_text="y = 3"), Edit(old_text="zzz", new_text="")]
        ),
    )
    assert "edit #2" in err.message and "after applying the earlier edits" in err.message
    err = fails(
        ErrorCode.NO_MATCH,
        files.edit_file,
        ws,
        EditFileRequest(path="t.txt", edits=[Edit(old_text="q", new_text="")]),
    )
    assert "edit #1" in err.message and "earlier" not in err.message
    assert target.read_text() == "x = 1\nx = 1\ny = 2\n"
    assert no_temp_files(root)


def test_edit_no_change_writes_nothing(ws: Workspace, root: Path) -> None:
    target = root / "t.txt"
    target.write_text("same\n")
    ino = target.stat().st_ino
    result = files.edit_file(
        ws, EditFileRequest(path="t.txt", edits=[Edit(old_text="same", new_text="same")])
    )
    assert result.applied and result.diff == ""
    assert target.stat().st_ino == ino


def test_edit_diff_marks_missing_final_newline(ws: Workspace, root: Path) -> None:
    (root / "t.txt").write_text("one\ntwo")
    result = files.edit_file(
        ws, EditFileRequest(path="t.txt", edits=[Edit(old_text="two", new_text="three")])
    )
    assert "-two\n\\ No newline at end of file\n+three\n\\ No newline at end of file\n" in result.diff


def test_edit_refusals(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "bin.dat").write_bytes(b"\xff\xfe")
    os.link(outside / "secret.txt", root / "hard.txt")
    (root / "link").symlink_to(outside / "secret.txt")
    edit = [Edit(old_text="SECRET", new_text="pwned")]
    err = fails(ErrorCode.INVALID_ARGUMENT, files.edit_file, ws, EditFileRequest(path="bin.dat", edits=edit))
    assert "not UTF-8 text" in err.message
    fails(
        ErrorCode.HARDLINKED, files.edit_file, ws, EditFileRequest(path="hard.txt", edits=edit, dry_run=True)
    )
    fails(ErrorCode.SYMLINK, files.edit_file, ws, EditFileRequest(path="link", edits=edit))
    assert (outside / "secret.txt").read_text() == "SECRET-OUTSIDE"


def test_edit_size_limits(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_WRITE_BYTES", 20)
    (root / "big.txt").write_text("x" * 21)
    fails(
        ErrorCode.TOO_LARGE,
        files.edit_file,
        ws,
        EditFileRequest(path="big.txt", edits=[Edit(old_text="x", new_text="y")]),
    )
    (root / "small.txt").write_text("ab")
    err = fails(
        ErrorCode.TOO_LARGE,
        files.edit_file,
        ws,
        EditFileRequest(path="small.txt", edits=[Edit(old_text="a", new_text="z" * 30)]),
    )
    assert "would be" in err.message
    fails(
        ErrorCode.INVALID_ARGUMENT,
        files.edit_file,
        ws,
        EditFileRequest(path="small.txt", edits=[Edit(old_text="a", new_text="\ud800")]),
    )
    assert (root / "small.txt").read_text() == "ab"


def test_edit_refuses_when_file_replaced_meanwhile(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = root / "t.txt"
    target.write_text("before\n")
    real_fsync = os.fsync

    def fsync_then_replace(fd: int) -> None:
        real_fsync(fd)
        if target.read_text() == "before\n":
            (root / "other").write_text("someone else's\n")
            os.replace(root / "other", target)

    monkeypatch.setattr(os, "fsync", fsync_then_replace)
    err = fails(
        ErrorCode.INVALID_ARGUMENT,
        files.edit_file,
        ws,
        EditFileRequest(path="t.txt", edits=[Edit(old_text="before", new_text="after")]),
    )
    assert "replaced or removed while it was being edited" in err.message
    assert target.read_text() == "someone else's\n"
    assert no_temp_files(root)


# --- list_directory and file_info ------------------------------------------------------------


def test_list_directory(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "b.txt").write_text("12345")
    (root / "a_dir").mkdir()
    (root / "c_link").symlink_to(outside)
    os.mkfifo(root / "d_fifo")
    result = files.list_directory(ws, ListDirectoryRequest())
    assert result.path == "." and not result.truncated
    assert [(e.name, e.type, e.size) for e in result.entries] == [
        ("a_dir", EntryType.DIRECTORY, None),
        ("b.txt", EntryType.FILE, 5),
        ("c_link", EntryType.SYMLINK, None),
        ("d_fifo", EntryType.OTHER, None),
    ]
    capped = files.list_directory(ws, ListDirectoryRequest(max_entries=2))
    assert capped.truncated and [e.name for e in capped.entries] == ["a_dir", "b.txt"]
    fails(ErrorCode.SYMLINK, files.list_directory, ws, ListDirectoryRequest(path="c_link"))
    fails(ErrorCode.NOT_A_DIRECTORY, files.list_directory, ws, ListDirectoryRequest(path="b.txt"))


def test_list_directory_entry_vanishing(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "gone.txt").write_text("x")
    (root / "stays.txt").write_text("x")
    real = files.lstat_at

    def vanish(dir_fd: int, name: str, path: str):  # noqa: ANN202
        return None if name == "gone.txt" else real(dir_fd, name, path)

    monkeypatch.setattr(files, "lstat_at", vanish)
    result = files.list_directory(ws, ListDirectoryRequest())
    assert [e.name for e in result.entries] == ["stays.txt"]


def test_list_directory_undecodable_name(ws: Workspace, root: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(root), b"bad\xffname"), os.O_CREAT | os.O_WRONLY, 0o644))
    result = files.list_directory(ws, ListDirectoryRequest())
    assert [e.name for e in result.entries] == ["bad\\xffname"]
    result.model_dump_json()


def test_file_info(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "doc.md").write_text("# hi")
    (root / "doc.md").chmod(0o640)
    (root / "link").symlink_to(outside)
    info = files.file_info(ws, FileInfoRequest(path="doc.md"))
    assert info.type == EntryType.FILE and info.size == 4 and info.mode == "0640"
    assert info.nlink == 1 and info.mime_type == "text/markdown"
    assert info.modified == pytest.approx((root / "doc.md").stat().st_mtime)
    link = files.file_info(ws, FileInfoRequest(path="link"))
    assert link.type == EntryType.SYMLINK and link.mime_type is None
    top = files.file_info(ws, FileInfoRequest(path="."))
    assert top.type == EntryType.DIRECTORY
    fails(ErrorCode.SYMLINK, files.file_info, ws, FileInfoRequest(path="link/secret.txt"))
    fails(ErrorCode.NOT_FOUND, files.file_info, ws, FileInfoRequest(path="nope"))


# --- create_directory -----------------------------------------------------------------------


def test_create_directory(ws: Workspace, root: Path, outside: Path) -> None:
    assert files.create_directory(ws, CreateDirectoryRequest(path="a/b")).created
    assert (root / "a/b").is_dir()
    assert not files.create_directory(ws, CreateDirectoryRequest(path="a/b")).created
    assert not files.create_directory(ws, CreateDirectoryRequest(path=".")).created
    assert files.create_directory(ws, CreateDirectoryRequest(path="a/c", parents=False)).created
    err = fails(
        ErrorCode.NOT_FOUND, files.create_directory, ws, CreateDirectoryRequest(path="x/y", parents=False)
    )
    assert "parents=true" in err.message
    (root / "file").write_text("x")
    fails(ErrorCode.ALREADY_EXISTS, files.create_directory, ws, CreateDirectoryRequest(path="file"))
    (root / "link").symlink_to(outside)
    fails(ErrorCode.SYMLINK, files.create_directory, ws, CreateDirectoryRequest(path="link"))
    fails(ErrorCode.SYMLINK, files.create_directory, ws, CreateDirectoryRequest(path="link/new"))
    assert not (outside / "new").exists()


def test_create_directory_races(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_mkdir = os.mkdir

    def exists_already(name, mode=0o777, *, dir_fd=None):  # noqa: ANN001
        real_mkdir(name, mode, dir_fd=dir_fd)
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr(os, "mkdir", exists_already)
    assert not files.create_directory(ws, CreateDirectoryRequest(path="d", parents=False)).created

    def denied(name, mode=0o777, *, dir_fd=None):  # noqa: ANN001
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "mkdir", denied)
    fails(
        ErrorCode.PERMISSION_DENIED,
        files.create_directory,
        ws,
        CreateDirectoryRequest(path="e", parents=False),
    )


# --- move_file ------------------------------------------------------------------------------


def test_move_file_and_directory(ws: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("a")
    (root / "sub").mkdir()
    result = files.move_file(ws, MoveFileRequest(source="a.txt", destination="sub/b.txt"))
    assert (result.source, result.destination) == ("a.txt", "sub/b.txt")
    assert (root / "sub/b.txt").read_text() == "a" and not (root / "a.txt").exists()
    files.move_file(ws, MoveFileRequest(source="sub", destination="moved"))
    assert (root / "moved/b.txt").is_file()
    same = files.move_file(ws, MoveFileRequest(source="moved", destination="./moved/"))
    assert same.destination == "moved"


def test_move_overwrite_rules(ws: Workspace, root: Path) -> None:
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    err = fails(
        ErrorCode.ALREADY_EXISTS, files.move_file, ws, MoveFileRequest(source="a.txt", destination="b.txt")
    )
    assert "overwrite=true" in err.message
    assert (root / "b.txt").read_text() == "b"
    files.move_file(ws, MoveFileRequest(source="a.txt", destination="b.txt", overwrite=True))
    assert (root / "b.txt").read_text() == "a" and not (root / "a.txt").exists()


def test_move_directory_noreplace_fallback(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(syscalls, "renameat2", unsupported)
    (root / "d1").mkdir()
    (root / "d2").mkdir()
    fails(ErrorCode.ALREADY_EXISTS, files.move_file, ws, MoveFileRequest(source="d1", destination="d2"))
    files.move_file(ws, MoveFileRequest(source="d1", destination="d3"))
    assert (root / "d3").is_dir() and not (root / "d1").exists()


def test_move_errors(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "f.txt").write_text("f")
    (root / "dir").mkdir()
    (root / "full").mkdir()
    (root / "full" / "x").write_text("x")
    (root / "link").symlink_to(outside)
    cases = [
        (MoveFileRequest(source=".", destination="x"), ErrorCode.INVALID_PATH),
        (MoveFileRequest(source="f.txt", destination="."), ErrorCode.INVALID_PATH),
        (MoveFileRequest(source="missing", destination="x"), ErrorCode.NOT_FOUND),
        (MoveFileRequest(source="missing", destination="missing"), ErrorCode.NOT_FOUND),
        (MoveFileRequest(source="f.txt", destination="nodir/x"), ErrorCode.NOT_FOUND),
        (MoveFileRequest(source="dir", destination="dir/inner"), ErrorCode.INVALID_ARGUMENT),
        (MoveFileRequest(source="link", destination="x"), ErrorCode.SYMLINK),
        (MoveFileRequest(source="f.txt", destination="link/x"), ErrorCode.SYMLINK),
        (MoveFileRequest(source="f.txt", destination="link", overwrite=True), ErrorCode.SYMLINK),
        (MoveFileRequest(source="f.txt", destination="dir", overwrite=True), ErrorCode.IS_A_DIRECTORY),
        (MoveFileRequest(source="dir", destination="f.txt", overwrite=True), ErrorCode.NOT_A_DIRECTORY),
        (MoveFileRequest(source="dir", destination="full", overwrite=True), ErrorCode.DIRECTORY_NOT_EMPTY),
        (MoveFileRequest(source="../x", destination="y"), ErrorCode.INVALID_PATH),
        (MoveFileRequest(source="f.txt", destination="/tmp/x"), ErrorCode.INVALID_PATH),
    ]
    for request, code in cases:
        err = fails(code, files.move_file, ws, request)
        assert err.message
    assert (root / "f.txt").read_text() == "f"
    assert not (outside / "x").exists()


def test_move_error_mapping() -> None:
    for err, code in [
        (errno.EXDEV, ErrorCode.INVALID_ARGUMENT),
        (errno.EINVAL, ErrorCode.INVALID_ARGUMENT),
        (errno.EACCES, ErrorCode.PERMISSION_DENIED),
    ]:
        mapped = files._move_error(OSError(err, os.strerror(err)), "a", "b")
        assert mapped.code is code


def test_move_into_or_out_of_a_mount_refused(ws: Workspace, root: Path, mounted_tree: Path) -> None:
    (root / "f.txt").write_text("f")
    fails(
        ErrorCode.ESCAPE, files.move_file, ws, MoveFileRequest(source="f.txt", destination="tree/mnt/f.txt")
    )
    fails(ErrorCode.ESCAPE, files.move_file, ws, MoveFileRequest(source="tree/mnt/keep", destination="k"))
    assert (root / "f.txt").exists() and (mounted_tree / "keep").exists()


# --- delete_file ----------------------------------------------------------------------------


def test_delete_file_and_empty_dir(ws: Workspace, root: Path) -> None:
    (root / "f.txt").write_text("x")
    (root / "empty").mkdir()
    assert files.delete_file(ws, DeleteFileRequest(path="f.txt")).deleted == 1
    assert files.delete_file(ws, DeleteFileRequest(path="empty")).deleted == 1
    assert list(root.iterdir()) == []


def test_delete_symlink_removes_link_not_target(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside)
    assert files.delete_file(ws, DeleteFileRequest(path="link")).deleted == 1
    assert not (root / "link").is_symlink()
    assert (outside / "secret.txt").read_text() == "SECRET-OUTSIDE"


def test_delete_non_empty_needs_recursive(ws: Workspace, root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "f").write_text("x")
    err = fails(ErrorCode.DIRECTORY_NOT_EMPTY, files.delete_file, ws, DeleteFileRequest(path="d"))
    assert "recursive=true" in err.message
    assert (root / "d" / "f").exists()


def test_delete_recursive_never_follows_symlinks(ws: Workspace, root: Path, outside: Path) -> None:
    tree = root / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "file").write_text("x")
    (tree / "a" / "b" / "c" / "deep").write_text("x")
    (tree / "a" / "escape").symlink_to(outside)
    (tree / "a" / "b" / "file_link").symlink_to(outside / "secret.txt")
    os.mkfifo(tree / "fifo")
    deleted = files.delete_file(ws, DeleteFileRequest(path="tree", recursive=True)).deleted
    assert deleted == 9  # tree, a, b, c, deep, file, escape, file_link, fifo
    assert not tree.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["f", "secret.txt"]


def test_delete_recursive_deep_tree(ws: Workspace, root: Path) -> None:
    path = root / "deep"
    current = path
    for _ in range(200):
        current = current / "d"
    current.mkdir(parents=True)
    assert files.delete_file(ws, DeleteFileRequest(path="deep", recursive=True)).deleted == 201


def test_delete_recursive_tolerates_entries_vanishing(
    ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "t").mkdir()
    (root / "t" / "a").write_text("x")
    (root / "t" / "b").write_text("x")
    real = files.lstat_at

    def vanish(dir_fd: int, name: str, path: str):  # noqa: ANN202
        if name == "a":
            os.unlink(name, dir_fd=dir_fd)  # someone else removed it first
            return None
        return real(dir_fd, name, path)

    monkeypatch.setattr(files, "lstat_at", vanish)
    assert files.delete_file(ws, DeleteFileRequest(path="t", recursive=True)).deleted == 2
    assert not (root / "t").exists()


def test_delete_refusals(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "ldir").symlink_to(outside)
    err = fails(ErrorCode.INVALID_PATH, files.delete_file, ws, DeleteFileRequest(path=".", recursive=True))
    assert "workspace root" in err.message
    fails(ErrorCode.INVALID_PATH, files.delete_file, ws, DeleteFileRequest(path="./", recursive=True))
    fails(ErrorCode.NOT_FOUND, files.delete_file, ws, DeleteFileRequest(path="missing"))
    fails(ErrorCode.SYMLINK, files.delete_file, ws, DeleteFileRequest(path="ldir/secret.txt"))
    fails(ErrorCode.INVALID_PATH, files.delete_file, ws, DeleteFileRequest(path="../outside", recursive=True))
    assert (outside / "secret.txt").exists()


def test_delete_errors_are_mapped(ws: Workspace, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "f").write_text("x")
    (root / "d").mkdir()
    (root / "t").mkdir()
    (root / "t" / "x").write_text("x")

    def denied(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "unlink", denied)
    monkeypatch.setattr(os, "rmdir", denied)
    fails(ErrorCode.PERMISSION_DENIED, files.delete_file, ws, DeleteFileRequest(path="f"))
    fails(ErrorCode.PERMISSION_DENIED, files.delete_file, ws, DeleteFileRequest(path="d"))
    fails(ErrorCode.PERMISSION_DENIED, files.delete_file, ws, DeleteFileRequest(path="t", recursive=True))
    monkeypatch.undo()
    (root / "e").mkdir()
    monkeypatch.setattr(os, "rmdir", denied)
    fails(ErrorCode.PERMISSION_DENIED, files.delete_file, ws, DeleteFileRequest(path="e", recursive=True))


def test_delete_recursive_stops_at_mount_points(ws: Workspace, root: Path, mounted_tree: Path) -> None:
    err = fails(ErrorCode.ESCAPE, files.delete_file, ws, DeleteFileRequest(path="tree", recursive=True))
    assert "mount point" in err.message
    assert (mounted_tree / "keep").read_text() == "on tmpfs"


def test_delete_recursive_top_is_mount_point(ws: Workspace, root: Path, mounted_tree: Path) -> None:
    fails(ErrorCode.ESCAPE, files.delete_file, ws, DeleteFileRequest(path="tree/mnt", recursive=True))


@pytest.fixture
def mounted_tree(root: Path) -> Path:
    import subprocess

    mnt = root / "tree" / "mnt"
    mnt.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode().strip()}")
    try:
        (mnt / "keep").write_text("on tmpfs")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
