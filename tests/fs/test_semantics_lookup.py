"""Lookup and readdir through the layers: whiteouts, opaque directories, `.` and `..`, inode
numbers that readdir and stat agree on, and iteration while the directory changes."""
from __future__ import annotations

import errno
import os

import pytest

from tests.fs.conftest import MakeOverlay
from tests.fs.harness import (
    WHITEOUT,
    Dir,
    File,
    Symlink,
    getdents,
    listdir,
    lstat,
    read,
    readdir_all,
    write,
)


@pytest.mark.single_id
def test_merged_view_of_two_lowers(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/a": File(b"top"), "d/both": File(b"from L1"), "link": Symlink("d/a")},
                       {"d/b": File(b"low"), "d/both": File(b"from L2"), "e/c": File()}])
    assert ov(listdir, ov.p()) == ["d", "e", "link"]
    assert ov(listdir, ov.p("d")) == ["a", "b", "both"]
    assert ov(read, ov.p("d/both")) == b"from L1"
    assert ov(read, ov.p("d/b")) == b"low"
    assert ov(read, ov.p("link")) == b"top"
    assert ov(os.readlink, ov.p("link")) == "d/a"


def test_upper_entries_hide_lower_ones(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/f": File(b"lower"), "d/g": File()}], upper={"d/f": File(b"upper"), "d/new": File()})
    assert ov(listdir, ov.p("d")) == ["f", "g", "new"]
    assert ov(read, ov.p("d/f")) == b"upper"


def test_whiteout_in_a_lower_hides_the_layers_below(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/gone": WHITEOUT, "d/kept": File(b"1"), "gonedir": WHITEOUT},
                       {"d/gone": File(b"2"), "d/other": File(), "gonedir/x": File()}])
    assert ov(listdir, ov.p("d")) == ["kept", "other"]
    assert ov(listdir, ov.p()) == ["d"]
    assert ov.errno(lstat, ov.p("d/gone")) == errno.ENOENT
    assert ov.errno(lstat, ov.p("gonedir/x")) == errno.ENOENT


def test_whiteout_in_the_upper_hides_the_lowers(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/a": File(), "d/b": File()}, {"d/c": File()}], upper={"d/a": WHITEOUT, "d/c": WHITEOUT})
    assert ov(listdir, ov.p("d")) == ["b"]
    assert ov.errno(read, ov.p("d/c")) == errno.ENOENT


def test_opaque_directory_hides_lower_entries(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d": Dir(opaque=True), "d/top": File(b"t")},
                       {"d/hidden": File(), "d/sub/deep": File()}],
                      upper={"u": Dir(opaque=True), "u/new": File()})
    assert ov(listdir, ov.p("d")) == ["top"]
    assert ov.errno(lstat, ov.p("d/sub")) == errno.ENOENT
    ov2 = make_overlay([{"u/old": File(), "u/olddir/x": File()}], upper={"u": Dir(opaque=True), "u/new": File()})
    assert ov2(listdir, ov2.p("u")) == ["new"]
    assert ov2.errno(lstat, ov2.p("u/old")) == errno.ENOENT


def test_a_file_in_a_higher_layer_hides_a_directory_below(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"x": File(b"file")}, {"x/inside": File()}])
    assert ov(read, ov.p("x")) == b"file"
    assert ov.errno(lstat, ov.p("x/inside")) == errno.ENOTDIR


def test_dot_and_dotdot(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/sub/f": File()}, {"d/sub/g": File()}])
    entries = ov(readdir_all, ov.p("d/sub"))
    names = [n for n, _ in entries]
    assert sorted(names) == [".", "..", "f", "g"]
    assert ov(lstat, ov.p("d/sub/.")).st_ino == ov(lstat, ov.p("d/sub")).st_ino
    assert ov(lstat, ov.p("d/sub/..")).st_ino == ov(lstat, ov.p("d")).st_ino


def test_readdir_inode_numbers_match_stat(make_overlay: MakeOverlay) -> None:
    # find -inum, du and tar's hard link detection pair readdir's d_ino with stat's st_ino.
    ov = make_overlay([{"d/a": File(), "d/sub/x": File()}, {"d/b": File(), "d/sub/y": File()}],
                      upper={"d/c": File()})
    for name, ino in ov(readdir_all, ov.p("d")):
        if name not in (".", ".."):
            assert ino == ov(lstat, ov.p(f"d/{name}")).st_ino, name


def _iterate_while_changing(d: str) -> tuple[list[str], list[str], list[str]]:
    """Read a directory a few entries per getdents call, creating and removing entries in
    between; returns (names seen, names removed before they could be seen, names created)."""
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    seen: list[str] = []
    removed: list[str] = []
    created: list[str] = []
    try:
        round_ = 0
        while batch := getdents(fd, 256):
            seen += [n for n, _, _ in batch if n not in (".", "..")]
            left = sorted(set(os.listdir(d)) - set(seen) - set(created))
            if left:
                os.unlink(os.path.join(d, left[-1]))
                removed.append(left[-1])
            name = f"new{round_:03d}"
            write(os.path.join(d, name), b"")
            created.append(name)
            round_ += 1
    finally:
        os.close(fd)
    return seen, removed, created


def test_readdir_is_stable_while_entries_change(make_overlay: MakeOverlay) -> None:
    upper_names = [f"up{i:03d}" for i in range(40)]
    lower_names = [f"lo{i:03d}" for i in range(40)]
    ov = make_overlay([{f"d/{n}": File() for n in lower_names[:20]}, {f"d/{n}": File() for n in lower_names[20:]}],
                      upper={f"d/{n}": File() for n in upper_names})
    seen, removed, created = ov(_iterate_while_changing, ov.p("d"))
    assert removed, "the directory was read in one call: the case tests nothing"
    # POSIX leaves it open whether entries added or removed during the walk are returned; every
    # other entry must come exactly once.
    untouched = set(upper_names + lower_names) - set(removed)
    assert len(seen) == len(set(seen)), sorted(n for n in seen if seen.count(n) > 1)
    assert untouched <= set(seen)
    assert set(seen) <= set(upper_names + lower_names + created)
    assert ov(listdir, ov.p("d")) == sorted(untouched | set(created))


def _seek_back(d: str) -> tuple[list[str], list[str]]:
    """Read a directory, seek back to a d_off returned midway and read on: what follows twice."""
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = getdents(fd, 256)
        mark = first[-1][2]
        rest = [n for batch in iter(lambda: getdents(fd, 256), []) for n, _, _ in batch]
        os.lseek(fd, mark, os.SEEK_SET)
        again = [n for batch in iter(lambda: getdents(fd, 256), []) for n, _, _ in batch]
        return rest, again
    finally:
        os.close(fd)


def test_seekdir_to_a_returned_offset_resumes_there(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{f"d/lo{i:03d}": File() for i in range(30)}], upper={f"d/up{i:03d}": File() for i in range(30)})
    rest, again = ov(_seek_back, ov.p("d"))
    assert rest and rest == again
