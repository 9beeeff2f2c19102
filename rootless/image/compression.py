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


class ReadAhead:
    """Reads a stream ahead in a thread, a few chunks at a time. zlib, zstandard and hashlib let
    go of the GIL while they work, so a layer is decompressed (and its blob digested) on another
    core while its files are written: on a 2-core machine, a gzip layer unpacks in the time of
    the slower of the two instead of their sum."""

    def __init__(self, stream: Any, chunk: int = 1 << 20, depth: int = 8) -> None:
        import queue
        import threading

        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._cur = b""  # the chunk being read, from _pos on
        self._pos = 0
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(stream, chunk), daemon=True)
        self._thread.start()

    def _fill(self, stream: Any, chunk: int) -> None:
        import queue

        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = stream.read(chunk)
            except BaseException as e:  # noqa: BLE001 - handed to the reader, in its own thread
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def read(self, n: int = -1) -> bytes:
        want = n if n is not None and n >= 0 else None
        parts = []
        while want is None or want > 0:
            if self._pos >= len(self._cur):
                if self._done:
                    break
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                if not item:
                    self._done = True
                    break
                self._cur, self._pos = item, 0
            take = len(self._cur) - self._pos if want is None else min(want, len(self._cur) - self._pos)
            parts.append(self._cur[self._pos:self._pos + take])
            self._pos += take
            if want is not None:
                want -= take
        return b"".join(parts)

    def close(self) -> None:
        """Stop the thread (a reader that gives up early must not leave it blocked)."""
        self._stop.set()
        self._thread.join()


GZIP_BLOCK = 1 << 20
_WINDOW = 32 << 10  # deflate's: a block is primed with the input's last 32 KiB before it


def gzip_parallel(src: Any, out: Any, level: int, threads: int) -> None:
    """Gzip src into out as pigz does: fixed-size blocks deflated at once on threads (zlib lets
    go of the GIL), each primed with the input before it and ended at a byte boundary (a sync
    flush), so their outputs join into one deflate stream. The bytes depend only on the input,
    the level and zlib (not on the thread count or timing): an image pushes to the same digest
    each time."""
    import zlib
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    def deflate(block: bytes, primer: bytes) -> bytes:
        z = (zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, primer) if primer
             else zlib.compressobj(level, zlib.DEFLATED, -15))
        return z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)

    # No name, mtime 0, the XFL zlib's gzip writes for the level, OS "unknown".
    out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([4 if level == 1 else 2 if level == 9 else 0, 255]))
    crc = size = 0
    primer = b""
    pending: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        try:
            while block := src.read(GZIP_BLOCK):
                pending.append(pool.submit(deflate, block, primer))
                primer = block[-_WINDOW:]
                crc = zlib.crc32(block, crc)
                size += len(block)
                if len(pending) > 2 * threads:  # a few blocks in hand per thread, not the whole layer
                    out.write(pending.popleft().result())
            while pending:
                out.write(pending.popleft().result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    # An empty final block, then the trailer: CRC-32 and size mod 2^32, little-endian.
    out.write(b"\x03\x00" + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
