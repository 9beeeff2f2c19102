"""Copy-up: the first change to a lower file copies it to the upper directory with its data,
mode, owner, times and xattrs, its parents first; the lower file is never touched."""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.fs.conftest import MakeOverlay, needs_subuid
from tests.fs.harness import (
    Dir,
    Fifo,
    File,
    Node,
    Symlink,
    check_upper,
    listdir,
    lstat,
    node,
    read,
    snapshot,
    stored_xattrs,
    xattrs,
)

T0 = 1_000_000_000.0  # a past mtime, to see whether copy-up keeps it
DATA = b"0123456789" * 1000
LOWER = {
    "a": Dir(mode=0o750, uid=1000, gid=1001, xattrs={"user.dir": b"A"}, mtime=T0),
    "a/b": Dir(mode=0o705, uid=1002, gid=1003, mtime=T0 + 1),
    "a/b/f": File(DATA, mode=0o640, uid=1004, gid=1005, xattrs={"user.note": b"kept", "user.other": b"2"},
                  mtime=T0 + 2),
    "a/b/sibling": File(b"s"),
}


def _write_one_byte(p: str) -> None:
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"X", 5)
    finally:
        os.close(fd)


def _truncate(p: str) -> None:
    os.truncate(p, 7)


def _chmod(p: str) -> None:
    os.chmod(p, 0o604)


def _chown(p: str) -> None:
    os.chown(p, 2000, 2001)


def _utimens(p: str) -> None:
    os.utime(p, ns=(1_500_000_000_000_000_123, 1_600_000_000_000_000_456))


def _setxattr(p: str) -> None:
    os.setxattr(p, "user.added", b"new")


def _link(p: str) -> None:
    os.link(p, p + ".link")


def _rename(p: str) -> None:
    os.rename(p, p + ".moved")


def _expected(trigger: Callable[[str], None], before: Node) -> tuple[str, Node, dict[str, bytes], int]:
    """(where the file is afterwards, what it looks like, its xattrs, its mtime in ns)."""
    path, n, xs, mtime = "a/b/f", before, {"user.note": b"kept", "user.other": b"2"}, int((T0 + 2) * 1e9)
    if trigger is _write_one_byte:
        n = replace(n, content=_digest(DATA[:5] + b"X" + DATA[6:]))
        mtime = -1  # now
    elif trigger is _truncate:
        n = replace(n, size=7, content=_digest(DATA[:7]))
        mtime = -1
    elif trigger is _chmod:
        n = replace(n, mode=0o604)
    elif trigger is _chown:
        n = replace(n, uid=2000, gid=2001)
    elif trigger is _utimens:
        mtime = 1_600_000_000_000_000_456
    elif trigger is _setxattr:
        xs = {**xs, "user.added": b"new"}
    elif trigger is _link:
        n = replace(n, nlink=2)
    elif trigger is _rename:
        path = "a/b/f.moved"
    return path, n, xs, mtime


def _digest(data: bytes) -> str:
    """As Node.content has it."""
    return hashlib.sha256(data).hexdigest()[:16]


@needs_subuid
@pytest.mark.parametrize("trigger", [_write_one_byte, _truncate, _chmod, _chown, _utimens, _setxattr, _link, _rename],
                         ids=lambda f: f.__name__.strip("_"))
