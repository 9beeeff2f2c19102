"""Removing directory trees that may hold directories of mode 000 (overlay work dirs, layers),
without shutil: its import (with bz2, lzma and fnmatch) would cost every `rl run --rm`."""
from __future__ import annotations

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir_for_removal(parent_fd: int, name: str) -> int:
    st = os.lstat(name, dir_fd=parent_fd)
    if st.st_mode & 0o700 != 0o700:
        os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent_fd, follow_symlinks=False)
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def rmtree_at(parent_fd: int, name: str) -> None:
    """Remove directory `name` of `parent_fd` and everything in it, granting ourselves u+rwx on
    the way. Iterative, so depth is bounded by open fds rather than the recursion limit."""
    # (parent's fd, name, own fd, subdirectories still to remove, None until it is listed)
    stack: list[tuple[int, str, int, list[str] | None]] = [(parent_fd, name, _open_dir_for_removal(parent_fd, name),
                                                             None)]
    try:
        while stack:
            pfd, dname, fd, pending = stack[-1]
            if pending is None:
                pending = []
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            pending.append(e.name)
                        else:
                            os.unlink(e.name, dir_fd=fd)
                stack[-1] = (pfd, dname, fd, pending)
            if pending:
                child = pending.pop()
                stack.append((fd, child, _open_dir_for_removal(fd, child), None))
            else:
                stack.pop()
                os.close(fd)
                os.rmdir(dname, dir_fd=pfd)
    finally:
        for _, _, fd, _ in stack:
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
