"""Helpers of the image tests: tar archives made member by member, a stream read front to back,
and what an extracted tree holds."""
from __future__ import annotations

import errno
import io
import os
import tarfile
from pathlib import Path
from typing import Any

from fuse_overlay import upperfmt

MTIME = 1_600_000_000


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, mode: int = 0o644, uid: int = 0,
           gid: int = 0, mtime: float = MTIME, linkname: str = "", xattrs: dict[str, bytes] | None = None,
           dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = mode, uid, gid, mtime, linkname
    ti.devmajor, ti.devminor = dev
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
        return ti, data
    return ti, None


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


class OneWay(io.RawIOBase):
    """A stream that can only be read front to back, a few bytes at a time (like a pipe)."""

    def __init__(self, data: bytes, step: int = 7000) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def override(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, upperfmt.OVERRIDE_XATTR, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EPERM):
            return None
        raise


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[Any, ...]]:
    """Everything under root except `skip`: what an escape would change."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent and skip.name in dirnames:
            dirnames.remove(skip.name)
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(root))] = (st.st_mode, st.st_nlink, st.st_mtime_ns, data)
    return out
