"""File data: open flags, mmap, sparse files, fallocate, fsync, st_blocks and statfs."""
from __future__ import annotations

import errno
import mmap
import os
import time

import pytest

from tests.fs.conftest import MakeOverlay
from tests.fs.harness import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    WHITEOUT,
    File,
    check_upper,
    fallocate,
    lstat,
    read,
    write,
)

MIB = 1 << 20


def test_o_trunc_of_a_lower_file(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"lower data", mode=0o600)}])
    ov(write, ov.p("f"), b"", os.O_WRONLY | os.O_TRUNC)
    assert ov(lstat, ov.p("f")).st_size == 0
    assert ov(lstat, ov.p("f")).st_mode & 0o777 == 0o600
    assert ov(read, ov.l(0, "f")) == b"lower data"
    check_upper(ov, {"f": "file"})


def test_o_append_of_a_lower_file(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"lower")}])
    ov(write, ov.p("f"), b"+1", os.O_WRONLY | os.O_APPEND)
    ov(write, ov.p("f"), b"+2", os.O_WRONLY | os.O_APPEND)
    assert ov(read, ov.p("f")) == b"lower+1+2"


def _append_after_seek(p: str) -> bytes:
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"!")
    finally:
        os.close(fd)
    return read(p)


def test_o_append_ignores_the_file_offset(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"abc")}])
    assert ov(_append_after_seek, ov.p("f")) == b"abc!"


def test_o_excl(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/lower": File(), "d/gone": WHITEOUT}, {"d/gone": File(b"hidden")}],
                      upper={"d/upper": File()})
    excl = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    assert ov.errno(write, ov.p("d/lower"), b"x", excl) == errno.EEXIST
    assert ov.errno(write, ov.p("d/upper"), b"x", excl) == errno.EEXIST
    ov(write, ov.p("d/gone"), b"x", excl)
    ov(write, ov.p("d/new"), b"y", excl)
    assert (ov(read, ov.p("d/gone")), ov(read, ov.p("d/new"))) == (b"x", b"y")
    assert ov(read, ov.p("d/lower")) == b""


def _mmap_write(p: str, offset: int, data: bytes) -> bytes:
    """Change a file through a shared mapping, msync it, and read it back with read(2)."""
    fd = os.open(p, os.O_RDWR)
    try:
        with mmap.mmap(fd, 0) as m:
            m[offset:offset + len(data)] = data
            m.flush()
    finally:
        os.close(fd)
    return read(p)


def test_mmap_writes_reach_the_file(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"lower": File(b"L" * 3 * 4096)}], upper={"upper": File(b"U" * 5000)})
    want_lower = b"L" * 4090 + b"mapped" + b"L" * (2 * 4096)
    assert ov(_mmap_write, ov.p("lower"), 4090, b"mapped") == want_lower
    assert ov(_mmap_write, ov.p("upper"), 0, b"MAP") == b"MAP" + b"U" * 4997
    assert ov(read, ov.l(0, "lower")) == b"L" * 3 * 4096
    ov.remount()
    assert ov(read, ov.p("lower")) == want_lower
    assert ov(read, ov.p("upper")) == b"MAP" + b"U" * 4997


def _sparse(p: str) -> tuple[int, int, int, int]:
    """Write 4 KiB at 0 and at 1 MiB: (first hole, next data, st_size, st_blocks)."""
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"a" * 4096, 0)
        os.pwrite(fd, b"b" * 4096, MIB)
        os.fsync(fd)
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        data = os.lseek(fd, hole, os.SEEK_DATA)
        st = os.fstat(fd)
        return hole, data, st.st_size, st.st_blocks
    finally:
        os.close(fd)


def _holes(p: str) -> tuple[int, int, bytes]:
    fd = os.open(p, os.O_RDONLY)
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        data = os.lseek(fd, hole, os.SEEK_DATA)
        return hole, data, os.pread(fd, 8, MIB - 4)
    finally:
        os.close(fd)


@pytest.mark.fuse_overlayfs_bug("no SEEK_HOLE")
def test_sparse_files_seek_data_and_hole(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{}])
    hole, data, size, blocks = ov(_sparse, ov.p("s"))
    assert (hole, data, size) == (4096, MIB, MIB + 4096)
    assert blocks < MIB // 512, "the hole takes no space"
    assert ov(_holes, ov.p("s")) == (4096, MIB, b"\0" * 4 + b"bbbb")
    assert ov.errno(_seek_data_past_end, ov.p("s")) == errno.ENXIO


