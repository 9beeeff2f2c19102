"""The store-wide lock: writers that add content share it; garbage collection takes it alone.

Content is written before the database row that makes it reachable, so a collector running
between the two would delete it. Adders hold the lock shared for their whole run, and the
collector holds it exclusively.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def store_lock(root: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def store_lock_if_free(root: Path) -> Iterator[bool]:
    """The lock held exclusively if no one holds it now (True), else nothing (False): for tidying
    that can wait for the next command rather than make this one wait."""
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
