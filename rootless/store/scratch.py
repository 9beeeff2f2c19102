"""Per-process scratch directories inside the store, so temp files rename into place atomically.

Each process owns `tmp/<random>/` and holds a flock on `tmp/<random>.lock` while it lives. A
scratch dir whose lock can be taken belongs to a process that died: the next rl command removes it.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


class Scratch:
    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self._dir: Path | None = None
        self._lock_fd: int | None = None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self.tmp_root.mkdir(parents=True, exist_ok=True)
            # os.urandom, not secrets: that module pulls in random and OpenSSL (~4 ms per command).
            name = f"{os.getpid()}-{os.urandom(4).hex()}"
            fd = os.open(self.tmp_root / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.tmp_root / name
            path.mkdir(mode=0o700)
            self._lock_fd, self._dir = fd, path
        return self._dir

    def new_path(self, prefix: str) -> Path:
        return self.dir / f"{prefix}-{os.urandom(6).hex()}"

    def stale(self) -> list[Path]:
        """Scratch dirs of processes that are gone, never this one's."""
        return [s for s in stale_dirs(self.tmp_root) if s != self._dir]

    def close(self, remove_tree: Callable[[Path], None]) -> None:
        if self._dir is not None:
            remove_tree(self._dir)
            try:
                os.unlink(self.tmp_root / f"{self._dir.name}.lock")
            except FileNotFoundError:
                pass
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self._dir = self._lock_fd = None


def stale_dirs(tmp_root: Path) -> list[Path]:
    """Scratch dirs (and their lock files) left by processes that are gone."""
    stale: list[Path] = []
    try:
        names = os.listdir(tmp_root)
    except FileNotFoundError:
        return stale
    for name in names:
        if name.endswith(".lock"):
            continue
        lock = tmp_root / f"{name}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            stale.append(tmp_root / name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        stale.append(tmp_root / name)
    return stale


def remove_lock_files_of(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            os.unlink(d.parent / f"{d.name}.lock")
        except FileNotFoundError:
            pass
