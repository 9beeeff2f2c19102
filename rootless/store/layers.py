"""Unpacked layers: one directory per ChainID under layers/, shared by every image that has it."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from rootless.store.blobs import check_digest


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "layers"

    def path(self, chain_id: str) -> Path:
        return self.dir / check_digest(chain_id)[len("sha256:"):]

    def has(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir()

    def commit(self, tmp_dir: Path, chain_id: str) -> bool:
        """Move an extracted tree into place; False when another process got there first."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp_dir, self.path(chain_id))
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    def on_disk(self) -> list[str]:
        try:
            return ["sha256:" + n for n in os.listdir(self.dir) if len(n) == 64]
        except FileNotFoundError:
            return []
