"""Path validation and the two resolvers, attacked the same way (the `ws` fixture runs both)."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from agent_runner.errors import HTTP_STATUS, OperationError, from_os_error, printable, status_for
from agent_runner.protocol import MAX_PATH_LENGTH, ErrorCode
from agent_runner.workspace import paths, syscalls
from agent_runner.workspace.paths import Workspace, normalize_path

pytestmark = pytest.mark.timeout(20)


def code_of(excinfo: pytest.ExceptionInfo[OperationError]) -> ErrorCode:
    return excinfo.value.code


# --- normalize_path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (".", "."),
        ("./", "."),
        ("a", "a"),
        ("a/b", "a/b"),
        ("a//b", "a/b"),
        ("./a/./b/", "a/b"),
        ("a/.", "a"),
        ("...", "..."),
        ("..a/b..", "..a/b.."),
        ("dir with space/é.txt", "dir with space/é.txt"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_normalize_accepts_and_canonicalises(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "path is empty; use '.'"),
        ("/etc/passwd", "is absolute; use a path relative to the workspace root"),
        ("//x", "is absolute"),
        ("..", "contains '..'"),
        ("a/../b", "path 'a/../b' contains '..'; use a path relative to the workspace root"),
        ("a/..", "contains '..'"),
        ("../outside", "contains '..'"),
        ("a\x00b", "NUL byte"),
        ("bad\udc80name", "not valid UTF-8"),
        ("x" * (MAX_PATH_LENGTH + 1), f"the limit is {MAX_PATH_LENGTH}"),
    ],
)
def test_normalize_rejects_with_actionable_message(raw: str, fragment: str) -> None:
    with pytest.raises(OperationError) as excinfo:
        normalize_path(raw)
    assert excinfo.value.code is ErrorCode.INVALID_PATH
    assert fragment in excinfo.value.message


def test_normalize_rejects_non_string() -> None:
    with pytest.raises(OperationError) as excinfo:
        normalize_path(b"a")  # type: ignore[arg-type]
    assert excinfo.value.code is ErrorCode.INVALID_PATH


def test_path_helpers() -> None:
    assert paths.split_path(".") == []
    assert paths.split_path("a/b") == ["a", "b"]
    assert paths.join_path(".", "x") == "x"
    assert paths.join_path("a", "x") == "a/x"
    assert paths.parent_of("a/b/c") == ("a/b", "c")
    assert paths.parent_of("c") == (".", "c")
    assert paths.entry_type_of(stat.S_IFREG) == "file"
    assert paths.entry_type_of(stat.S_IFDIR) == "directory"
    assert paths.entry_type_of(stat.S_IFLNK) == "symlink"
    assert paths.entry_type_of(stat.S_IFIFO) == "other"
    assert paths.describe_kind(stat.S_IFIFO) == "FIFO (named pipe)"
    assert paths.describe_kind(stat.S_IFCHR) == "character device"
    assert paths.describe_kind(stat.S_IFBLK) == "block device"
    assert paths.describe_kind(stat.S_IFSOCK) == "socket"
    assert paths.describe_kind(stat.S_IFLNK) == "symbolic link"
    assert paths.describe_kind(stat.S_IFREG) == "special file"


# --- opening: the happy path ----------------------------------------------------------------


def test_open_regular_reads_file(ws: Workspace, root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("inside")
    fd, st = ws.open_regular("d//./f.txt")
    try:
        assert os.read(fd, 100) == b"inside"
        assert stat.S_ISREG(st.st_mode)
    finally:
        os.close(fd)


def test_open_dir_root_and_lstat(ws: Workspace, root: Path) -> None:
    fd = ws.open_dir(".")
    try:
        assert os.fstat(fd).st_ino == root.stat().st_ino
    finally:
        os.close(fd)
    assert stat.S_ISDIR(ws.lstat(".").st_mode)


def test_resolver_is_reported(root: Path, resolver: str) -> None:
    with Workspace(root, resolver=resolver) as workspace:
        assert workspace.resolver == resolver
    assert workspace.root_fd == -1
    workspace.close()  # closing twice is harmless


def test_auto_resolver_prefers_openat2(root: Path) -> None:
    with Workspace(root) as workspace:
        assert workspace.resolver == ("openat2" if paths.openat2_supported() else "nofollow-walk")
    with Workspace(root, resolver="auto") as workspace:
        assert workspace.resolver in paths.RESOLVERS


def test_unknown_resolver_rejected(root: Path) -> None:
    with pytest.raises(ValueError, match="unknown resolver 'magic'"):
        Workspace(root, resolver="magic")


def test_forced_openat2_without_kernel_support(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "openat2_supported", lambda: False)
    with pytest.raises(RuntimeError, match="openat2 is not available"):
        Workspace(root, resolver="openat2")
    with Workspace(root) as workspace:
        assert workspace.resolver == "nofollow-walk"


# --- opening: attacks, under both resolvers ------------------------------------------------


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside/secret.txt", "a/../../outside", "a\x00", ""])
def test_open_rejects_invalid_paths(ws: Workspace, bad: str) -> None:
    with pytest.raises(OperationError) as excinfo:
        ws.open(bad, os.O_RDONLY)
    assert code_of(excinfo) is ErrorCode.INVALID_PATH


def test_symlink_to_outside_file_refused(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside / "secret.txt")
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("link")
    assert code_of(excinfo) is ErrorCode.SYMLINK
    assert "symbolic link" in excinfo.value.message
    assert excinfo.value.path == "link"


def test_symlink_dir_component_to_outside_refused(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "ldir").symlink_to(outside)
    for path in ("ldir/secret.txt", "ldir"):
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular(path)
        assert code_of(excinfo) is ErrorCode.SYMLINK
    with pytest.raises(OperationError) as excinfo:
        ws.open_dir("ldir")
    assert code_of(excinfo) is ErrorCode.SYMLINK


def test_deep_symlink_component_refused(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c").symlink_to(outside)
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("a/b/c/secret.txt")
    assert code_of(excinfo) is ErrorCode.SYMLINK


def test_symlink_inside_pointing_inside_still_refused(ws: Workspace, root: Path) -> None:
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside")
    (root / "alias.txt").symlink_to("real/f.txt")
    (root / "aliasdir").symlink_to("real")
    for path in ("alias.txt", "aliasdir/f.txt"):
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular(path)
        assert code_of(excinfo) is ErrorCode.SYMLINK


def test_dangling_and_absolute_symlinks_refused(ws: Workspace, root: Path) -> None:
    (root / "dangling").symlink_to("nowhere")
    (root / "abs").symlink_to("/etc")
    for path in ("dangling", "abs/passwd"):
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular(path)
        assert code_of(excinfo) is ErrorCode.SYMLINK


def test_magic_link_through_proc_refused(ws: Workspace, root: Path) -> None:
    (root / "self").symlink_to("/proc/self/root")
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("self/etc/passwd")
    assert code_of(excinfo) is ErrorCode.SYMLINK


@pytest.mark.timeout(5)
def test_fifo_refused_without_hanging(ws: Workspace, root: Path) -> None:
    os.mkfifo(root / "fifo")
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("fifo")
    assert code_of(excinfo) is ErrorCode.NOT_REGULAR
    assert "FIFO" in excinfo.value.message


def test_device_node_refused(ws: Workspace, root: Path) -> None:
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod not permitted here")
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("null")
    assert code_of(excinfo) is ErrorCode.NOT_REGULAR
    assert "character device" in excinfo.value.message


def test_symlink_to_dev_null_refused(ws: Workspace, root: Path) -> None:
    (root / "devnull").symlink_to("/dev/null")
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("devnull")
    assert code_of(excinfo) is ErrorCode.SYMLINK


def test_socket_refused(ws: Workspace, root: Path, short_tmp: Path) -> None:
    # Bind in a short directory, then move the socket into the workspace.
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(short_tmp / "s"))
        os.rename(short_tmp / "s", root / "sock")
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular("sock")
        assert code_of(excinfo) is ErrorCode.NOT_REGULAR
    finally:
        sock.close()


def test_not_found_not_a_directory_is_a_directory(ws: Workspace, root: Path) -> None:
    (root / "file").write_text("x")
    (root / "dir").mkdir()
    cases = [
        ("missing", ErrorCode.NOT_FOUND),
        ("missing/deeper", ErrorCode.NOT_FOUND),
        ("file/child", ErrorCode.NOT_A_DIRECTORY),
        ("dir", ErrorCode.IS_A_DIRECTORY),
    ]
    for path, expected in cases:
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular(path)
        assert code_of(excinfo) is expected, path
    with pytest.raises(OperationError) as excinfo:
        ws.open_dir("file")
    assert code_of(excinfo) is ErrorCode.NOT_A_DIRECTORY


def test_component_too_long(ws: Workspace) -> None:
    with pytest.raises(OperationError) as excinfo:
        ws.open_regular("x" * 300)
    assert code_of(excinfo) is ErrorCode.INVALID_PATH


def test_lstat_describes_trailing_symlink_but_refuses_earlier_ones(
    ws: Workspace, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside)
    assert stat.S_ISLNK(ws.lstat("link").st_mode)
    with pytest.raises(OperationError) as excinfo:
        ws.lstat("link/secret.txt")
    assert code_of(excinfo) is ErrorCode.SYMLINK


@pytest.fixture
def mounted(root: Path) -> Path:
    """A tmpfs mounted inside the workspace (needs CAP_SYS_ADMIN)."""
    mnt = root / "mnt"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode().strip()}")
    try:
        (mnt / "inner").mkdir()
        (mnt / "inner" / "f").write_text("on another filesystem")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_mount_crossing_refused(ws: Workspace, mounted: Path) -> None:
    for path in ("mnt/inner/f", "mnt"):
        with pytest.raises(OperationError) as excinfo:
            ws.open_regular(path)
        assert code_of(excinfo) is ErrorCode.ESCAPE, path
        assert "outside the workspace" in excinfo.value.message


# --- parents and makedirs -------------------------------------------------------------------


def test_open_parent(ws: Workspace, root: Path, outside: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "link").symlink_to(outside / "secret.txt")
    fd, name = ws.open_parent("d/new.txt")
    try:
        assert name == "new.txt"
        assert os.fstat(fd).st_ino == (root / "d").stat().st_ino
    finally:
        os.close(fd)
    with pytest.raises(OperationError) as excinfo:
        ws.open_parent("d/link")
    assert code_of(excinfo) is ErrorCode.SYMLINK
    fd, name = ws.open_parent("d/link", allow_symlink=True)
    os.close(fd)
    with pytest.raises(OperationError) as excinfo:
        ws.open_parent(".")
    assert code_of(excinfo) is ErrorCode.INVALID_PATH


def test_makedirs(ws: Workspace, root: Path, outside: Path) -> None:
    fd, created = ws.makedirs("a/b/c")
    os.close(fd)
    assert created and (root / "a" / "b" / "c").is_dir()
    fd, created = ws.makedirs("a/b/c")
    os.close(fd)
    assert not created
    fd, created = ws.makedirs(".")
    os.close(fd)
    assert not created
    fd, created = ws.makedirs("a/b/d")  # existing parents, new leaf
    os.close(fd)
    assert created and (root / "a" / "b" / "d").is_dir()

    (root / "link").symlink_to(outside)
    with pytest.raises(OperationError) as excinfo:
        ws.makedirs("link/sub")
    assert code_of(excinfo) is ErrorCode.SYMLINK
    assert not (outside / "sub").exists()

    (root / "file").write_text("x")
    with pytest.raises(OperationError) as excinfo:
        ws.makedirs("file/sub")
    assert code_of(excinfo) is ErrorCode.NOT_A_DIRECTORY


def test_makedirs_refuses_symlink_swapped_in_during_walk(
    ws: Workspace, root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A component replaced by a symlink between mkdir and the open is refused, not followed."""
    real_mkdir = os.mkdir

    def mkdir_then_swap(name, mode=0o777, *, dir_fd=None):  # noqa: ANN001
        real_mkdir(name, mode, dir_fd=dir_fd)
        if name == "a":
            os.rmdir(root / "a")
            (root / "a").symlink_to(outside)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(OperationError) as excinfo:
        ws.makedirs("a/b")
    assert code_of(excinfo) is ErrorCode.SYMLINK
    assert not (outside / "b").exists()


