"""ctypes bindings for the Linux calls Python's `os` module lacks: openat2 and renameat2.

Both raise `OSError` with the kernel's errno, exactly like the `os` functions, so callers handle
one kind of failure. `ENOSYS` means the kernel (or a seccomp filter in front of it) does not offer
the call; callers decide how to fall back.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

# <linux/openat2.h>
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

# Everything the workspace needs: stay beneath the directory fd, never follow a symlink of any
# kind, never cross into another mount.
RESOLVE_WORKSPACE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV

# <linux/fs.h>
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1

AT_FDCWD = -100

# openat2 has the same number on every architecture (it postdates the unified syscall table);
# renameat2 predates it, so its number is per architecture. Only used when libc lacks a wrapper.
SYS_OPENAT2 = 437
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "ppc64le": 357, "s390x": 347}


class OpenHow(ctypes.Structure):
    """struct open_how from <linux/openat2.h>."""

    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_renameat2_fn = getattr(_libc, "renameat2", None)
if _renameat2_fn is not None:
    _renameat2_fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2_fn.restype = ctypes.c_int


def _raise_errno(filename: str | bytes | None = None, filename2: str | bytes | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), filename, None, filename2)


def openat2(dir_fd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` relative to `dir_fd` under the `resolve` restrictions."""
    how = OpenHow(flags, mode, resolve)
    raw = os.fsencode(path)
    fd = _syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(raw),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        _raise_errno(path)
    return int(fd)


def renameat2(src_dir_fd: int, src: str | bytes, dst_dir_fd: int, dst: str | bytes, flags: int = 0) -> None:
    """renameat2(2): rename with RENAME_NOREPLACE / RENAME_EXCHANGE semantics, atomically."""
    raw_src, raw_dst = os.fsencode(src), os.fsencode(dst)
    if _renameat2_fn is not None:
        result = _renameat2_fn(src_dir_fd, raw_src, dst_dir_fd, raw_dst, flags)
    else:
        number = _SYS_RENAMEAT2.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available on this architecture", src)
        result = _syscall(
            ctypes.c_long(number),
            ctypes.c_int(src_dir_fd),
            ctypes.c_char_p(raw_src),
            ctypes.c_int(dst_dir_fd),
            ctypes.c_char_p(raw_dst),
            ctypes.c_uint(flags),
        )
    if result < 0:
        _raise_errno(src, dst)


def openat2_available() -> bool:
    """Whether this kernel lets us call openat2 (Linux >= 5.6 and no seccomp filter in the way).

    Container runtimes that predate openat2 deny unknown syscalls with ENOSYS or EPERM, so both
    mean "not available" here; any other outcome means the call reached the kernel.
    """
    try:
        fd = openat2(AT_FDCWD, "/", os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return False
        return True
    os.close(fd)
    return True
