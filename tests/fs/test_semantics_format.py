"""One upper format: what one overlay wrote, another mounts and shows the same. A container's
upper directory becomes a layer the same way whichever driver made it (DESIGN.md section 2)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tests.fs.conftest import skip_unless_installed
from tests.fs.harness import (
    WHITEOUT,
    File,
    Overlay,
    Symlink,
    Worker,
    listdir,
    mount,
    snapshot,
    umount,
    write,
    xattrs,
)

LOWERS = [
    {"d/a": File(b"a"), "d/b": File(b"b"), "d/sub/x": File(b"x"), "e/y": File(b"y"), "l": Symlink("d/a"),
     "gone": WHITEOUT},
    {"d/low": File(b"low"), "e/deep/z": File(b"z"), "gone/q": File(), "o/hidden": File()},
]


def _changes(root: str) -> None:
    p = lambda rel: os.path.join(root, rel)
    write(p("d/a"), b"rewritten")
    os.unlink(p("d/b"))
    os.unlink(p("d/low"))
    os.unlink(p("d/sub/x"))
    os.rmdir(p("d/sub"))
    os.mkdir(p("d/sub"))  # opaque: the old x must stay hidden
    write(p("d/sub/new"), b"new")
    for rel in ("e/deep/z", "o/hidden"):
        os.unlink(p(rel))
    os.rmdir(p("e/deep"))
    os.rmdir(p("o"))
    os.mkdir(p("o"))
    os.chmod(p("e"), 0o700)
    os.symlink("d/sub/new", p("l2"))
    os.mkfifo(p("e/fifo"))
    os.setxattr(p("e/y"), "user.x", b"1")
    os.rename(p("e/y"), p("d/y"))
    os.mkdir(p("gone"))


# Every writer read by ours (which must read all their markers) and by the kernel where the
# writer uses the kernel's format (fuse-overlayfs marks opaque directories its own way).
PAIRS = [("ours", "ours"), ("kernel", "ours"), ("fuse-overlayfs", "ours"), ("ours", "kernel"), ("kernel", "kernel")]


@pytest.mark.parametrize(("writer", "reader"), PAIRS, ids=[f"{w}-then-{r}" for w, r in PAIRS])
def test_an_upper_written_by_one_overlay_reads_the_same_in_another(worker: Worker, tmp_path: Path, writer: str,
                                                                    reader: str) -> None:
    skip_unless_installed(writer)
    ov = Overlay(worker, writer, tmp_path / "ws" / "1", LOWERS)
    ov(_changes, ov.p())
    written = ov(snapshot, ov.p())
    ov.umount()
    other = dataclasses.replace(ov.mnt, impl=reader, work=ov.mnt.work + "-" + reader)
    ov(os.mkdir, other.work)
    ov(mount, other)
    try:
        assert ov(snapshot, other.merged) == written
        assert ov(xattrs, os.path.join(other.merged, "d/y")) == {"user.x": b"1"}
        assert ov(listdir, os.path.join(other.merged, "d/sub")) == ["new"]
        assert ov(listdir, os.path.join(other.merged, "o")) == []
        assert ov(listdir, os.path.join(other.merged, "gone")) == []
    finally:
        ov(umount, other)
