"""`extract_into`, rl cp's unpacking: merged into a directory that holds more than the tar."""
from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from rootless.errors import ArchiveCorrupt, LayerError
from rootless.image.extract import extract_into
from tests.unit.image.tars import make_tar, member


def _into(dest: Path, data: bytes, owners: str = "self") -> None:
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        extract_into(io.BytesIO(data), fd, owners=owners)  # type: ignore[arg-type]
    finally:
        os.close(fd)


def test_merges_replaces_files_and_keeps_the_destination_itself(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("kept\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d/old").write_text("old\n")
    (tmp_path / "f").symlink_to("/etc/passwd")
    tmp_path.chmod(0o750)
    _into(tmp_path, make_tar(member(".", tarfile.DIRTYPE, mode=0o777), member("d", tarfile.DIRTYPE, mode=0o755),
                             member("d/new", data=b"new\n"), member("f", data=b"file\n"),
                             member(".wh.x", data=b"plain\n"), member("p", tarfile.FIFOTYPE, mode=0o640)))
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750  # the destination keeps its own mode
    assert (tmp_path / "keep").read_text() == "kept\n" and (tmp_path / "d/old").read_text() == "old\n"
    assert (tmp_path / "d/new").read_text() == "new\n"
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "f").read_text() == "file\n"  # replaced
    assert (tmp_path / ".wh.x").read_text() == "plain\n"  # no whiteouts in a copy
    assert stat.S_ISFIFO((tmp_path / "p").lstat().st_mode) and stat.S_IMODE((tmp_path / "p").lstat().st_mode) == 0o640


def test_set_id_bits_are_dropped_for_the_extracting_user_only(tmp_path: Path) -> None:
    data = make_tar(member("s", data=b"x", mode=0o4755))
    (tmp_path / "self").mkdir()
    (tmp_path / "root").mkdir()
    _into(tmp_path / "self", data, "self")
    _into(tmp_path / "root", data, "root")
    assert stat.S_IMODE((tmp_path / "self/s").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "root/s").stat().st_mode) == 0o4755


def test_a_directory_is_not_replaced_by_a_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/inside").write_text("x")
    with pytest.raises(LayerError, match="cannot overwrite the directory d with a non-directory"):
        _into(tmp_path, make_tar(member("d", data=b"file")))
    assert (tmp_path / "d/inside").read_text() == "x"


def test_a_stream_cut_short_is_told_apart(tmp_path: Path) -> None:
    data = make_tar(member("big", data=b"x" * 100_000))
    with pytest.raises(ArchiveCorrupt, match="the archive is corrupt or truncated"):
        _into(tmp_path, data[:50_000])