def _seek_data_past_end(p: str) -> int:
    fd = os.open(p, os.O_RDONLY)
    try:
        return os.lseek(fd, MIB + 4096, os.SEEK_DATA)
    finally:
        os.close(fd)


def _make_sparse_lower(p: str) -> None:
    with open(p, "wb") as f:
        f.write(b"a" * 4096)
        f.seek(8 * MIB)
        f.write(b"b" * 4096)


def _far_holes(p: str) -> tuple[int, bytes]:
    """(where data resumes after the first hole, the bytes around that place)."""
    fd = os.open(p, os.O_RDONLY)
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        return os.lseek(fd, hole, os.SEEK_DATA), os.pread(fd, 8, 8 * MIB - 4)
    finally:
        os.close(fd)


@pytest.mark.fuse_overlayfs_bug("copy-up fills the holes")
def test_copy_up_keeps_a_sparse_file_sparse(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"s": File()}])
    ov.umount()
    ov(_make_sparse_lower, ov.l(0, "s"))
    ov.mount()
    ov(os.chmod, ov.p("s"), 0o600)
    assert ov(_far_holes, ov.p("s")) == (8 * MIB, b"\0" * 4 + b"bbbb")
    # The kernel copies in 1 MiB chunks and skips holes between them: most of the 8 MiB stays a hole.
    assert ov(lstat, ov.p("s")).st_blocks < 4 * MIB // 512
    assert ov(lstat, ov.u("s")).st_blocks < 4 * MIB // 512


def _fallocate(p: str) -> tuple[int, int, int, int, bytes]:
    """Allocate 1 MiB, then 1 MiB more past the end keeping the size, then punch a hole."""
    fd = os.open(p, os.O_RDWR)
    try:
        fallocate(fd, 0, 0, MIB)
        st1 = os.fstat(fd)
        fallocate(fd, FALLOC_FL_KEEP_SIZE, MIB, MIB)
        st2 = os.fstat(fd)
        os.pwrite(fd, b"x" * 8192, 0)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)
        return st1.st_size, st1.st_blocks, st2.st_size, st2.st_blocks, os.pread(fd, 8, 4092)
    finally:
        os.close(fd)


def test_fallocate(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"lower")}])
    size1, blocks1, size2, blocks2, around_hole = ov(_fallocate, ov.p("f"))
    assert size1 == MIB and blocks1 >= MIB // 512
    assert size2 == MIB and blocks2 >= 2 * MIB // 512
    assert around_hole == b"\0" * 4 + b"xxxx"
    assert ov(read, ov.l(0, "f")) == b"lower"


def _fsync_all(d: str) -> None:
    fd = os.open(os.path.join(d, "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"synced")
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def test_fsync_of_files_and_directories(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/x": File()}])
    ov(_fsync_all, ov.p("d"))
    # Once fsync returned, the data is in the upper file itself, not only in a cache of ours.
    assert ov(read, ov.u("d/f")) == b"synced"


def _blocks_after_writing(p: str, size: int) -> int:
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    return os.lstat(p).st_blocks


def test_st_blocks_counts_the_data(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"lower": File(b"x" * 65536)}])
    assert ov(_blocks_after_writing, ov.p("new"), 65536) >= 128
    assert ov(lstat, ov.p("lower")).st_blocks >= 128
    assert ov(lstat, ov.p("lower")).st_blocks == ov(lstat, ov.l(0, "lower")).st_blocks
    ov(write, ov.p("empty"), b"")
    assert ov(lstat, ov.p("empty")).st_blocks == 0


def test_statfs_is_the_upper_filesystems(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File()}])
    merged, upper = ov(os.statvfs, ov.p()), ov(os.statvfs, ov.u())
    assert (merged.f_bsize, merged.f_blocks, merged.f_files) == (upper.f_bsize, upper.f_blocks, upper.f_files)
    # Free space moves with other users of the disk: it only has to be the upper's order of size.
    assert 0 < merged.f_bavail <= merged.f_blocks
    assert merged.f_bavail >= upper.f_bavail // 2


def _rewrite_middle(p: str, offset: int, data: bytes) -> str:
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    import hashlib

    return hashlib.sha256(read(p)).hexdigest()


