"""Content-addressed blobs: manifests, configs and layer blobs under blobs/sha256/HEX."""
from __future__ import annotations

import os
import re
from pathlib import Path

from rootless.errors import DigestMismatch, StoreError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import BinaryIO

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise StoreError(f"unsupported or malformed digest: {digest!r} (only sha256 is supported)")
    return digest


def sha256_digest(data: bytes) -> str:
    import hashlib  # here: OpenSSL's load costs ~2 ms on paths that never hash

    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobWriter:
    """Writes a blob to a temp file while hashing it; commit() verifies and renames it into place."""

    def __init__(self, store: "BlobStore", tmp_path: Path) -> None:
        self._store = store
        self._tmp = tmp_path
        self._f: BinaryIO | None = open(tmp_path, "wb")
        import hashlib

        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        assert self._f is not None
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None, what: str = "blob") -> str:
        assert self._f is not None
        digest = self.digest
        if expected is not None and digest != expected:
            self.abort()
            raise DigestMismatch(what, expected, digest)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        os.chmod(self._tmp, 0o644)
        os.rename(self._tmp, self._store.path(digest))
        return digest

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.dir / check_digest(digest)[len("sha256:"):]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def referenced(self, digest: str, size: int, image: str) -> tuple[Path, int]:
        """The file of a blob that `image`'s manifest lists with `size`, and its size: a clear
        StoreError when the store lost it or holds a different length."""
        path = self.path(digest)
        try:
            found = path.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"blob {digest} of image {image} is missing from the store (remove the image "
                             "and load or pull it again)")
        if found != size:
            raise StoreError(f"blob {digest} of image {image} is {found} bytes, its manifest says {size}")
        return path, found

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {digest} is missing from the store (run 'rl system prune' and "
                             "load the image again)")

    def writer(self, tmp_path: Path) -> BlobWriter:
        self.dir.mkdir(parents=True, exist_ok=True)
        return BlobWriter(self, tmp_path)

    def put(self, data: bytes, tmp_path: Path, expected: str | None = None, what: str = "blob") -> str:
        digest = sha256_digest(data)
        if expected is not None and digest != expected:
            raise DigestMismatch(what, expected, digest)
        if self.has(digest):
            return digest
        w = self.writer(tmp_path)
        w.write(data)
        return w.commit()

    def all(self) -> list[str]:
        try:
            return ["sha256:" + n for n in os.listdir(self.dir) if len(n) == 64]
        except FileNotFoundError:
            return []

    def remove(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass
