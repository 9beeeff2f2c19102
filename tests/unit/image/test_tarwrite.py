"""Directory trees as layer tars: deterministic bytes, OCI whiteouts from an overlay upper, and a
round trip through extraction that gives back the same tree."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import native
from fuse_overlay import upperfmt
from rootless.image.extract import extract_layer
from rootless.image.tarwrite import TarStats, write_tar
from rootless.store.trees import remove_tree
from rootless.userns.enter import run_in_userns
from rootless.userns.idmap import detect_mapping
from tests.unit.image.tars import OneWay, override

T0 = 1_500_000_000


class WriteOnly:
    """A sink that cannot seek or tell and takes at most `step` bytes a call (like a pipe)."""

    def __init__(self, step: int | None = None) -> None:
        self.data = bytearray()
        self.step = step

    def write(self, b: Any) -> int | None:
        b = bytes(b)
        if self.step is None:
            self.data += b
            return None
        self.data += b[:self.step]
        return min(len(b), self.step)


def tar_of(src: Path, **kw: Any) -> tuple[bytes, TarStats]:
    out = WriteOnly()
    kw.setdefault("owners", "xattr")
    kw.setdefault("overlay_upper", False)
    stats = write_tar(src, out, **kw)  # type: ignore[arg-type]
    assert stats.size == len(out.data)
    return bytes(out.data), stats


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        return tf.getmembers()


def set_override(p: Path, uid: int, gid: int, mode: int) -> None:
    os.setxattr(p, upperfmt.OVERRIDE_XATTR, upperfmt.encode_override(uid, gid, mode))


def settle_mtimes(root: Path) -> None:
    """Give every entry a distinct, known mtime, deepest first so parents keep theirs."""
    paths = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for i, p in enumerate(paths):
        os.utime(p, ns=((T0 + i) * 10**9 + 123,) * 2, follow_symlinks=False)


def sample_tree(root: Path) -> None:
    """Every kind of entry a layer holds, with owners and modes kept in override xattrs."""
    (root / "etc/ssl").mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    (root / "etc/shadow").chmod(0o640)
    set_override(root / "etc/shadow", 0, 42, stat.S_IFREG | 0o640)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF" + os.urandom(3 << 20))  # several 1 MiB chunks
    (root / "bin/busybox").chmod(0o755)
    os.link(root / "bin/busybox", root / "bin/sh")
    (root / "bin/su").write_bytes(b"su")
    (root / "bin/su").chmod(0o4755)
    (root / "home/www").mkdir(parents=True)
    (root / "home/www/index.html").write_text("<h1>hi</h1>")
    set_override(root / "home/www", 33, 33, stat.S_IFDIR | 0o750)
    set_override(root / "home/www/index.html", 33, 33, stat.S_IFREG | 0o640)
    (root / "vault/inner").mkdir(parents=True)  # mode 000 on the image side, u+rwx on disk
    (root / "vault/inner/key").write_text("k")
    set_override(root / "vault", 0, 0, stat.S_IFDIR | 0o000)
    set_override(root / "vault/inner/key", 1000, 1000, stat.S_IFREG | 0o000)
    (root / "empty-dir").mkdir()
    (root / "empty-file").touch()
    (root / "etc/mtab").symlink_to("/proc/self/mounts")
    (root / "etc/ssl/certs").symlink_to("../hostname")
    os.mkfifo(root / "run-fifo")
    os.setxattr(root / "etc/hostname", "user.mime_type", b"text/plain")
    os.setxattr(root / "etc/ssl", "user.binary", b"\x00\xff\x80")
    (root / "ünïcödé name").write_text("u")
    settle_mtimes(root)


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """What an image user sees of each entry, whiteouts in either upper-format spelling alike."""
    out: dict[str, tuple[Any, ...]] = {}
    me = os.getuid(), os.getgid()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            st = p.lstat()
            target = upperfmt.whiteout_target(name)
            if upperfmt.is_whiteout(st) or (target is not None and stat.S_ISREG(st.st_mode)):
                out[str(Path(dirpath, target or name).relative_to(root))] = ("whiteout",)
                continue
            ov = override(p)
            if ov is not None:
                o = upperfmt.decode_override(ov)
                ids, perms = (o.uid, o.gid), o.perms
            else:
                ids = (0 if st.st_uid == me[0] else st.st_uid, 0 if st.st_gid == me[1] else st.st_gid)
                perms = stat.S_IMODE(st.st_mode)
            kind = stat.S_IFMT(st.st_mode)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {k: os.getxattr(p, k) for k in os.listxattr(p)
                          if not k.startswith(upperfmt.PRIVATE_XATTR_PREFIXES)}
            nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (kind, ids, perms if not stat.S_ISLNK(st.st_mode) else None, nlink,
                        st.st_mtime_ns // 10**9, extra, xattrs, stat.S_ISDIR(st.st_mode) and upperfmt.is_opaque(p))
    return out


# -- the tar itself ---------------------------------------------------------------------------------


def test_deterministic_sorted_pax_numeric(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sample_tree(src)
    first, stats = tar_of(src)
    again, _ = tar_of(src)
    assert first == again
    ms = members(first)
    names = [m.name for m in ms]
    assert stats.entries == len(ms)
    assert names[:3] == ["bin", "bin/busybox", "bin/sh"]
    # Parents before children, each directory's entries in byte order, no "./" or "/" prefix.
    for i, n in enumerate(names):
        assert not n.startswith(("./", "/"))
        if "/" in n:
            assert n.rsplit("/", 1)[0] in names[:i]
    for m in ms:
        assert m.uname == "" and m.gname == "" and isinstance(m.mtime, int)
    by = {m.name: m for m in ms}
    assert by["bin/sh"].islnk() and by["bin/sh"].linkname == "bin/busybox"
    assert by["etc/mtab"].issym() and by["etc/mtab"].linkname == "/proc/self/mounts"
    assert by["run-fifo"].isfifo()
    assert by["bin/su"].mode == 0o4755
    assert by["etc/hostname"].pax_headers["SCHILY.xattr.user.mime_type"] == "text/plain"
    assert by["etc/hostname"].mtime == (src / "etc/hostname").stat().st_mtime_ns // 10**9
    # Owners from the override xattr, which itself is not exported.
    assert (by["home/www"].uid, by["home/www"].gid, by["home/www"].mode) == (33, 33, 0o750)
    assert (by["vault/inner/key"].uid, by["vault/inner/key"].mode) == (1000, 0)
    assert by["vault"].mode == 0
    assert not any(k.startswith("SCHILY.xattr.user.containers") for m in ms for k in m.pax_headers)
    # The user's own files are root's in single-id mode.
    assert by["etc/hostname"].uid == 0 and by["etc/hostname"].gid == 0
    # GNU tar reads it too.
    (tmp_path / "t.tar").write_bytes(first)
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "t.tar")], check=True, capture_output=True, text=True)
    assert "bin/sh link to bin/busybox" in listing.stdout


def test_mtime_is_whole_seconds(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/f").touch()
    os.utime(tmp_path / "s/f", ns=(T0 * 10**9 + 999_999_999,) * 2)
    (m,) = members(tar_of(tmp_path / "s")[0])
    assert m.mtime == T0 and "mtime" not in m.pax_headers


def test_id_maps_and_real_mode(tmp_path: Path) -> None:
    src = tmp_path / "s"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("x")
    set_override(src / "d/f", 7, 7, stat.S_IFREG | 0o600)
    data, _ = tar_of(src, owners="real", uid_map=lambda u: u - os.getuid() + 100, gid_map=lambda g: 200)
    for m in members(data):
        # In real mode the override xattr is not consulted: stat() is the truth.
        assert (m.uid, m.gid) == (100, 200)
    data, _ = tar_of(src, owners="xattr", uid_map=lambda u: 5, gid_map=lambda g: 6)
    by = {m.name: m for m in members(data)}
    assert (by["d"].uid, by["d"].gid) == (5, 6) and (by["d/f"].uid, by["d/f"].gid) == (7, 7)


def test_sockets_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    (src / "a").touch()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(src / "ctl.sock"))
        data, stats = tar_of(src)
    finally:
        sock.close()
    assert [m.name for m in members(data)] == ["a"]
    assert stats.skipped_sockets == ("ctl.sock",)


def test_short_writes_to_a_pipe_like_sink(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    (src / "big").write_bytes(os.urandom((1 << 20) + 77))
    out = WriteOnly(step=1000)
    write_tar(src, out, owners="xattr", overlay_upper=False)  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(bytes(out.data))) as tf:
        f = tf.extractfile("big")
        assert f is not None and f.read() == (src / "big").read_bytes()


# -- overlay upper directories ------------------------------------------------------------------------


def make_upper(root: Path) -> None:
    """An upper directory as the kernel overlay or fuse-overlayfs leave it."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/zz-new").write_text("added")
    dfd = os.open(root / "etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        native.mknod_whiteout(dfd, "motd")  # a 0/0 character device
        os.link("motd", "issue", src_dir_fd=dfd, dst_dir_fd=dfd)  # the kernel shares whiteout inodes
    finally:
        os.close(dfd)
    (root / "etc/.wh.old").touch()  # the fallback where mknod is refused
    (root / "opt/app").mkdir(parents=True)
    upperfmt.set_opaque(root / "opt/app")
    (root / "opt/app/main.py").write_text("print()")
    (root / "var").mkdir()
    (root / "var/.wh..wh..opq").touch()  # fuse-overlayfs's opaque marker without xattrs
    (root / "var/log").mkdir()
    settle_mtimes(root)


def test_overlay_upper_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    make_upper(up)
    data, stats = tar_of(up, overlay_upper=True)
    ms = members(data)
    assert [m.name for m in ms] == [
        "etc", "etc/.wh.issue", "etc/.wh.motd", "etc/.wh.old", "etc/zz-new",
        "opt", "opt/app", "opt/app/.wh..wh..opq", "opt/app/main.py",
        "var", "var/.wh..wh..opq", "var/log",
    ]
    for m in ms:
        if m.name.rsplit("/", 1)[-1].startswith(".wh."):
            assert m.isreg() and m.size == 0 and (m.uid, m.gid, m.mode) == (0, 0, 0o600)
    assert (stats.whiteouts, stats.opaque_dirs) == (3, 2)
    assert not any("overlay" in k for m in ms for k in m.pax_headers)


def test_plain_tree_keeps_whiteout_lookalikes(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    make_upper(up)
    by = {m.name: m for m in members(tar_of(up, overlay_upper=False)[0])}
    assert by["etc/issue"].ischr() and (by["etc/issue"].devmajor, by["etc/issue"].devminor) == (0, 0)
    assert by["etc/motd"].islnk() and by["etc/motd"].linkname == "etc/issue"
    assert by["etc/.wh.old"].isreg() and "var/.wh..wh..opq" in by


# -- round trips ------------------------------------------------------------------------------------


def test_round_trip_xattr_mode(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    sample_tree(src)
    data, _ = tar_of(src, owners="xattr", overlay_upper=False)
    extract_layer(OneWay(data), dst, owners="xattr")  # type: ignore[arg-type]
    before, after = tree(src), tree(dst)
    assert after == before
    assert after["vault"][2] == 0o000 and after["bin/sh"][3] == 2
    # ... and it tars to the very same bytes again.
    assert tar_of(dst, owners="xattr", overlay_upper=False)[0] == data


def test_round_trip_overlay_upper(tmp_path: Path) -> None:
    src, dst = tmp_path / "upper", tmp_path / "layer"
    make_upper(src)
    dst.mkdir()
    data, _ = tar_of(src, overlay_upper=True)
    r = extract_layer(OneWay(data), dst, owners="xattr")  # type: ignore[arg-type]
    assert (r.whiteouts, r.opaque_dirs) == (3, 2)
    expected = tree(src)
    del expected["var/.wh..wh..opq"]  # the marker file became the xattr
    expected["var"] = expected["var"][:-1] + (True,)
    got = tree(dst)
    # Whiteouts are separate nodes once unpacked: the kernel's shared inode is its business.
    assert got == expected
    assert upperfmt.is_whiteout((dst / "etc/motd").lstat())
    assert tar_of(dst, overlay_upper=True)[0] == data


def _round_trip_in_userns(src: str, dst: str, tar: str) -> tuple[dict[str, Any], dict[str, Any]]:
    s = Path(src)
    (s / "home/u").mkdir(parents=True)
    (s / "home/u/f").write_text("x")
    os.chown(s / "home/u/f", 1000, 1000)
    os.chown(s / "home/u", 1000, 100)
    (s / "home/u").chmod(0o750)
    (s / "sbin").mkdir()
    (s / "sbin/suid").write_text("s")
    os.chown(s / "sbin/suid", 0, 15)
    (s / "sbin/suid").chmod(0o4750)
    (s / "lnk").symlink_to("/nowhere")
    os.chown(s / "lnk", 5, 6, follow_symlinks=False)
    os.mkfifo(s / "fifo")
    os.chown(s / "fifo", 7, 8)
    (s / "sealed").mkdir()
    (s / "sealed/f").write_text("x")
    os.chown(s / "sealed/f", 65534, 65534)
    (s / "sealed/f").chmod(0)
    (s / "sealed").chmod(0)
    settle_mtimes(s)
    with open(tar, "wb") as out:
        write_tar(s, out, owners="real", overlay_upper=False)
    with open(tar, "rb") as f:
        extract_layer(f, dst, owners="real")

    def raw(root: str) -> dict[str, Any]:
        out = {}
        for p in Path(root).rglob("*"):
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns // 10**9,
                                             st.st_nlink if not stat.S_ISDIR(st.st_mode) else None)
        return out

    return raw(src), raw(dst)


@pytest.mark.needs_subuid
@pytest.mark.skipif(detect_mapping().mode != "subuid", reason="needs a subordinate id range in /etc/subuid")
def test_round_trip_real_owners(tmp_path: Path) -> None:
    mapping = detect_mapping()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    try:
        before, after = run_in_userns(mapping, _round_trip_in_userns, str(src), str(dst), str(tmp_path / "t.tar"))
        assert after == before
        assert after["home/u"][1:3] == (1000, 100) and after["sbin/suid"][0] == stat.S_IFREG | 0o4750
        assert after["lnk"][1:3] == (5, 6) and after["sealed"][0] == stat.S_IFDIR
    finally:
        run_in_userns(mapping, remove_tree, str(src))
        run_in_userns(mapping, remove_tree, str(dst))
