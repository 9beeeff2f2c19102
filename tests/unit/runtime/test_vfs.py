"""vfs: `merge_layers` copies exactly what the kernel overlay shows of the same layers, keeps every
attribute a container can see, and never follows a layer's symlinks.

The reference is the real kernel overlay, mounted with the layers as lowerdirs in a user and
mount namespace; both views are snapshotted inside the namespace, so ids compare as the
container sees them.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import native
from fuse_overlay import upperfmt
from rootless.errors import StoreError
from rootless.runtime.vfs import MergeStats, merge_layers
from rootless.store.trees import remove_tree
from rootless.userns.enter import run_in_userns
from rootless.userns.idmap import detect_mapping
from tests.unit.layers import layers_of, whiteout, write

MAPPING = detect_mapping()
needs_subuid = pytest.mark.skipif(MAPPING.mode != "subuid", reason="needs a subordinate id range in /etc/subuid")

Snapshot = dict[str, tuple[Any, ...]]


# -- the two views -------------------------------------------------------------------------------


def snapshot(root: str) -> Snapshot:
    """What a container sees of a tree: per path its type, mode, owner, size, mtime, content hash
    or link target, user xattrs and which other paths are the same inode. Never follows links."""
    out: Snapshot = {".": _describe(root, os.lstat(root))}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                # The kernel lists the whiteouts of a directory that only one layer has, but
                # lookup hides them: no program can open or stat such a name.
                continue
            out[rel] = _describe(path, st)
            if not stat.S_ISDIR(st.st_mode):
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for names in inodes.values():
        if len(names) > 1:
            for rel in names:
                out[rel] += (tuple(sorted(names)),)
    return out


def _describe(path: str, st: os.stat_result) -> tuple[Any, ...]:
    kind = stat.S_IFMT(st.st_mode)
    content: str | None = None
    if kind == stat.S_IFREG:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()
    elif kind == stat.S_IFLNK:
        content = os.readlink(path)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    if kind in (stat.S_IFREG, stat.S_IFDIR):
        xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False))
                              for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user.")))
    size = None if kind == stat.S_IFDIR else st.st_size  # a directory's size is its filesystem's
    return (stat.filemode(st.st_mode), st.st_uid, st.st_gid, size, st.st_mtime_ns, content, xattrs)


def _kernel_view(layers: list[str], mnt: str) -> Snapshot:
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    native.mount("overlay", mnt, "overlay", 0, f"lowerdir={':'.join(reversed(layers))},userxattr")
    return snapshot(mnt)


def kernel_view(layers: list[Path], tmp_path: Path) -> Snapshot:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    paths = [str(p) for p in layers]
    if len(paths) == 1:  # without an upper directory the kernel wants two lowerdirs
        (tmp_path / "empty").mkdir()
        paths.insert(0, str(tmp_path / "empty"))
    return run_in_userns(MAPPING, _kernel_view, paths, str(mnt), extra_flags=native.CLONE_NEWNS)


def _merge_view(layers: list[str], dest: str) -> tuple[MergeStats, Snapshot]:
    return merge_layers(layers, dest), snapshot(dest)


def merge_view(layers: list[Path], dest: Path) -> tuple[MergeStats, Snapshot]:
    """merge_layers run where the store runs it: as root of the user namespace."""
    dest.mkdir()
    return run_in_userns(MAPPING, _merge_view, [str(p) for p in layers], str(dest))


def assert_same_as_kernel(layers: list[Path], tmp_path: Path) -> tuple[MergeStats, Snapshot]:
    settle(*layers)
    expected = kernel_view(layers, tmp_path)
    stats, got = merge_view(layers, tmp_path / "dest")
    assert got == expected
    return stats, got


@pytest.fixture(autouse=True)
def _cleanup(tmp_path: Path) -> Iterator[None]:
    """Files chowned to subordinate ids can only be removed from inside the namespace."""
    yield
    run_in_userns(MAPPING, remove_tree, str(tmp_path))


# -- building layers -----------------------------------------------------------------------------


def opaque(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, upperfmt.OPAQUE_XATTR, b"y")
    return path


def _settle(layers: list[str]) -> None:
    for root in layers:
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for name in filenames + dirnames + ["."]:
                path = os.path.normpath(os.path.join(dirpath, name))
                rel = os.path.relpath(path, root)
                ns = 1_500_000_000_000_000_000 + zlib.crc32(rel.encode()) * 1_000_003
                os.utime(path, ns=(ns, ns), follow_symlinks=False)


def settle(*layers: Path) -> None:
    """Give every entry its own mtime (with nanoseconds), deepest first so parents keep theirs;
    in the namespace, where entries chowned to other ids can be touched."""
    run_in_userns(MAPPING, _settle, [str(p) for p in layers])


# -- the merged view -----------------------------------------------------------------------------


def test_whiteouts_hide_a_file_and_a_directory(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "a", b"a")
    write(low / "d/x", b"x")
    write(low / "d/sub/y", b"y")
    write(low / "keep/k", b"k")
    whiteout(top / "a")
    whiteout(top / "d")
    whiteout(top / "keep/not-there")
    whiteout(top / "new-dir/gone")
    stats, got = assert_same_as_kernel([low, top], tmp_path)
    assert sorted(got) == [".", "keep", "keep/k", "new-dir"]
    assert stats.whiteouts == 4
    assert (stats.files, stats.directories) == (1, 2)


def test_wh_files_hide_like_whiteout_devices(tmp_path: Path) -> None:
    low, mid, mid_dev, top = layers_of(tmp_path, 4)
    write(low / "a", b"a")
    write(low / "d/x", b"x")
    write(low / "r/old", b"old")
    write(low / "s/keep", b"keep")
    write(mid / ".wh.a")
    write(mid / ".wh.d")
    write(mid / "s/.wh.keep")
    # `.wh.r` beside a new r: the layer replaced the lower directory with its own, which the
    # directory of the layer above still merges with.
    write(mid / ".wh.r")
    write(mid / "r/new", b"new")
    write(top / "r/top", b"top")
    # The same layer with the kernel's whiteouts and an opaque directory.
    whiteout(mid_dev / "a")
    whiteout(mid_dev / "d")
    whiteout(mid_dev / "s/keep")
    write(opaque(mid_dev / "r") / "new", b"new")
    settle(low, mid, mid_dev, top)
    expected = kernel_view([low, mid_dev, top], tmp_path)
    _, got = merge_view([low, mid, top], tmp_path / "dest")
    assert got == expected
    assert sorted(got) == [".", "r", "r/new", "r/top", "s"]


def test_opaque_directory_hides_lower_contents(tmp_path: Path) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "d/a", b"a")
    write(low / "d/sub/deep", b"deep")
    write(low / "e/lowest", b"lowest")
    write(opaque(mid / "d") / "b", b"b")
    write(opaque(mid / "e") / "mid", b"mid")
    write(opaque(mid / "fresh") / "f", b"f")
    write(top / "d/c", b"c")
    stats, got = assert_same_as_kernel([low, mid, top], tmp_path)
    assert sorted(p for p in got if p.startswith(("d", "e"))) == ["d", "d/b", "d/c", "e", "e/mid"]
    assert stats.opaque_dirs == 2  # `fresh` hides nothing
    assert "user.overlay.opaque" not in os.listxattr(tmp_path / "dest/d")


def test_opaque_xattr_on_a_layer_root_is_ignored_like_the_kernel(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "a", b"a")
    opaque(top)
    write(top / "b", b"b")
    _, got = assert_same_as_kernel([low, top], tmp_path)
    assert {"a", "b"} <= set(got)


def test_fuse_overlayfs_opaque_markers(tmp_path: Path) -> None:
    """Not kernel features: fuse-overlayfs's opaque xattr and, where it cannot set xattrs, its
    marker file; aufs bookkeeping names are never content."""
    low, top = layers_of(tmp_path, 2)
    write(low / "x/old", b"old")
    write(low / "m/old", b"old")
    (top / "x").mkdir()
    os.setxattr(top / "x", "user.fuseoverlayfs.opaque", b"y")
    write(top / "x/new", b"new")
    write(top / "m" / upperfmt.OPAQUE_MARKER)
    write(top / "m/new", b"new")
    write(top / ".wh..wh.plnk/1", b"aufs")
    _, got = merge_view([low, top], tmp_path / "dest")
    assert sorted(got) == [".", "m", "m/new", "x", "x/new"]
    assert not [n for n in os.listxattr(tmp_path / "dest/x") if n.startswith("user.fuseoverlayfs.")]


def test_non_directory_replaces_directory_and_back(tmp_path: Path) -> None:
    l1, l2, l3 = layers_of(tmp_path, 3)
    write(l1 / "f", b"was a file")
    write(l1 / "d/inside", b"inside")
    write(l1 / "x/low", b"low")
    write(l1 / "sym/under", b"under")
    write(l2 / "f/now/a/dir", b"dir")
    write(l2 / "d", b"now a file", 0o600)
    write(l2 / "x", b"a file between two directories")
    (l2 / "sym").symlink_to("somewhere")
    write(l3 / "x/high", b"high")
    (l3 / "sym").mkdir()
    _, got = assert_same_as_kernel([l1, l2, l3], tmp_path)
    assert got["d"][0] == "-rw-------"
    assert sorted(p for p in got if p.startswith(("x", "sym"))) == ["sym", "x", "x/high"]


def test_three_layers_deep(tmp_path: Path) -> None:
    l1, l2, l3 = layers_of(tmp_path, 3)
    for i in range(20):
        write(l1 / f"usr/lib/pkg{i % 4}/file{i}", f"v1 {i}".encode())
    write(l1 / "etc/conf", b"one")
    write(l2 / "etc/conf", b"two", 0o600)
    write(l2 / "usr/lib/pkg1/file1", b"v2")
    whiteout(l2 / "usr/lib/pkg2")
    write(l2 / "usr/lib/added/a", b"added")
    whiteout(l3 / "usr/lib/added")
    write(l3 / "usr/lib/pkg2/back", b"back")
    write(l3 / "usr/lib/pkg3/file3", b"v3")
    whiteout(l3 / "usr/lib/pkg0/file0")
    (l3 / "usr/lib").chmod(0o750)
    (l2 / "etc").chmod(0o700)
    _, got = assert_same_as_kernel([l1, l2, l3], tmp_path)
    assert "usr/lib/added" not in got and "usr/lib/pkg2/file2" not in got
    # Attributes of the topmost directory.
    assert (got["usr/lib"][0], got["etc"][0]) == ("drwxr-x---", "drwx------")


def test_modes_kept_including_setuid_setgid_sticky(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "bin/su", b"su", 0o4755)
    write(low / "bin/wall", b"wall", 0o2755)
    write(low / "secret", b"s", 0o000)
    (low / "tmp").mkdir(mode=0o777)
    (low / "tmp").chmod(0o1777)
    write(low / "ro/file", b"f", 0o444)
    (low / "ro").chmod(0o555)
    write(top / "locked/file", b"l", 0o600)
    (top / "locked").chmod(0o000)
    _, got = assert_same_as_kernel([low, top], tmp_path)
    assert got["bin/su"][0] == "-rwsr-xr-x"
    assert got["bin/wall"][0] == "-rwxr-sr-x"
    assert got["tmp"][0] == "drwxrwxrwt"
    assert got["locked"][0] == "d---------"


def test_hard_links_stay_hard_links(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    a = write(low / "a", b"shared")
    os.link(a, low / "b")
    (low / "sub").mkdir()
    os.link(a, low / "sub/c")
    x = write(low / "x", b"pair")
    os.link(x, low / "y")
    os.mkfifo(low / "fifo")
    os.link(low / "fifo", low / "fifo2")
    write(top / "b", b"replaced")
    whiteout(top / "y")
    stats, got = assert_same_as_kernel([low, top], tmp_path)
    assert got["a"][-1] == ("a", "sub/c")
    assert got["fifo"][-1] == ("fifo", "fifo2")
    assert len(got["x"]) == len(got["b"])  # neither is linked any more
    assert stats.hard_links == 2


def test_symlinks_are_copied_never_followed(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    (low / "loop").symlink_to("loop")
    (low / "ping").symlink_to("pong")
    (low / "pong").symlink_to("ping")
    (low / "passwd").symlink_to("/etc/passwd")
    (low / "up").symlink_to("../../../../..")
    write(low / "real/file", b"f")
    (low / "alias").symlink_to("real")
    (top / "dangling").symlink_to("/nonexistent/at/all")
    write(top / "real/more", b"m")
    stats, got = assert_same_as_kernel([low, top], tmp_path)
    assert got["up"][5] == "../../../../.."
    assert "alias/file" not in got
    assert stats.symlinks == 7


def test_hostile_symlinked_parent_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    l1, l2, l3 = layers_of(tmp_path, 3)
    (l1 / "x").symlink_to(outside)
    write(l2 / "x/evil", b"evil")
    write(l1 / "y/a", b"a")
    (l2 / "y").symlink_to(outside)
    write(l3 / "y/evil2", b"evil")
    (l3 / "z").symlink_to(outside)
    write(l3 / "zz/f", b"f")
    _, got = assert_same_as_kernel([l1, l2, l3], tmp_path)
    assert list(outside.iterdir()) == []
    assert got["x"][0].startswith("d") and "x/evil" in got
    assert sorted(p for p in got if p.startswith("y")) == ["y", "y/evil2"]
    assert os.readlink(tmp_path / "dest/z") == str(outside)


def test_fifo_sparse_file_and_xattrs(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    os.mkfifo(low / "fifo", 0o640)
    sparse = write(low / "sparse", b"")
    with open(sparse, "r+b") as f:
        f.truncate(64 << 20)
        f.seek(5 << 20)
        f.write(b"data in the middle")
        f.seek((64 << 20) - 3)
        f.write(b"end")
    with open(write(low / "sparse-tail", b"head"), "r+b") as f:
        f.truncate(8 << 20)
    tagged = write(top / "f", b"with xattrs")
    os.setxattr(tagged, "user.comment", b"kept")
    os.setxattr(tagged, upperfmt.OVERRIDE_XATTR, b"1000:1000:0644:file")
    d = opaque(top / "d")
    os.setxattr(d, "user.mime_type", b"text/plain")
    stats, got = assert_same_as_kernel([low, top], tmp_path)
    assert got["fifo"][0] == "prw-r-----"
    assert dict(got["f"][6]) == {"user.comment": b"kept", upperfmt.OVERRIDE_XATTR: b"1000:1000:0644:file"}
    assert dict(got["d"][6]) == {"user.mime_type": b"text/plain"}
    st = os.stat(tmp_path / "dest/sparse")
    assert st.st_size == 64 << 20 and st.st_blocks * 512 < 1 << 20
    assert stats.bytes_copied < 1 << 20
    assert os.stat(tmp_path / "dest/sparse-tail").st_size == 8 << 20
    assert (stats.files, stats.special_files) == (3, 1)


def test_times_are_kept_with_nanoseconds(tmp_path: Path) -> None:
    (layer,) = layers_of(tmp_path, 1)
    write(layer / "d/f", b"f")
    (layer / "d/l").symlink_to("f")
    times = {"d/f": (1_000_000_001_000_000_001, 1_200_000_000_123_456_789),
             "d/l": (1_000_000_002_000_000_002, 1_200_000_001_000_000_001),
             "d": (1_000_000_003_000_000_003, 1_200_000_002_000_000_002)}
    for rel, ns in times.items():
        os.utime(layer / rel, ns=ns, follow_symlinks=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    run_in_userns(MAPPING, merge_layers, [str(layer)], str(dest))
    for rel, (atime, mtime) in times.items():
        st = os.lstat(dest / rel)
        assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime), rel


def _set_capability(path: str) -> None:
    # VFS_CAP_REVISION_2 with cap_net_raw (13) permitted and effective.
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0))


def test_file_capabilities_are_kept(tmp_path: Path) -> None:
    (layer,) = layers_of(tmp_path, 1)
    ping = write(layer / "ping", b"ping", 0o755)
    run_in_userns(MAPPING, _set_capability, str(ping))
    merge_view([layer], tmp_path / "dest")
    read = run_in_userns(MAPPING, os.getxattr, str(tmp_path / "dest/ping"), "security.capability")
    assert read == run_in_userns(MAPPING, os.getxattr, str(ping), "security.capability")


def test_deep_tree_in_every_layer(tmp_path: Path) -> None:
    """Deeper than 1024 fds would allow when each level holds one fd per layer."""
    layers = layers_of(tmp_path, 3)
    deep = "/".join(["d"] * 300)
    for i, layer in enumerate(layers):
        write(layer / deep / f"f{i}", b"x")
    stats, got = assert_same_as_kernel(layers, tmp_path)
    assert {f"{deep}/f0", f"{deep}/f1", f"{deep}/f2"} <= set(got)
    assert stats.directories == 300


@needs_subuid
def test_owners_survive(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "home/user/.profile", b"p", 0o640)
    write(top / "home/user/notes", b"n", 0o4750)
    (top / "home/user/link").symlink_to(".profile")
    os.mkfifo(top / "home/user/fifo")

    def chown_all() -> None:
        os.chown(low / "home/user", 1000, 1000)
        os.chown(low / "home/user/.profile", 1000, 1000)
        os.chown(top / "home/user", 1000, 1000)
        os.chown(top / "home/user/notes", 1000, 50)
        os.chmod(top / "home/user/notes", 0o4750)  # chown cleared it
        os.chown(top / "home/user/link", 1001, 1002, follow_symlinks=False)
        os.chown(top / "home/user/fifo", 1003, 1003)

    run_in_userns(MAPPING, chown_all)
    stats, got = assert_same_as_kernel([low, top], tmp_path)
    assert got["home/user/notes"][:3] == ("-rwsr-x---", 1000, 50)
    assert got["home/user/link"][1:3] == (1001, 1002)
    assert stats.owners_not_kept == 0
    dest = tmp_path / "dest"
    for rel, (uid, gid) in {"home/user": (1000, 1000), "home/user/.profile": (1000, 1000),
                            "home/user/notes": (1000, 50), "home/user/fifo": (1003, 1003)}.items():
        st = os.lstat(dest / rel)
        assert (st.st_uid, st.st_gid) == (MAPPING.host_uid(uid), MAPPING.host_gid(gid)), rel
    assert os.lstat(dest / "home/user/notes").st_uid == MAPPING.uids[1].outside + 999


def test_refused_chown_keeps_going(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Single-id mode: chown fails, everything else is copied and the losses are counted."""
    (layer,) = layers_of(tmp_path, 1)
    write(layer / "d/f", b"f", 0o4755)
    (layer / "d/l").symlink_to("f")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "fchown", refuse)
    monkeypatch.setattr(os, "chown", refuse)
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = merge_layers([layer], dest)
    assert stats.owners_not_kept == 4  # ., d, d/f, d/l
    assert stat.S_IMODE(os.stat(dest / "d/f").st_mode) == 0o4755
    assert (dest / "d/f").read_bytes() == b"f"


def test_copy_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (layer,) = layers_of(tmp_path, 1)
    big = os.urandom(3 << 20)
    write(layer / "big", big)
    write(layer / "small", b"small")

    def unsupported(*args: object) -> int:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = merge_layers([layer], dest)
    assert (dest / "big").read_bytes() == big and (dest / "small").read_bytes() == b"small"
    assert stats.bytes_copied == len(big) + 5


def test_dest_must_be_empty(tmp_path: Path) -> None:
    (layer,) = layers_of(tmp_path, 1)
    dest = tmp_path / "dest"
    write(dest / "x")
    with pytest.raises(StoreError, match="not empty"):
        merge_layers([layer], dest)


def test_unreadable_layer_is_a_store_error(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(StoreError, match="No such file"):
        merge_layers([tmp_path / "missing"], dest)
    with pytest.raises(ValueError):
        merge_layers([], dest)
