"""Paths close to PATH_MAX inside the mount (pjdfstest's */03.t and rename/02.t), from a
subdirectory: below a layer the same entry lies deeper than below the mount point, past what
one system call takes, and the kernel overlay still accepts them."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TypeVar

import pytest

from tests.fs.conftest import MakeOverlay, needs_subuid
from tests.fs.harness import Dir, File

PATH_MAX = 4096
# pjdfstest's dirgen_max: components of NAME_MAX / 2 bytes.
COMPONENT = 127
LOWER_DATA = b"from the image\n"
T = TypeVar("T")


def _in(cwd: str, fn: Callable[[], T]) -> T:
    """fn() run in directory `cwd`, then back to / (a worker in the mount keeps it busy)."""
    os.chdir(cwd)
    try:
        return fn()
    finally:
        os.chdir("/")


def _near_path_max() -> str:
    """A relative path of PATH_MAX - 1 bytes, the longest the kernel takes, as pjdfstest makes it."""
    parts, length = [], 0
    while length < PATH_MAX - 1:
        parts.append(chr(ord("a") + len(parts) % 26) * COMPONENT)
        length += COMPONENT + 1
    return "/".join(parts)[: PATH_MAX - 1]


def _names_at_path_max() -> dict[str, object]:
    """What pjdfstest's */03.t and rename/02.t do at the longest path."""
    nx = _near_path_max()
    os.makedirs(os.path.dirname(nx))
    seen: dict[str, object] = {}
    os.close(os.open(nx, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.chmod(nx, 0o642)
    os.chown(nx, 1000, 1000)
    os.truncate(nx, 123)
    st = os.stat(nx)
    seen["create, chmod, chown, truncate"] = (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_size)
    fd = os.open(nx, os.O_RDWR)
    try:
        os.ftruncate(fd, 7)
        os.pwrite(fd, b"x", 0)
    finally:
        os.close(fd)
    seen["ftruncate"] = os.stat(nx).st_size
    os.link(nx, "short")
    os.unlink(nx)
    os.rename("short", nx)
    os.rename(nx, "short")
    seen["link, rename both ways"] = (os.path.exists(nx), os.stat("short").st_nlink)
    os.unlink("short")
    os.mkdir(nx, 0o755)
    os.rmdir(nx)
    os.mkfifo(nx, 0o644)
    is_fifo = stat.S_ISFIFO(os.lstat(nx).st_mode)
    os.unlink(nx)
    os.mknod(nx, stat.S_IFIFO | 0o600)
    os.unlink(nx)
    os.symlink("target", nx)
    seen["mkdir, mkfifo, mknod, symlink"] = (is_fifo, os.readlink(nx))
    os.unlink(nx)
    try:
        os.stat(nx + "x")
    except OSError as e:
        seen["one byte more"] = e.errno
    return seen


@needs_subuid
@pytest.mark.fuse_overlayfs_bug("a path past PATH_MAX below its layer fails with ENAMETOOLONG")
def test_every_call_takes_a_path_of_path_max_below_a_subdirectory(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"sub": Dir()}])
    assert ov(_in, ov.p("sub"), _names_at_path_max) == {
        "create, chmod, chown, truncate": ("0o642", 1000, 1000, 123),
        "ftruncate": 7,
        "link, rename both ways": (False, 1),
        "mkdir, mkfifo, mknod, symlink": (True, "target"),
        "one byte more": errno.ENAMETOOLONG,  # the kernel's own limit
    }


def _make_deep_lower_file() -> None:
    nx = _near_path_max()
    os.makedirs(os.path.dirname(nx))
    with open(nx, "wb") as f:
        f.write(LOWER_DATA)


def _change_deep_lower_file() -> tuple[bytes, bytes, int]:
    """Read the lower file, append to it (a copy-up), then remove it (a whiteout)."""
    nx = _near_path_max()
    with open(nx, "rb") as f:
        before = f.read()
    with open(nx, "ab") as f:
        f.write(b"more\n")
    os.chmod(nx, 0o600)
    with open(nx, "rb") as f:
        after = f.read()
    mode = stat.S_IMODE(os.stat(nx).st_mode)
    os.unlink(nx)
    return before, after, mode


def _exists() -> bool:
    return os.path.lexists(_near_path_max())


@pytest.mark.fuse_overlayfs_bug("a lower file past PATH_MAX below its layer is not found")
def test_a_lower_file_at_path_max_below_a_subdirectory_is_read_copied_up_and_removed(
        make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"sub/keep": File()}])
    ov.umount()
    ov(_in, ov.l(0, "sub"), _make_deep_lower_file)
    ov.mount()
    assert ov(_in, ov.p("sub"), _change_deep_lower_file) == (LOWER_DATA, LOWER_DATA + b"more\n", 0o600)
    assert not ov(_in, ov.p("sub"), _exists)
    assert ov(_in, ov.l(0, "sub"), _exists)
    ov.remount()
    assert not ov(_in, ov.p("sub"), _exists)