def test_copy_up_keeps_what_was_not_changed(make_overlay: MakeOverlay, trigger: Callable[[str], None]) -> None:
    ov = make_overlay([LOWER])
    lower_before = ov(snapshot, ov.l(0))
    lower_times = {rel: ov(lstat, ov.l(0, rel)).st_mtime_ns for rel in LOWER}
    before = ov(node, ov.p("a/b/f"))
    ov(trigger, ov.p("a/b/f"))
    path, want, want_xattrs, want_mtime = _expected(trigger, before)

    assert ov(xattrs, ov.p(path)) == want_xattrs
    assert ov(stored_xattrs, ov.u(path)) == want_xattrs
    for view in (ov.p(path), ov.u(path)):
        assert ov(node, view) == want, view
        if want_mtime >= 0:
            assert ov(lstat, view).st_mtime_ns == want_mtime, view
    if trigger is _link:
        # One file under two names (st_ino of the merged names: test_semantics_names).
        assert ov(lstat, ov.u("a/b/f.link")).st_ino == ov(lstat, ov.u("a/b/f")).st_ino
        ov(_write_one_byte, ov.p("a/b/f.link"))
        assert ov(read, ov.p("a/b/f"))[5:6] == b"X"
    # The parents came up first, as they were.
    for rel in ("a", "a/b"):
        assert ov(node, ov.u(rel)) == ov(node, ov.l(0, rel)), rel
        assert ov(stored_xattrs, ov.u(rel)) == ov(xattrs, ov.l(0, rel)), rel
        assert ov(xattrs, ov.p(rel)) == ov(xattrs, ov.l(0, rel)), rel
        assert ov(lstat, ov.p(rel)).st_mode == ov(lstat, ov.l(0, rel)).st_mode
    if trigger is not _link and trigger is not _rename:
        # Copy-up alone does not change a directory: only adding or removing a name does.
        assert ov(lstat, ov.p("a/b")).st_mtime_ns == lower_times["a/b"]
    assert ov(lstat, ov.p("a")).st_mtime_ns == lower_times["a"]
    assert ov(snapshot, ov.l(0)) == lower_before
    assert {rel: ov(lstat, ov.l(0, rel)).st_mtime_ns for rel in LOWER} == lower_times
    # Only the changed file (and its parents) came up, not its sibling.
    assert not ov(os.path.lexists, ov.u("a/b/sibling"))


@pytest.mark.fuse_overlayfs_bug("a copy-up leaves the upper parent with the time of the copy")
def test_copy_up_keeps_the_times_of_the_upper_parent(make_overlay: MakeOverlay) -> None:
    # The copy is renamed into the upper parent: the merged view must not depend on the kernel
    # still caching the directory's attributes from before.
    ov = make_overlay([{"d": Dir(mtime=T0), "d/f": File(b"data")}])
    ov(os.chmod, ov.p("d/f"), 0o600)
    assert ov(lstat, ov.u("d")).st_mtime == T0
    assert ov(lstat, ov.p("d")).st_mtime == T0


def test_copy_up_of_a_file_from_a_deeper_lower(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/top": File(b"t")}, {"d/deep/f": File(b"deep data", mode=0o600)}])
    with_fd = ov(_append, ov.p("d/deep/f"), b"+more")
    assert with_fd == b"deep data+more"
    assert ov(read, ov.u("d/deep/f")) == b"deep data+more"
    assert ov(read, ov.l(1, "d/deep/f")) == b"deep data"
    assert stat.S_IMODE(ov(lstat, ov.u("d/deep/f")).st_mode) == 0o600
    check_upper(ov, {"d": "dir", "d/deep": "dir", "d/deep/f": "file"})


def _append(p: str, data: bytes) -> bytes:
    with open(p, "ab") as f:
        f.write(data)
    return read(p)


def _open_read_then_write(p: str) -> bytes:
    """What a reader opened before copy-up read; then a writer copies the file up. (Whether the
    old reader sees the new data afterwards differs: the kernel overlay keeps it on the lower.)"""
    with open(p, "rb") as r:
        before = r.read()
        with open(p, "r+b") as w:
            w.write(b"NEW")
        return before


def test_read_only_open_does_not_copy_up(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"data")}])
    assert ov(read, ov.p("f")) == b"data"
    assert ov(lstat, ov.p("f")).st_size == 4
    check_upper(ov, {})


def test_write_through_a_new_fd_after_copy_up(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(b"old data")}])
    assert ov(_open_read_then_write, ov.p("f")) == b"old data"
    assert ov(read, ov.p("f")) == b"NEW data"
    assert ov(read, ov.l(0, "f")) == b"old data"
    check_upper(ov, {"f": "file"})


@pytest.mark.fuse_overlayfs_bug("chmod of a lower fifo gives EIO")
@needs_subuid
def test_special_files_copy_up_as_what_they_are(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"fifo": Fifo(0o600), "link": Symlink("target/of/link"), "d/x": File()}])
    ov(os.chmod, ov.p("fifo"), 0o640)
    ov(os.chown, ov.p("link"), 1000, 1000, follow_symlinks=False)
    ov(os.utime, ov.p("d"), (T0, T0))
    for view in (ov.p, ov.u):
        fifo, link = ov(node, view("fifo")), ov(node, view("link"))
        assert (fifo.kind, fifo.mode) == ("fifo", 0o640)
        assert (link.kind, link.content, link.uid, link.gid) == ("symlink", "target/of/link", 1000, 1000)
        assert ov(lstat, view("d")).st_mtime == T0
    assert ov(listdir, ov.p("d")) == ["x"]
