"""Attributes: user xattrs (the overlay's own hidden), inode numbers stable for the life of a
mount, permission checks for a non-root uid, and a remount that shows the same tree."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fs.conftest import MakeOverlay, needs_subuid
from tests.fs.harness import (
    WHITEOUT,
    Dir,
    File,
    HardLink,
    Symlink,
    as_user,
    listdir,
    lstat,
    read,
    snapshot,
    stored_xattrs,
    write,
    xattrs,
)


def test_user_xattrs_round_trip(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"lower": File(b"l", xattrs={"user.old": b"1"}), "d": Dir(xattrs={"user.d": b"D"})}])
    ov(write, ov.p("new"), b"n")
    for rel in ("lower", "new", "d"):
        ov(os.setxattr, ov.p(rel), "user.k", b"\0binary\xff")
        assert ov(os.getxattr, ov.p(rel), "user.k") == b"\0binary\xff"
    assert ov(xattrs, ov.p("lower")) == {"user.old": b"1", "user.k": b"\0binary\xff"}
    assert ov(xattrs, ov.p("d")) == {"user.d": b"D", "user.k": b"\0binary\xff"}
    ov(os.removexattr, ov.p("lower"), "user.old")
    assert ov(xattrs, ov.p("lower")) == {"user.k": b"\0binary\xff"}
    assert ov.errno(os.getxattr, ov.p("lower"), "user.old") == errno.ENODATA
    assert ov.errno(os.removexattr, ov.p("new"), "user.never") == errno.ENODATA
    assert ov.errno(os.setxattr, ov.p("new"), "user.k", b"v", os.XATTR_CREATE) == errno.EEXIST
    assert ov.errno(os.setxattr, ov.p("new"), "user.none", b"v", os.XATTR_REPLACE) == errno.ENODATA
    ov.remount()
    assert ov(xattrs, ov.p("lower")) == {"user.k": b"\0binary\xff"}
    assert ov(stored_xattrs, ov.u("lower")) == {"user.k": b"\0binary\xff"}
    assert ov(xattrs, ov.l(0, "lower")) == {"user.old": b"1"}


def test_the_overlays_own_xattrs_are_hidden(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/x": File(), "f": File(b"data"), "e/y": File()}, {"e/z": File()}],
                      upper={"o": Dir(opaque=True)})
    ov(os.unlink, ov.p("d/x"))
    ov(os.rmdir, ov.p("d"))
    ov(os.mkdir, ov.p("d"))  # opaque now
    ov(os.chmod, ov.p("f"), 0o600)  # copied up, with an origin record
    ov(write, ov.p("e/new"), b"")  # merged directory with an upper part
    for rel in ("d", "f", "e", "o", ""):
        assert ov(xattrs, ov.p(rel)) == {}, rel


def _inodes(root: str, rels: list[str]) -> list[int]:
    return [os.lstat(os.path.join(root, r)).st_ino for r in rels]


def _busy_work(root: str) -> None:
    """Changes around the files whose inode numbers must hold, enough to churn any cache."""
    for i in range(300):
        write(os.path.join(root, "d", f"tmp{i}"), b"")
    for i in range(300):
        os.unlink(os.path.join(root, "d", f"tmp{i}"))
    os.listdir(os.path.join(root, "d"))


def test_inode_numbers_are_stable_while_mounted(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"d/a": File(b"a"), "d/sub/b": File(b"b"), "l": Symlink("d/a")}, {"d/c": File(b"c")}],
                      upper={"d/u": File(b"u")})
    rels = ["", "d", "d/a", "d/sub", "d/sub/b", "d/c", "d/u", "l"]
    first = ov(_inodes, ov.p(), rels)
    assert len(set(first)) == len(rels)
    ov(_busy_work, ov.p())
    assert ov(_inodes, ov.p(), rels) == first
    # Copy-up changes nothing a user can see: same inode number before and after.
    ov(write, ov.p("d/a"), b"changed", os.O_WRONLY | os.O_APPEND)
    ov(os.chmod, ov.p("d/sub/b"), 0o600)
    ov(os.chmod, ov.p("d/c"), 0o600)
    assert ov(_inodes, ov.p(), rels) == first
    # One device for the whole mount, whichever layer a file is in: find -xdev, du -x and tar
    # --one-file-system stop where st_dev changes.
    assert len({ov(lstat, ov.p(r)).st_dev for r in rels}) == 1
    # A renamed file keeps its inode number.
    ov(os.rename, ov.p("d/u"), ov.p("d/sub/u2"))
    assert ov(lstat, ov.p("d/sub/u2")).st_ino == first[rels.index("d/u")]


def test_link_counts(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"f": File(), "g": File(), "h": HardLink("g")}])
    assert ov(lstat, ov.p("f")).st_nlink == 1
    assert ov(lstat, ov.p("g")).st_nlink == 2
    ov(os.link, ov.p("f"), ov.p("f2"))
    assert (ov(lstat, ov.p("f")).st_nlink, ov(lstat, ov.p("f2")).st_nlink) == (2, 2)
    ov(os.unlink, ov.p("f"))
    assert ov(lstat, ov.p("f2")).st_nlink == 1
    ov(write, ov.p("new"), b"")
    assert ov(lstat, ov.p("new")).st_nlink == 1


ACCESS_LOWER = {
    "secret": File(b"s", mode=0o000),
    "public": File(b"p", mode=0o644),
    "mine": File(b"m", mode=0o600, uid=1000, gid=1000),
    "rootdir": Dir(mode=0o755),
    "userdir": Dir(mode=0o755, uid=1000, gid=1000),
    "private": Dir(mode=0o700),
    "private/f": File(b"hidden"),
    "group": File(b"g", mode=0o040, uid=5, gid=1000),
    "tmp": Dir(mode=0o1777),
    "tmp/others": File(b"o", mode=0o666, uid=1001, gid=1001),
}


def _as_1000(cwd: str, fn: Callable[..., Any], *args: Any) -> Any:
    return as_user(1000, 1000, cwd, fn, *args)


def _errno_as_1000(cwd: str, fn: Callable[..., Any], *args: Any) -> int:
    try:
        _as_1000(cwd, fn, *args)
    except OSError as e:
        return e.errno or -1
    return 0


@needs_subuid
def test_permission_checks_for_a_non_root_uid(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([ACCESS_LOWER])
    # Root of the namespace reads anything; uid 1000 only what the modes let it.
    assert ov(read, ov.p("secret")) == b"s"
    assert ov(_errno_as_1000, ov.p(), read, "secret") == errno.EACCES
    assert ov(_as_1000, ov.p(), read, "public") == b"p"
    assert ov(_as_1000, ov.p(), read, "mine") == b"m"
    assert ov(_errno_as_1000, ov.p(), write, "public", b"x", os.O_WRONLY) == errno.EACCES
    assert ov(_errno_as_1000, ov.p(), write, "rootdir/f", b"x") == errno.EACCES
    assert ov(_errno_as_1000, ov.p(), listdir, "private") == errno.EACCES
    assert ov(_errno_as_1000, ov.p(), read, "private/f") == errno.EACCES
    assert ov(_errno_as_1000, ov.p(), os.chmod, "public", 0o666) == errno.EPERM
    assert ov(_errno_as_1000, ov.p(), os.unlink, "public") == errno.EACCES
    # The sticky /tmp of every container: others' files stay, writable or not.
    assert ov(_errno_as_1000, ov.p(), os.unlink, "tmp/others") == errno.EPERM
    assert ov(_errno_as_1000, ov.p(), os.rename, "tmp/others", "tmp/mine") == errno.EPERM
    ov(_as_1000, ov.p(), write, "tmp/own", b"")
    ov(_as_1000, ov.p(), os.unlink, "tmp/own")
    assert ov(_as_1000, ov.p(), read, "group") == b"g"
    # What it may do, it can, and what it makes is its own.
    ov(_as_1000, ov.p(), write, "userdir/f", b"by 1000")
    ov(_as_1000, ov.p(), write, "mine", b"changed", os.O_WRONLY | os.O_TRUNC)
    ov(_as_1000, ov.p(), os.mkdir, "userdir/sub")
    for rel in ("userdir/f", "userdir/sub"):
        for view in (ov.p(rel), ov.u(rel)):
            st = ov(lstat, view)
            assert (st.st_uid, st.st_gid) == (1000, 1000), view
    assert ov(read, ov.p("mine")) == b"changed"
    assert ov(lstat, ov.p("secret")).st_mode & 0o777 == 0
    # Nothing refused came up to the upper.
    assert sorted(ov(listdir, ov.u())) == ["mine", "tmp", "userdir"]
    assert ov(listdir, ov.p("tmp")) == ["others"]


def _setgid_dir_child(d: str) -> tuple[int, bool]:
    os.mkdir(os.path.join(d, "sub"))
    st = os.lstat(os.path.join(d, "sub"))
    return st.st_gid, bool(st.st_mode & stat.S_ISGID)


@pytest.mark.fuse_overlayfs_bug("a setgid directory's group is not inherited")
@needs_subuid
def test_setgid_directory_gives_its_group(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"g": Dir(mode=0o2777, gid=1234)}])
    assert ov(_as_1000, ov.p(), _setgid_dir_child, "g") == (1234, True)


REMOUNT_LOWER = {"d/a": File(b"a"), "d/b": File(b"b"), "d/sub/x": File(b"x"), "e/y": File(), "l": Symlink("d/a")}


def _many_changes(root: str) -> None:
    p = lambda rel: os.path.join(root, rel)
    write(p("d/a"), b"rewritten")
    os.unlink(p("d/b"))
    os.unlink(p("d/sub/x"))
    os.rmdir(p("d/sub"))
    os.mkdir(p("d/sub"))
    write(p("d/sub/new"), b"new")
    os.chmod(p("e"), 0o700)
    os.symlink("d/sub/new", p("l2"))
    os.link(p("d/a"), p("e/a-link"))
    os.mkfifo(p("e/fifo"))
    os.setxattr(p("e/y"), "user.x", b"1")
    os.rename(p("e/y"), p("d/y"))


@pytest.mark.single_id
def test_remount_shows_the_same_tree(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([REMOUNT_LOWER, {"e/deep": File(b"deep"), "d/gone": WHITEOUT}])
    ov(_many_changes, ov.p())
    before = ov(snapshot, ov.p())
    before_x = ov(xattrs, ov.p("d/y"))
    ov.remount()
    assert ov(snapshot, ov.p()) == before
    assert ov(xattrs, ov.p("d/y")) == before_x == {"user.x": b"1"}
    assert ov(listdir, ov.p("d/sub")) == ["new"]


def _try_setxattr(path: str, name: str, value: bytes) -> None:
    """setxattr, with a refusal counted as fine: what matters is what it changes."""
    try:
        os.setxattr(path, name, value)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
            raise


@pytest.mark.fuse_overlayfs_bug("a forged user.overlay.opaque takes effect after a remount")
def test_a_container_cannot_forge_the_overlays_markers(make_overlay: MakeOverlay) -> None:
    # An opaque or redirect xattr set from inside must not steer the overlay, now or when the
    # upper is mounted again (or turned into a layer).
    ov = make_overlay([{"d/x": File(), "e/y": File(), "f": File(b"f")}])
    ov(_try_setxattr, ov.p("d"), "user.overlay.opaque", b"y")
    ov(_try_setxattr, ov.p("e"), "user.fuseoverlayfs.opaque", b"y")
    ov(_try_setxattr, ov.p("f"), "user.containers.override_stat", b"0:0:04777")
    for _ in range(2):
        assert ov(listdir, ov.p("d")) == ["x"]
        assert ov(listdir, ov.p("e")) == ["y"]
        assert ov(lstat, ov.p("f")).st_mode & 0o7777 == 0o644
        ov.remount()


@pytest.mark.fuse_overlayfs_bug("user.overlay.* xattrs cannot be read back")
def test_user_overlay_xattrs_are_plain_xattrs_inside(make_overlay: MakeOverlay) -> None:
    # The kernel escapes user.overlay.* names set through the overlay, so an overlay nested in a
    # container (podman inside) can keep its own markers on this filesystem.
    ov = make_overlay([{"d/x": File()}])
    ov(os.setxattr, ov.p("d"), "user.overlay.opaque", b"y")
    assert ov(os.getxattr, ov.p("d"), "user.overlay.opaque") == b"y"
    ov.remount()
    assert ov(xattrs, ov.p("d")) == {"user.overlay.opaque": b"y"}
    assert ov(listdir, ov.p("d")) == ["x"]


# VFS_CAP_REVISION_2, effective, permitted CAP_NET_RAW: what `setcap cap_net_raw+ep` writes (ping).
NET_RAW_CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def _status_of(prog: str) -> dict[str, str]:
    """The /proc/self/status lines of `prog` (a copy of cat) reading it."""
    out = subprocess.run([prog, "/proc/self/status"], capture_output=True, check=True).stdout.decode()
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


@pytest.mark.fuse_overlayfs_bug("the setuid bit is lost on copy-up")
@needs_subuid
def test_file_capabilities_and_setuid_take_effect(make_overlay: MakeOverlay) -> None:
    cat = Path(shutil.which("cat") or "/bin/cat").read_bytes()
    ov = make_overlay([{"capcat": File(cat, mode=0o755, xattrs={"security.capability": NET_RAW_CAP}),
                        "suidcat": File(cat, mode=0o4755)}])
    assert ov(_as_1000, ov.p(), _status_of, "./capcat")["CapEff"] == "0000000000002000"
    assert ov(_as_1000, ov.p(), _status_of, "./suidcat")["Uid"].split() == ["1000", "0", "0", "0"]
    # Copy-up keeps them.
    ov(os.chmod, ov.p("capcat"), 0o750 | 0o005)
    ov(os.utime, ov.p("suidcat"), (0, 0))
    assert ov(os.getxattr, ov.p("capcat"), "security.capability") == NET_RAW_CAP
    assert stat.S_IMODE(ov(lstat, ov.p("suidcat")).st_mode) == 0o4755
    assert ov(_as_1000, ov.p(), _status_of, "./capcat")["CapEff"] == "0000000000002000"
    assert ov(_as_1000, ov.p(), _status_of, "./suidcat")["Uid"].split() == ["1000", "0", "0", "0"]


_CHANGES: dict[str, tuple[Callable[[str], None], Callable[[os.stat_result], bool]]] = {
    "chmod": (lambda p: os.chmod(p, 0o600), lambda st: stat.S_IMODE(st.st_mode) == 0o600),
    "truncate": (lambda p: os.truncate(p, 1), lambda st: st.st_size == 1),
    "utime": (lambda p: os.utime(p, (1, 1)), lambda st: st.st_mtime == 1),
}


def _change_unlinked_held_by_o_path(path: str) -> dict[str, object]:
    """Unlink `path` while an O_PATH descriptor holds it, then change the file through that
    descriptor's /proc path: setattr requests for a node with no name and no open file."""
    fd = os.open(path, os.O_PATH)
    try:
        os.unlink(path)
        seen: dict[str, object] = {}
        for name, (change, shows) in _CHANGES.items():
            proc = f"/proc/self/fd/{fd}"
            try:
                change(proc)
            except OSError as e:
                seen[name] = errno.errorcode[e.errno]
            else:
                seen[name] = "applied" if shows(os.stat(proc)) else "not applied"
        return seen
    finally:
        os.close(fd)


@pytest.mark.parametrize("layer", ["lower", "upper"])
def test_changes_to_an_unlinked_file_held_by_o_path_apply_or_fail_with_enoent(
        make_overlay: MakeOverlay, layer: str) -> None:
    f = File(b"data of f")
    ov = make_overlay([{"f": f}] if layer == "lower" else [{}], upper={"f": f} if layer == "upper" else None)
    # The kernel overlay cannot copy up a lower file that lost its name (EEXIST).
    allowed = {"applied", "ENOENT", *(["EEXIST"] if ov.impl == "kernel" else [])}
    seen = ov(_change_unlinked_held_by_o_path, ov.p("f"))
    assert set(seen.values()) <= allowed, seen
