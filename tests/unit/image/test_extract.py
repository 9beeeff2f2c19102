"""Layer extraction: nothing escapes the target, the tree is exact, and the result is in the
overlay upper format (whiteouts, opaque directories, owners in xattrs in single-id mode)."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import native
from fuse_overlay import upperfmt
from rootless.errors import LayerError, LayerEscape
from rootless.image.extract import ExtractResult, extract_layer
from rootless.store.trees import remove_tree
from rootless.userns.enter import run_in_userns
from rootless.userns.idmap import detect_mapping
from tests.unit.image.tars import MTIME, OneWay, make_tar, member, override, snapshot


def extract(data: bytes, dest: Path, owners: str = "xattr") -> ExtractResult:
    dest.mkdir(exist_ok=True)
    return extract_layer(OneWay(data), dest, owners=owners)  # type: ignore[arg-type]


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): the layer target and a directory next to it that must never change."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("keep")
    return dest, outside


# -- exact trees -------------------------------------------------------------------------------


def test_files_dirs_and_attributes(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    r = extract(make_tar(
        member("etc", tarfile.DIRTYPE, mode=0o755, mtime=MTIME + 5),
        member("etc/hosts", data=b"127.0.0.1 localhost\n", mode=0o644, mtime=MTIME + 1),
        member("bin/su", data=b"\x7fELF", mode=0o4755),
        member("bin/wall", data=b"x", mode=0o2755),
        member("tmp", tarfile.DIRTYPE, mode=0o1777),
        member("empty", data=b""),
    ), dest)
    assert r.entries == 6 and r.skipped_devices == ()
    assert (dest / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert (dest / "etc/hosts").stat().st_mtime == MTIME + 1
    # The directory's mtime survives the creation of its children.
    assert (dest / "etc").stat().st_mtime == MTIME + 5
    assert stat.S_IMODE((dest / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "bin/wall").stat().st_mode) == 0o2755
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    # A parent the tar does not list is made like mkdir -p.
    assert stat.S_IMODE((dest / "bin").stat().st_mode) == 0o755
    assert (dest / "empty").stat().st_size == 0


def test_symlinks_hardlinks_fifos(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    extract(make_tar(
        member("bin/busybox", data=b"multi-call", mode=0o755),
        member("bin/sh", tarfile.LNKTYPE, linkname="bin/busybox"),
        member("/bin/ls", tarfile.LNKTYPE, linkname="/bin/busybox"),
        member("etc/mtab", tarfile.SYMTYPE, linkname="/proc/self/mounts", mtime=MTIME + 9),
        member("lib64", tarfile.SYMTYPE, linkname="usr/lib64"),
        member("run/initctl", tarfile.FIFOTYPE, mode=0o600),
    ), dest)
    bb, sh, ls = (dest / "bin/busybox").stat(), (dest / "bin/sh").stat(), (dest / "bin/ls").stat()
    assert bb.st_ino == sh.st_ino == ls.st_ino and bb.st_nlink == 3
    # Absolute targets stay as they are: they resolve inside the container.
    assert os.readlink(dest / "etc/mtab") == "/proc/self/mounts"
    assert (dest / "etc/mtab").lstat().st_mtime == MTIME + 9
    assert os.readlink(dest / "lib64") == "usr/lib64"
    assert stat.S_ISFIFO((dest / "run/initctl").lstat().st_mode)


def test_xattrs_applied_refused_ones_skipped(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    binary = b"\xff\x00\x01\x80"
    r = extract(make_tar(
        member("f", data=b"x", xattrs={"user.mime_type": b"text/plain", "user.bin": binary,
                                        "trusted.secret": b"1"}),
        member("d", tarfile.DIRTYPE, xattrs={"user.dir": b"yes"}),
        member("l", tarfile.SYMTYPE, linkname="f", xattrs={"user.onlink": b"1"}),
    ), dest)
    assert os.getxattr(dest / "f", "user.mime_type") == b"text/plain"
    assert os.getxattr(dest / "f", "user.bin") == binary
    assert os.getxattr(dest / "d", "user.dir") == b"yes"
    assert "trusted.secret" in r.skipped_xattrs and "user.onlink" in r.skipped_xattrs


def test_layer_cannot_forge_overlay_xattrs(tmp_path: Path) -> None:
    """user.overlay.* steers the kernel overlay and override_stat fakes owners: never from a tar."""
    dest = tmp_path / "d"
    extract(make_tar(
        member("d", tarfile.DIRTYPE, xattrs={"user.overlay.opaque": b"y", "user.overlay.redirect": b"/etc"}),
        member("f", data=b"x", xattrs={"user.containers.override_stat": b"0:0:4755:file"}),
    ), dest)
    assert not upperfmt.is_opaque(dest / "d")
    assert "user.overlay.redirect" not in os.listxattr(dest / "d")
    assert override(dest / "f") is None


def test_sparse_files_keep_their_holes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 64 << 20
    with open(src / "sparse", "wb") as f:
        f.seek(16 << 20)
        f.write(b"A" * 5000)
        f.seek(size - 3)
        f.write(b"end")
    for fmt in ("pax", "gnu"):
        tar = tmp_path / f"{fmt}.tar"
        subprocess.run(["tar", "--sparse", f"--format={fmt}", "--numeric-owner", "-cf", str(tar), "-C", str(src),
                        "sparse"], check=True)
        dest = tmp_path / f"d-{fmt}"
        with open(tar, "rb") as f:
            data = f.read()
        assert len(data) < 1 << 20, "GNU tar did not store the file sparse"
        extract(data, dest)
        st = (dest / "sparse").stat()
        assert st.st_size == size
        assert st.st_blocks * 512 < 1 << 20, f"holes were filled in ({fmt})"
        with open(dest / "sparse", "rb") as f:
            assert f.read(4096) == bytes(4096)
            f.seek(16 << 20)
            assert f.read(5001) == b"A" * 5000 + b"\0"
            f.seek(size - 3)
            assert f.read() == b"end"


# -- entries that replace earlier ones -------------------------------------------------------------


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    extract(make_tar(
        member("f", data=b"old"),
        member("f", data=b"new"),
        member("d", tarfile.DIRTYPE, mode=0o755),
        member("d/child", data=b"kept"),
        member("d", tarfile.DIRTYPE, mode=0o700, mtime=MTIME + 3),  # dir over dir: attributes only
        member("gone", tarfile.DIRTYPE),
        member("gone/deep/file", data=b"x"),
        member("gone", data=b"now a file"),  # anything else: remove, then create
        member("was-file", data=b"x"),
        member("was-file", tarfile.DIRTYPE),
        member("was-file/inside", data=b"y"),
        member("s", tarfile.SYMTYPE, linkname="/etc"),
        member("s", data=b"plain"),
    ), dest)
    assert (dest / "f").read_bytes() == b"new"
    assert (dest / "d/child").read_bytes() == b"kept"
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o700 and (dest / "d").stat().st_mtime == MTIME + 3
    assert (dest / "gone").read_bytes() == b"now a file"
    assert (dest / "was-file/inside").read_bytes() == b"y"
    assert not (dest / "s").is_symlink() and (dest / "s").read_bytes() == b"plain"


def test_devices_are_skipped_and_reported(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    r = extract(make_tar(
        member("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        member("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0)),
        member("etc/ok", data=b"1"),
    ), dest)
    assert r.skipped_devices == ("dev/null", "dev/sda")
    assert not (dest / "dev/null").exists() and not (dest / "dev/sda").exists()
    assert (dest / "etc/ok").exists()


# -- whiteouts and opaque directories ----------------------------------------------------------------


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    r = extract(make_tar(
        member("a", tarfile.DIRTYPE),
        member("a/.wh.b"),
        member(".wh.top"),
        member("implicit/.wh.x"),
        # A whiteout hides lower layers only: NAME in this layer wins, in either order.
        member("e/f", data=b"mine"),
        member("e/.wh.f"),
        member("e/.wh.g"),
        member("e/g", data=b"also mine"),
        member(".wh..wh.plnk/123.456", data=b"aufs hard link"),
    ), dest)
    for p in ("a/b", "top", "implicit/x"):
        st = (dest / p).lstat()
        assert upperfmt.is_whiteout(st), p
    assert (dest / "e/f").read_bytes() == b"mine" and (dest / "e/g").read_bytes() == b"also mine"
    assert r.whiteouts == 3
    # aufs bookkeeping is not content; no `.wh.` name is ever created.
    assert not (dest / ".wh..wh.plnk").exists()
    assert not [p for p in dest.rglob(".wh.*")]


def test_whiteout_fallback_file_when_mknod_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(dir_fd: int, name: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(native, "mknod_whiteout", refuse)
    dest = tmp_path / "d"
    extract(make_tar(member("a/.wh.b")), dest)
    assert (dest / "a/.wh.b").is_file() and not (dest / "a/b").exists()


def test_opaque_directories(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    r = extract(make_tar(
        member("etc", tarfile.DIRTYPE),
        member("etc/new", data=b"1"),
        member("etc/.wh..wh..opq"),  # after a sibling: order does not matter
        member("var/cache/.wh..wh..opq"),  # directory not listed: created
    ), dest)
    assert upperfmt.is_opaque(dest / "etc") and upperfmt.is_opaque(dest / "var/cache")
    assert os.getxattr(dest / "etc", "user.overlay.opaque") == b"y"
    assert (dest / "etc/new").read_bytes() == b"1"
    assert not upperfmt.is_opaque(dest / "var")
    assert r.opaque_dirs == 2
    assert not (dest / "etc/.wh..wh..opq").exists()


@pytest.mark.parametrize("name", [".wh.", "a/.wh.", "a/.wh..", "a/.wh...", "a/.wh.b/c"])
def test_invalid_whiteouts(tmp_path: Path, name: str) -> None:
    with pytest.raises(LayerError):
        extract(make_tar(member(name)), tmp_path / "d")


# -- escapes -------------------------------------------------------------------------------------------


def test_absolute_names_land_inside(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    before = snapshot(dest.parent, skip=dest)
    extract(make_tar(member("/abs/file", data=b"1"), member("a/b/../../c", data=b"2")), dest)
    assert (dest / "abs/file").read_bytes() == b"1" and (dest / "c").read_bytes() == b"2"
    assert snapshot(dest.parent, skip=dest) == before


Entries = list[tuple[tarfile.TarInfo, bytes | None]]

ESCAPES: dict[str, Any] = {
    "dotdot": lambda o: [member("../evil", data=b"x")],
    "dotdot-deep": lambda o: [member("a/../../evil", data=b"x")],
    "absolute-dotdot": lambda o: [member("/../evil", tarfile.DIRTYPE)],
    "symlink-parent": lambda o: [member("l", tarfile.SYMTYPE, linkname=o), member("l/evil", data=b"x")],
    "relative-symlink-parent": lambda o: [member("l", tarfile.SYMTYPE, linkname="../outside"),
                                          member("l/evil", tarfile.DIRTYPE)],
    "symlink-up": lambda o: [member("up", tarfile.SYMTYPE, linkname="../.."), member("up/tmp/evil", data=b"x")],
    "symlink-to-etc": lambda o: [member("etc", tarfile.SYMTYPE, linkname="/etc"),
                                 member("etc/passwd", data=b"root::0:0")],
    "whiteout-through-symlink": lambda o: [member("l", tarfile.SYMTYPE, linkname=o), member("l/.wh.secret")],
    "opaque-through-symlink": lambda o: [member("l", tarfile.SYMTYPE, linkname=o), member("l/.wh..wh..opq")],
    "file-parent": lambda o: [member("f", data=b"x"), member("f/evil", data=b"y")],
    "hardlink-dotdot": lambda o: [member("h", tarfile.LNKTYPE, linkname="../outside/secret")],
    "hardlink-through-symlink": lambda o: [member("l", tarfile.SYMTYPE, linkname=o),
                                           member("h", tarfile.LNKTYPE, linkname="l/secret")],
}


@pytest.mark.parametrize("case", ESCAPES)
def test_escapes_are_refused(sandbox: tuple[Path, Path], case: str) -> None:
    dest, outside = sandbox
    entries: Entries = ESCAPES[case](str(outside))
    before = snapshot(dest.parent, skip=dest)
    with pytest.raises(LayerEscape) as exc:
        extract(make_tar(*entries), dest)
    assert "\n" not in str(exc.value) and repr(entries[-1][0].name) in str(exc.value)
    assert snapshot(dest.parent, skip=dest) == before
    assert (outside / "secret").stat().st_nlink == 1


@pytest.mark.parametrize("entries", [
    pytest.param([member("h", tarfile.LNKTYPE, linkname="/etc/passwd")], id="absolute-target-not-in-layer"),
    pytest.param([member("h", tarfile.LNKTYPE, linkname="later"), member("later", data=b"x")], id="forward"),
    pytest.param([member("d", tarfile.DIRTYPE), member("h", tarfile.LNKTYPE, linkname="d")], id="to-directory"),
    pytest.param([member("h", tarfile.LNKTYPE, linkname="h")], id="to-itself"),
])
def test_bad_hard_links(sandbox: tuple[Path, Path], entries: Entries) -> None:
    dest, _ = sandbox
    before = snapshot(dest.parent, skip=dest)
    with pytest.raises(LayerError):
        extract(make_tar(*entries), dest)
    assert snapshot(dest.parent, skip=dest) == before


def test_a_directory_entry_replaces_a_planted_symlink(sandbox: tuple[Path, Path]) -> None:
    dest, outside = sandbox
    extract(make_tar(member("l", tarfile.SYMTYPE, linkname=str(outside)), member("l", tarfile.DIRTYPE),
                     member("l/file", data=b"in")), dest)
    assert (dest / "l").is_dir() and not (dest / "l").is_symlink()
    assert sorted(os.listdir(outside)) == ["secret"]


# -- damaged input -----------------------------------------------------------------------------------


def _damaged() -> list[Any]:
    one = make_tar(member("a", data=b"x" * 10000), member("b", data=b"y" * 100))
    first_end = 512 + 10240  # header + padded data of "a"
    flipped = bytearray(one)
    flipped[first_end + 10:first_end + 20] = b"#" * 10  # bad checksum in the second header
    return [
        pytest.param(b"", id="empty-stream"),
        pytest.param(one[:512 + 5000], id="cut-in-data"),
        pytest.param(one[:first_end + 100], id="cut-in-header"),
        pytest.param(one[:first_end + 512 + 50], id="cut-in-the-last-data"),
        # Data the extractor skips rather than reads (aufs bookkeeping) must be whole all the same.
        pytest.param(make_tar(member(".wh..wh.plnk/1.2", data=b"z" * 1000))[:1012], id="cut-in-skipped-data"),
        pytest.param(bytes(flipped), id="bad-checksum"),
        pytest.param(os.urandom(3000), id="noise"),
        pytest.param(make_tar(member("x", data=b"1"))[:1024] + b"garbage!" * 128, id="garbage-instead-of-end"),
    ]


@pytest.mark.parametrize("data", _damaged())
def test_corrupt_or_truncated_layers(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LayerError, match="corrupt or truncated"):
        extract(data, tmp_path / "d")


def _without_trailer() -> list[Any]:
    # "d" header 0-512, "d/f" header 512-1024, its 700 bytes of data 1024-1724, padding to 2048.
    full = make_tar(member("d", tarfile.DIRTYPE, mode=0o755), member("d/f", data=b"f" * 700))
    return [
        pytest.param(full[:1724], id="no-padding"),  # umoci's layers
        pytest.param(full[:1800], id="part-of-the-padding"),
        pytest.param(full[:2048], id="no-zero-blocks"),
        pytest.param(full[:2560], id="one-zero-block"),
    ]


@pytest.mark.parametrize("data", _without_trailer())
def test_a_layer_may_end_right_after_its_last_member(tmp_path: Path, data: bytes) -> None:
    """As Go's archive/tar (and so podman) reads layers: the layer's digest proves it whole."""
    result = extract(data, tmp_path / "d")
    assert result.entries == 2
    assert (tmp_path / "d/d/f").read_bytes() == b"f" * 700


def test_a_layer_may_end_right_after_a_last_member_without_data(tmp_path: Path) -> None:
    data = make_tar(member("f", data=b"x" * 700), member("d", tarfile.DIRTYPE, mode=0o755))
    assert extract(data[:2048], tmp_path / "d").entries == 2  # "f" 0-1536, "d" 1536-2048
    assert sorted(os.listdir(tmp_path / "d")) == ["d", "f"]


def test_bad_sparse_map_is_corrupt(tmp_path: Path) -> None:
    ti, data = member("s", data=b"z" * 10)
    ti.pax_headers = {"GNU.sparse.map": "100,5,0,5", "GNU.sparse.size": "200"}  # regions out of order
    with pytest.raises(LayerError, match="corrupt or truncated"):
        extract(make_tar((ti, data)), tmp_path / "d")


def test_empty_archive_is_an_empty_layer(tmp_path: Path) -> None:
    assert extract(bytes(1024), tmp_path / "d").entries == 0


def test_target_must_be_empty(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "stale").touch()
    with pytest.raises(LayerError, match="not empty"):
        extract(make_tar(member("f")), dest)


# -- owners ------------------------------------------------------------------------------------------


def test_xattr_mode_records_owners_and_modes(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    r = extract(make_tar(
        member(".", tarfile.DIRTYPE, mode=0o755),
        member("www", tarfile.DIRTYPE, mode=0o750, uid=33, gid=33),
        member("www/index.html", data=b"hi", mode=0o640, uid=33, gid=33),
        member("root-file", data=b"x", mode=0o644),
        member("bin/sudo", data=b"x", mode=0o4111),
        member("locked", tarfile.DIRTYPE, mode=0o000),
        member("locked/inner", tarfile.DIRTYPE, mode=0o000),
        member("locked/inner/nothing", data=b"x", mode=0o000),
        member("link", tarfile.SYMTYPE, linkname="root-file", uid=5, gid=5),
        member("pipe", tarfile.FIFOTYPE, mode=0o000, uid=7),
    ), dest)
    assert override(dest / "www") == b"33:33:0750:dir"
    assert override(dest / "www/index.html") == b"33:33:0640:file"
    assert override(dest / "root-file") is None
    # The real mode lives in the xattr; on disk the user can always read and delete.
    assert stat.S_IMODE((dest / "bin/sudo").stat().st_mode) == 0o4711
    assert override(dest / "bin/sudo") == b"0:0:4111:file"
    assert stat.S_IMODE((dest / "locked").stat().st_mode) == 0o700
    assert override(dest / "locked") == b"0:0:0000:dir"
    assert override(dest / "locked/inner/nothing") == b"0:0:0000:file"
    assert (dest / "locked/inner/nothing").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "pipe").lstat().st_mode) == 0o600
    # fuse-overlayfs reads overrides in a layer only when its root has one.
    assert override(dest) == b"0:0:0755:dir"
    assert r.overridden == 6
    assert all(st.st_uid == os.getuid() for st in (p.lstat() for p in dest.rglob("*")))
    shutil.rmtree(dest)  # an ordinary delete works: nothing is locked


def test_real_owners_outside_a_namespace_fail_cleanly(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="'f'"):
        extract(make_tar(member("f", uid=1000, gid=1000)), tmp_path / "d", owners="real")


def _extract_in_userns(data: bytes, dest: str) -> dict[str, tuple[int, int, int, bytes | None]]:
    extract_layer(OneWay(data), dest, owners="real")  # type: ignore[arg-type]
    out = {}
    for p in sorted(Path(dest).rglob("*")) + [Path(dest)]:
        st = p.lstat()
        out[str(p.relative_to(dest))] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), override(p))
    return out


@pytest.mark.needs_subuid
@pytest.mark.skipif(detect_mapping().mode != "subuid", reason="needs a subordinate id range in /etc/subuid")
def test_real_owners_in_the_user_namespace(tmp_path: Path) -> None:
    mapping = detect_mapping()
    dest = tmp_path / "d"
    dest.mkdir()
    data = make_tar(
        member("home/user", tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000),
        member("home/user/.profile", data=b"x", mode=0o640, uid=1000, gid=1000),
        member("usr/bin/passwd", data=b"x", mode=0o4755, uid=0, gid=0),
        member("usr/bin/crontab", data=b"x", mode=0o2755, uid=0, gid=102),
        member("setuid-user", data=b"x", mode=0o4750, uid=1000, gid=50),
        member("nobody", data=b"x", uid=65534, gid=65534),
        member("outside-range", data=b"x", mode=0o600, uid=200000, gid=200001),
        member("link", tarfile.SYMTYPE, linkname="/x", uid=1000, gid=1000),
        member("locked", tarfile.DIRTYPE, mode=0o000, uid=1000),
        member("locked/file", data=b"x", mode=0o000),
    )
    try:
        seen = run_in_userns(mapping, _extract_in_userns, data, str(dest))
        assert seen["home/user"][:3] == (1000, 1000, 0o750)
        assert seen["home/user/.profile"][:3] == (1000, 1000, 0o640)
        assert seen["usr/bin/passwd"][:3] == (0, 0, 0o4755)
        assert seen["usr/bin/crontab"][:3] == (0, 102, 0o2755)
        assert seen["setuid-user"][:3] == (1000, 50, 0o4750)  # chown did not clear the bit
        assert seen["nobody"][:2] == (65534, 65534)
        assert seen["link"][:2] == (1000, 1000)
        assert seen["locked"][:3] == (1000, 0, 0o000)
        # An id the namespace cannot hold is recorded instead of failing the layer.
        assert seen["outside-range"] == (0, 0, 0o600, b"200000:200001:0600:file")
        assert seen["."][3] is not None
        # From the host the owners are the subordinate ids.
        st = (dest / "setuid-user").stat()
        assert (st.st_uid, st.st_gid) == (mapping.host_uid(1000), mapping.host_gid(50))
    finally:
        run_in_userns(mapping, remove_tree, str(dest))
    assert not dest.exists()


# -- removal -------------------------------------------------------------------------------------------


def test_remove_tree_handles_locked_directories(tmp_path: Path) -> None:
    top = tmp_path / "t"
    (top / "a/b/c").mkdir(parents=True)
    (top / "a/b/c/f").write_text("x")
    (top / "a/l").symlink_to("/etc")
    os.mkfifo(top / "a/p")
    for d in ("a/b/c", "a/b", "a"):
        (top / d).chmod(0)
    top.chmod(0o500)
    remove_tree(top)
    assert not top.exists()
    remove_tree(top)  # already gone: fine
    (tmp_path / "file").write_text("x")
    remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()


# -- the override format ------------------------------------------------------------------------------


def test_override_format_matches_containers_storage() -> None:
    assert upperfmt.encode_override(0, 0, stat.S_IFDIR | 0o755) == b"0:0:0755:dir"
    assert upperfmt.encode_override(33, 44, stat.S_IFREG | 0o4750) == b"33:44:4750:file"
    assert upperfmt.encode_override(1, 2, 0o644) == b"1:2:0644"
    assert upperfmt.encode_override(0, 0, stat.S_IFCHR | 0o666, os.makedev(1, 3)) == b"0:0:0666:char-1-3"
    assert upperfmt.decode_override(b"1000:100:0640:file") == upperfmt.OverrideStat(1000, 100, stat.S_IFREG | 0o640)
    assert upperfmt.decode_override(b"0:0:0755") == upperfmt.OverrideStat(0, 0, 0o755)
    assert upperfmt.decode_override(b"0:0:0100755").file_type == stat.S_IFREG  # as libkrun writes it
    assert upperfmt.decode_override(b"0:0:755:dir:future") == upperfmt.OverrideStat(0, 0, stat.S_IFDIR | 0o755)
    dev = upperfmt.decode_override(b"0:0:0660:block-8-1")
    assert dev.file_type == stat.S_IFBLK and dev.rdev == os.makedev(8, 1) and dev.perms == 0o660
    for bad in (b"", b"0:0", b"a:0:0755", b"0:0:0999", b"0:0:0755:tape", b"-1:0:0755", b"4294967296:0:0"):
        with pytest.raises(ValueError):
            upperfmt.decode_override(bad)
