"""Attacks on rl's isolation, each made the way a hostile container or image would make it.

Every test names the finding or CVE it reproduces. A host file the test creates outside the
container is the victim: it must come out of the attack unchanged.
"""
from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Rl


def _busybox_with(busybox_tar: Path, out: Path, extra: dict[str, str | None]) -> None:
    """busybox's root file system with `extra` on top: name -> symlink target, or None for an
    empty directory; entries of busybox under a replaced name are left out."""
    replaced = tuple(n.strip("/") for n in extra)
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            name = m.name.strip("/").removeprefix("./")
            if any(name == r or name.startswith(r + "/") for r in replaced):
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        for name, link in extra.items():
            info = tarfile.TarInfo(name.strip("/"))
            info.mtime = 1700000000
            if link is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.type, info.linkname = tarfile.SYMTYPE, link
            dst.addfile(info, io.BytesIO(b""))


@pytest.fixture
def hostile_image(rl: Rl, busybox_tar: Path, tmp_path: Path) -> Callable[[str, dict[str, str | None]], str]:
    """hostile_image(tag, {name: symlink target or None for a directory}) imports busybox with
    those entries as image `tag`; returns the tag."""
    def make(tag: str, extra: dict[str, str | None]) -> str:
        out = tmp_path / f"{tag}.tar"
        _busybox_with(busybox_tar, out, extra)
        rl("import", str(out), tag)
        return tag
    return make
