"""The layers through descriptors: a path inside the overlay is resolved below a layer's root
descriptor, never by name on the host.

Every name in a layer is the container's: a directory it removed and replaced by a symlink to
the host, or a stale name of a file it deleted, must never lead the daemon out of the layer. So
each walk is openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), or a
component-by-component O_NOFOLLOW walk where the kernel lacks openat2, and a walk that would
cross a symlink or leave the layer finds nothing (ENOENT).

Paths are the overlay's own: `""` for the root and `"/a/b"` below it.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import native

DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# An O_PATH descriptor of whatever the name is, a symlink included.
ANY_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_has_openat2 = True
# Linux's, the terminating NUL included: the longest path a system call takes.
PATH_MAX = 4096


def open_root(path: str) -> int:
    """A layer's root: given by the caller, the one path the daemon resolves by name."""
    return os.open(path, DIR_PATH)


def open_in(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """open(2) of `path` below `root_fd`; the last component is never followed either."""
    relative = path.lstrip("/") or "."
    encoded = os.fsencode(relative)
    if len(encoded) < PATH_MAX:
        return _open_below(root_fd, relative, flags, mode)
    # Longer than a path the kernel takes: a path valid in the mount may be, below a layer
    # whose root lies deeper than the mount point's. Each piece is resolved beneath the
    # directory the one before reached, so the whole stays beneath `root_fd`.
    cut = encoded.rfind(b"/", 0, PATH_MAX)
    if cut <= 0:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), path)
    head = _open_below(root_fd, os.fsdecode(encoded[:cut]), DIR_PATH, 0)
    try:
        return open_in(head, os.fsdecode(encoded[cut + 1:]), flags, mode)
    finally:
        os.close(head)


def _open_below(root_fd: int, relative: str, flags: int, mode: int) -> int:
    global _has_openat2
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if _has_openat2:
        try:
            return native.openat2(root_fd, relative, flags, native.RESOLVE_CONTAINED, mode)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), relative) from e
            if e.errno != errno.ENOSYS:
                raise
            _has_openat2 = False
    return _walk(root_fd, relative, flags, mode)


def _walk(root_fd: int, relative: str, flags: int, mode: int) -> int:
    """open_in without openat2: one O_NOFOLLOW open per component."""
    parts = relative.split("/")
    if any(p in ("", "..") for p in parts):
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), relative)
    fd = root_fd
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, DIR_PATH | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), relative) from e
                raise
            if fd != root_fd:
                os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags, mode, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


@contextmanager
def opened(root_fd: int, path: str, flags: int = ANY_PATH, mode: int = 0) -> Iterator[int]:
    fd = open_in(root_fd, path, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def parent(root_fd: int, path: str) -> Iterator[tuple[int, str]]:
    """The directory that holds `path` (an O_PATH descriptor, for the *at calls) and the name
    in it."""
    head, _, name = path.rpartition("/")
    with opened(root_fd, head, DIR_PATH) as fd:
        yield fd, name


def lstat(root_fd: int, path: str) -> os.stat_result:
    with opened(root_fd, path) as fd:
        return os.fstat(fd)


def proc(fd: int) -> str:
    """The path of descriptor `fd` for the calls that take no descriptor (xattrs of an O_PATH
    descriptor, chmod, a reopen): following it reaches that very file, whatever names changed,
    and never a symlink's target."""
    return f"/proc/self/fd/{fd}"
