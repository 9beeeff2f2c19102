"""The kernel overlay probe's remembered answer: one per file system of the store."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import native
from rootless.runtime.storage import kernel_overlay_usable, probe_cache_name
from rootless.store.store import Store
from tests.conftest import kernel_allows_overlay

TMPFS_MAGIC = 0x01021994


@pytest.fixture
def on_tmpfs() -> Iterator[Path]:
    """A directory on /dev/shm, a tmpfs every user may write."""
    d = Path(tempfile.mkdtemp(prefix="rl-probe-test-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d)


def _fs_type(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return native.fstatfs_type(fd)
    finally:
        os.close(fd)


def test_stores_on_two_file_systems_are_probed_and_remembered_apart(
        tmp_path: Path, on_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert _fs_type(tmp_path) != TMPFS_MAGIC and _fs_type(on_tmpfs) == TMPFS_MAGIC
    stores = [Store(tmp_path / "store"), Store(on_tmpfs / "store")]
    try:
        names = [probe_cache_name(s.root, s.mapping.mode) for s in stores]
        assert names[0] != names[1]
        answers = [kernel_overlay_usable(s) for s in stores]
        assert sorted(p.name for p in (xdg / "rl").glob("overlay-probe-*.json")) == sorted(names)
        for store, name, answer, where in zip(stores, names, answers, (tmp_path / "oracle", on_tmpfs / "oracle")):
            # What the kernel allows on that file system, asked without rl, is what rl remembers.
            assert answer[0] is kernel_allows_overlay(where), (store.root, answer)
            assert json.loads((xdg / "rl" / name).read_text()) == {"ok": answer[0], "detail": answer[1]}
            assert kernel_overlay_usable(store) == answer
    finally:
        for s in stores:
            s.close()
