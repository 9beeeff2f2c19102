"""Helpers of the tests that make unpacked layers by hand: files, whiteouts, layer directories."""
from __future__ import annotations

import os
from pathlib import Path

import native


def write(path: Path, data: bytes = b"", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        native.mknod_whiteout(fd, path.name)
    finally:
        os.close(fd)


def layers_of(tmp_path: Path, count: int) -> list[Path]:
    out = []
    for i in range(count):
        (tmp_path / f"l{i}").mkdir()
        out.append(tmp_path / f"l{i}")
    return out