def test_big_files_keep_every_byte(make_overlay: MakeOverlay) -> None:
    import hashlib

    blob = os.urandom(5 * MIB + 123)
    ov = make_overlay([{"big": File(blob)}])
    patch = os.urandom(70000)
    want = blob[:3 * MIB - 7] + patch + blob[3 * MIB - 7 + len(patch):]
    assert ov(_rewrite_middle, ov.p("big"), 3 * MIB - 7, patch) == hashlib.sha256(want).hexdigest()
    ov(write, ov.p("new"), blob)
    assert ov(read, ov.p("new")) == blob
    ov.remount()
    assert ov(read, ov.p("big")) == want
    assert ov(read, ov.p("new")) == blob


def _ftruncate(p: str, size: int) -> bytes:
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, size)
        return os.pread(fd, size + 10, 0)
    finally:
        os.close(fd)


def test_truncate_to_grow_and_shrink(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"12345"), "g": File(b"abcdef")}])
    assert ov(_ftruncate, ov.p("f"), 10) == b"12345" + b"\0" * 5
    ov(os.truncate, ov.p("g"), 2)
    assert ov(read, ov.p("g")) == b"ab"
    assert ov(lstat, ov.p("g")).st_size == 2


def test_opening_a_directory_for_writing_is_eisdir(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/x": File()}])
    assert ov.errno(write, ov.p("d"), b"", os.O_WRONLY) == errno.EISDIR
    assert ov.errno(os.open, ov.p("d/x"), os.O_RDONLY | os.O_DIRECTORY) == errno.ENOTDIR


def _write_across_renames(d: str) -> dict[str, bytes]:
    """Open files, then rename them (and a parent) and put new files at the old names; write
    through the old descriptors: the data must follow the open files, not the names."""
    os.makedirs(os.path.join(d, "dir"))
    write(os.path.join(d, "dir", "inner"), b"")
    fds = {
        "lower": os.open(os.path.join(d, "lower"), os.O_WRONLY | os.O_APPEND),
        "upper": os.open(os.path.join(d, "upper"), os.O_WRONLY | os.O_APPEND),
        "inner": os.open(os.path.join(d, "dir", "inner"), os.O_WRONLY | os.O_APPEND),
    }
    try:
        os.rename(os.path.join(d, "lower"), os.path.join(d, "lower.moved"))
        os.rename(os.path.join(d, "upper"), os.path.join(d, "upper.moved"))
        os.rename(os.path.join(d, "dir"), os.path.join(d, "dir.moved"))
        for name in ("lower", "upper", "dir/inner"):
            os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
            write(os.path.join(d, name), b"impostor")
        for name, fd in fds.items():
            os.write(fd, f"+{name}".encode())
    finally:
        for fd in fds.values():
            os.close(fd)
    return {rel: read(os.path.join(d, rel))
            for rel in ("lower", "upper", "dir/inner", "lower.moved", "upper.moved", "dir.moved/inner")}


def test_writes_follow_an_open_file_across_renames(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/lower": File(b"L")}], upper={"d/upper": File(b"U")})
    assert ov(_write_across_renames, ov.p("d")) == {
        "lower": b"impostor", "upper": b"impostor", "dir/inner": b"impostor",
        "lower.moved": b"L+lower", "upper.moved": b"U+upper", "dir.moved/inner": b"+inner",
    }


def test_after_close_the_upper_holds_the_data(make_overlay: MakeOverlay) -> None:
    # A commit or diff of a running container reads the upper directory while it is mounted.
    ov = make_overlay([{"d/f": File(b"lower")}])
    ov(write, ov.p("d/f"), b"+appended", os.O_WRONLY | os.O_APPEND)
    ov(write, ov.p("d/new"), b"new data")
    assert ov(read, ov.u("d/f")) == b"lower+appended"
    assert ov(read, ov.u("d/new")) == b"new data"


def _times_after(p: str, change: str) -> tuple[bool, bool]:
    """(did mtime move, did ctime move) when `change` is made to the file at p."""
    past = 1_000_000_000
    os.utime(p, (past, past))
    before = os.lstat(p)
    # Past the clock tick: a change within the same tick may keep the coarse timestamp.
    time.sleep(0.02)
    if change == "write":
        write(p, b"x", os.O_WRONLY | os.O_APPEND)
    else:
        os.chmod(p, 0o600)
    after = os.lstat(p)
    return after.st_mtime_ns != before.st_mtime_ns, after.st_ctime_ns != before.st_ctime_ns


def test_write_moves_mtime_and_chmod_only_ctime(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"a": File(b"a"), "b": File(b"b")}])
    assert ov(_times_after, ov.p("a"), "write") == (True, True)
    assert ov(_times_after, ov.p("b"), "chmod") == (False, True)
