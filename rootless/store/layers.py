"""Unpacked layers: one directory per ChainID under layers/, shared by every image that has it."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from rootless.store.blobs import check_digest


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "layers"
        # Copies of layers with shifted owners, one directory per id mapping (--userns keep-id).
        self.shifted_dir = root / "layers-shifted"

    def path(self, chain_id: str) -> Path:
        return self.dir / check_digest(chain_id)[len("sha256:"):]

    def has(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir()

    def shifted_path(self, chain_id: str, mapping_key: str) -> Path:
        """The root of a shifted copy. It lies one level down, in a directory of the user's own,
        because moving a directory (into place, or out to be removed) needs write access to it
        and the root of a copy belongs to a subordinate id."""
        return self.shifted_dir / mapping_key / check_digest(chain_id)[len("sha256:"):] / "tree"

    def shifted_on_disk(self) -> list[tuple[str, Path]]:
        """(chain id, directory) of every shifted copy."""
        out = []
        for key in os.listdir(self.shifted_dir) if self.shifted_dir.is_dir() else []:
            for n in os.listdir(self.shifted_dir / key):
                if len(n) == 64:
                    out.append(("sha256:" + n, self.shifted_dir / key / n))
        return out

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
