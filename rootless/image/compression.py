"""Compressed streams: sniffing the kind from the first bytes, and reading them decompressed."""
from __future__ import annotations

from typing import Any, BinaryIO


class Prefixed:
    """A stream whose first bytes were already read (to sniff its compression), put back in front."""

    def __init__(self, head: bytes, f: BinaryIO) -> None:
        self._head = head
        self._f = f

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0 or n >= len(self._head):
                h, self._head = self._head, b""
                return h + self._f.read(-1 if n is None or n < 0 else n - len(h))
            h, self._head = self._head[:n], self._head[n:]
            return h
        return self._f.read(n)


def decompressing(f: Any, compression: str) -> Any:
    """A reader of f's decompressed bytes; compression is what oci.sniff_compression said."""
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=f, mode="rb")
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    if compression == "bzip2":
        import bz2

        return bz2.BZ2File(f)
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(f)
    return f