def test_makedirs_maps_mkdir_errors(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(OperationError) as excinfo:
        ws.makedirs("x/y")
    assert code_of(excinfo) is ErrorCode.PERMISSION_DENIED
    assert excinfo.value.path == "x"


def test_lstat_at_maps_errors(root: Path) -> None:
    (root / "file").write_text("x")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert paths.lstat_at(fd, "missing", "missing") is None
        with pytest.raises(OperationError) as excinfo:
            paths.lstat_at(fd, "file/x", "file/x")
        assert code_of(excinfo) is ErrorCode.NOT_A_DIRECTORY
    finally:
        os.close(fd)


# --- openat2 specifics ----------------------------------------------------------------------


@pytest.mark.skipif(not paths.openat2_supported(), reason="kernel has no openat2")
def test_openat2_enosys_switches_to_walk(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "f").write_text("content")

    def enosys(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSYS, "Function not implemented")

    with Workspace(root, resolver="openat2") as workspace:
        monkeypatch.setattr(syscalls, "openat2", enosys)
        fd, _ = workspace.open_regular("f")
        os.close(fd)
        assert workspace.resolver == "nofollow-walk"


@pytest.mark.skipif(not paths.openat2_supported(), reason="kernel has no openat2")
def test_openat2_eagain_is_retried_then_reported(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "f").write_text("content")
    real = syscalls.openat2
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return real(*args, **kwargs)

    with Workspace(root, resolver="openat2") as workspace:
        monkeypatch.setattr(syscalls, "openat2", flaky)
        fd, _ = workspace.open_regular("f")
        os.close(fd)
        assert calls["n"] == 3

        def always(*args, **kwargs):  # noqa: ANN002, ANN003
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

        monkeypatch.setattr(syscalls, "openat2", always)
        with pytest.raises(OperationError) as excinfo:
            workspace.open_regular("f")
        assert code_of(excinfo) is ErrorCode.INTERNAL
        assert "racing" in excinfo.value.message


@pytest.mark.parametrize(
    ("err", "available"), [(errno.ENOSYS, False), (errno.EPERM, False), (errno.ELOOP, True), (None, True)]
)
def test_openat2_probe(monkeypatch: pytest.MonkeyPatch, err: int | None, available: bool) -> None:
    def fake(*args, **kwargs):  # noqa: ANN002, ANN003
        if err is None:
            return os.open("/", os.O_PATH)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(syscalls, "openat2", fake)
    assert syscalls.openat2_available() is available


def test_syscall_errors_carry_errno(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        syscalls.openat2(syscalls.AT_FDCWD, str(tmp_path / "missing"), os.O_RDONLY)
    with pytest.raises(FileNotFoundError):
        syscalls.renameat2(syscalls.AT_FDCWD, str(tmp_path / "a"), syscalls.AT_FDCWD, str(tmp_path / "b"))


def test_renameat2_raw_syscall_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    monkeypatch.setattr(syscalls, "_renameat2_fn", None)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            syscalls.renameat2(fd, "a", fd, "b", syscalls.RENAME_NOREPLACE)
        syscalls.renameat2(fd, "a", fd, "b", syscalls.RENAME_EXCHANGE)
        assert (tmp_path / "a").read_text() == "b"
        monkeypatch.setattr(syscalls.platform, "machine", lambda: "vax")
        with pytest.raises(OSError) as excinfo:
            syscalls.renameat2(fd, "a", fd, "b")
        assert excinfo.value.errno == errno.ENOSYS
    finally:
        os.close(fd)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (errno.ENOENT, ErrorCode.NOT_FOUND),
        (errno.ELOOP, ErrorCode.SYMLINK),
        (errno.EXDEV, ErrorCode.ESCAPE),
        (errno.ENOTDIR, ErrorCode.NOT_A_DIRECTORY),
        (errno.EISDIR, ErrorCode.IS_A_DIRECTORY),
        (errno.EEXIST, ErrorCode.ALREADY_EXISTS),
        (errno.ENOTEMPTY, ErrorCode.DIRECTORY_NOT_EMPTY),
        (errno.EACCES, ErrorCode.PERMISSION_DENIED),
        (errno.EPERM, ErrorCode.PERMISSION_DENIED),
        (errno.EROFS, ErrorCode.PERMISSION_DENIED),
        (errno.ENAMETOOLONG, ErrorCode.INVALID_PATH),
        (errno.ENXIO, ErrorCode.NOT_REGULAR),
        (errno.ENOSPC, ErrorCode.TOO_LARGE),
        (errno.EINVAL, ErrorCode.INVALID_ARGUMENT),
        (errno.EIO, ErrorCode.INTERNAL),
    ],
)
def test_errno_mapping(err: int, code: ErrorCode) -> None:
    mapped = from_os_error(OSError(err, os.strerror(err)), "some/path")
    assert mapped.code is code
    assert mapped.path == "some/path"
    assert "some/path" in mapped.message


