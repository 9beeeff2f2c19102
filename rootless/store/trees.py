"""Removing directory trees that may hold directories of mode 000 (overlay work dirs, layers),
without shutil: its import (with bz2, lzma and fnmatch) would cost every `rl run --rm`."""
from __future__ import annotations

import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir_for_removal(parent_fd: int, name: str) -> int:
    st = os.lstat(name, dir_fd=parent_fd)
    if st.st_mode & 0o700 != 0o700:
        os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent_fd, follow_symlinks=False)
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


class _Level:
    """A directory on the way down: its name in its parent, who it is, and the subdirectories
    still to remove (None until it is listed)."""

    __slots__ = ("ident", "name", "pending")

    def __init__(self, name: str, st: os.stat_result) -> None:
        self.name = name
        self.ident = (st.st_dev, st.st_ino)
        self.pending: list[str] | None = None


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def rmtree_at(parent_fd: int, name: str) -> None:
    """Remove directory `name` of `parent_fd` and everything in it, granting ourselves u+rwx on
    the way.

    One descriptor at a time whatever the depth: a layer may hold a path thousands of
    directories deep, and a descriptor per level ran out at the user's limit of 1024 open files,
    leaving a tree no one could remove. Going back up opens "..", which must be the directory we
    came down from (checked by device and inode): a tree that moves while it is removed stops the
    removal with an error instead of leading it elsewhere.
    """
    fd = _open_dir_for_removal(parent_fd, name)
    levels = [_Level(name, os.fstat(fd))]
    try:
        while True:
            level = levels[-1]
            if level.pending is None:
                level.pending = []
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            level.pending.append(e.name)
                        else:
                            os.unlink(e.name, dir_fd=fd)
            if level.pending:
                child = level.pending.pop()
                child_fd = _open_dir_for_removal(fd, child)
                os.close(fd)
                fd = child_fd
                levels.append(_Level(child, os.fstat(fd)))
                continue
            levels.pop()
            if not levels:
                os.close(fd)
                fd = -1
                os.rmdir(name, dir_fd=parent_fd)
                return
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            if _ident(fd) != levels[-1].ident:
                raise OSError(errno.ESTALE, "a directory moved while its tree was removed", level.name)
            os.rmdir(level.name, dir_fd=fd)
    finally:
        if fd >= 0:
            os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete `path` and everything under it, even directories of mode 000; no error if missing.

    Run it where the files' owners are writable: inside the user namespace for a layer unpacked
    with owners="real", as the user for owners="xattr".
    """
    parent, name = os.path.split(os.path.abspath(path))
    pfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            rmtree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
    finally:
        os.close(pfd)
