"""Copy-up (fuse_overlay.copyup): the upper copy has the lower entry's data, holes, mode, times
and xattrs, and a failed copy leaves nothing in the upper directory.

Copy-up stays in Python: scripts/bench-copyup shows one copy_file_range call from C no faster.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fuse_overlay import beneath, copyup, upperfmt

MIB = 1 << 20


def copy_up(src: str, dst: str, work: str, xattr_permissions: bool,
            data: bool = True) -> os.stat_result:
    """copyup.copy_up between two directories given by name (the daemon passes descriptors)."""
    fds = [beneath.open_root(os.path.dirname(p)) for p in (src, dst, work + "/.")]
    try:
        return copyup.copy_up(fds[0], "/" + os.path.basename(src), fds[1],
                              "/" + os.path.basename(dst), fds[2], xattr_permissions, data)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (lower, upper, work):
        d.mkdir()
    return lower, upper, work


def test_a_file_keeps_data_mode_times_and_xattrs(dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    src = lower / "f"
    src.write_bytes(b"data" * 5000)
    os.chmod(src, 0o4751)
    os.utime(src, ns=(1_000_000_123, 2_000_000_456))
    os.setxattr(src, "user.kept", b"yes")
    os.setxattr(src, upperfmt.OVERRIDE_XATTR, b"0:42:0640")
    os.setxattr(src, "user.overlay.origin", b"not for the copy")
    st = copy_up(str(src), str(upper / "f"), str(work), xattr_permissions=False)
    assert (upper / "f").read_bytes() == b"data" * 5000
    assert stat.S_IMODE(st.st_mode) == 0o4751
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    assert sorted(os.listxattr(upper / "f")) == sorted(["user.kept", upperfmt.OVERRIDE_XATTR])
    assert os.listdir(work) == []


def test_holes_stay_holes(dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    with open(lower / "sparse", "wb") as f:
        f.write(b"a" * 4096)
        f.seek(16 * MIB)
        f.write(b"b" * 4096)
        f.truncate(32 * MIB)
    st = copy_up(str(lower / "sparse"), str(upper / "sparse"), str(work), False)
    assert st.st_size == 32 * MIB
    assert st.st_blocks * 512 < MIB
    with open(upper / "sparse", "rb") as f:
        f.seek(16 * MIB - 2)
        assert f.read(4) == b"\0\0bb"


def test_a_directory_is_copied_without_its_entries_or_opaque_marker(
        dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    (lower / "d").mkdir(mode=0o750)
    (lower / "d" / "child").write_text("stays below")
    upperfmt.set_opaque(lower / "d")
    st = copy_up(str(lower / "d"), str(upper / "d"), str(work), False)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert os.listdir(upper / "d") == []
    assert not upperfmt.is_opaque(upper / "d")


def test_symlinks_and_fifos(dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    os.symlink("../target", lower / "link")
    os.mkfifo(lower / "fifo", 0o640)
    copy_up(str(lower / "link"), str(upper / "link"), str(work), False)
    copy_up(str(lower / "fifo"), str(upper / "fifo"), str(work), False)
    assert os.readlink(upper / "link") == "../target"
    st = os.lstat(upper / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640


def test_single_id_mode_adds_no_xattr_to_the_daemons_own_files(
        dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    src = lower / "f"
    src.write_text("x")
    copy_up(str(src), str(upper / "f"), str(work), xattr_permissions=True)
    assert upperfmt.OVERRIDE_XATTR not in os.listxattr(upper / "f")


def test_a_failed_copy_leaves_neither_upper_file_nor_scratch(dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    (lower / "f").write_text("x")
    (upper / "f").mkdir()
    (upper / "f" / "in the way").write_text("")
    with pytest.raises(OSError):
        copy_up(str(lower / "f"), str(upper / "f"), str(work), False)
    assert os.listdir(work) == []
    assert os.listdir(upper / "f") == ["in the way"]


def test_a_copy_for_truncation_keeps_attributes_but_not_data(
        dirs: tuple[Path, Path, Path]) -> None:
    lower, upper, work = dirs
    src = lower / "big"
    src.write_bytes(b"x" * MIB)
    os.chmod(src, 0o640)
    os.setxattr(src, "user.kept", b"yes")
    st = copy_up(str(src), str(upper / "big"), str(work), False, data=False)
    assert st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o640
    assert os.getxattr(upper / "big", "user.kept") == b"yes"