def test_error_statuses_and_body() -> None:
    assert status_for(ErrorCode.NOT_FOUND) == 404
    assert status_for(ErrorCode.SYMLINK) == 400
    assert status_for(ErrorCode.INTERNAL) == 500
    assert HTTP_STATUS[ErrorCode.TIMEOUT] == 504
    err = OperationError(ErrorCode.NOT_FOUND, "gone", "a")
    assert err.status == 404
    assert err.to_body().model_dump() == {"code": ErrorCode.NOT_FOUND, "message": "gone", "path": "a"}
    assert "not_found" in repr(err)


def test_printable_makes_undecodable_names_json_safe() -> None:
    assert printable("plain é") == "plain é"
    assert printable("bad\udc80name") == "bad\\x80name"
    assert printable("lone\ud800") == "lone\\ud800"
    err = OperationError(ErrorCode.NOT_FOUND, "'bad\udc80' does not exist", "bad\udc80")
    assert err.path == "bad\\x80"
    assert err.to_body().model_dump_json()


def test_walk_open_reports_what_it_saw(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOTDIR from O_DIRECTORY | O_NOFOLLOW is disambiguated by looking at the entry again."""
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    real_open = os.open
    try:
        with pytest.raises(NotADirectoryError):
            paths._open_dir_nofollow(fd, "file", os.O_RDONLY | os.O_DIRECTORY, 0)

        def enotdir(*args, **kwargs):  # noqa: ANN002, ANN003
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")

        monkeypatch.setattr(os, "open", enotdir)
        # Vanished by the time we look: still "not a directory".
        with pytest.raises(OSError) as excinfo:
            paths._open_dir_nofollow(fd, "gone", os.O_RDONLY | os.O_DIRECTORY, 0)
        assert excinfo.value.errno == errno.ENOTDIR
        # A directory every time we look, yet never openable as one: it keeps being swapped.
        with pytest.raises(OSError, match="kept changing") as excinfo:
            paths._open_dir_nofollow(fd, "dir", os.O_RDONLY | os.O_DIRECTORY, 0)
        assert excinfo.value.errno == errno.ENOTDIR
    finally:
        monkeypatch.setattr(os, "open", real_open)
        os.close(fd)
