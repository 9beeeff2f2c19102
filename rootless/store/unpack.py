"""Turn layer bytes into a blob and an unpacked tree in one pass: copy, digest, decompress, extract.

The jobs run in a child that is root of a user namespace with the full subordinate range when
there is one (so file owners are real), or in this process in single-id mode (owners in xattrs).
"""
from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from rootless.errors import ArchiveError, DigestMismatch, LayerError, RlError
from rootless.image.compression import Prefixed, ReadAhead, decompressing
from rootless.image.oci import sniff_compression
from rootless.values import valueclass

CHUNK = 1 << 20


@valueclass
class LayerInput:
    """Bytes of a layer: `length` bytes of the file at `path` from `offset` (None: to its end)."""

    path: str
    offset: int = 0
    length: int | None = None


@valueclass
class UnpackJob:
    src: LayerInput
    blob_tmp: str | None  # where to copy the raw bytes to, when the store lacks the blob
    dest: str | None  # empty directory to extract into, when the store lacks the layer
    owners: str  # "real" or "xattr"
    digest: str | None = None  # what the raw bytes should hash to, when known


@valueclass
class UnpackResult:
    digest: str
    size: int
    diff_id: str
    diff_size: int
    compression: str
    skipped_devices: tuple[str, ...]


class _Source:
    """Reads a byte range, hashing it and copying it to the blob file as it goes."""

    def __init__(self, f: BinaryIO, length: int | None, copy_to: BinaryIO | None) -> None:
        self._f = f
        self._left = length
        self._copy = copy_to
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK * 16
        if self._left is not None:
            n = min(n, self._left)
        if n == 0:
            return b""
        data = self._f.read(n)
        if self._left is not None:
            if len(data) < n and not data:
                raise ArchiveError("layer data is truncated")
            self._left -= len(data)
        self.hash.update(data)
        self.size += len(data)
        if self._copy is not None:
            self._copy.write(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Hashing:
    """Digests the uncompressed stream (the DiffID) as the extractor reads it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n is not None and n >= 0 else CHUNK)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def run_job(job: UnpackJob) -> UnpackResult:
    from rootless.image.extract import extract_layer

    with open(job.src.path, "rb", buffering=0) as raw:
        if job.src.offset:
            raw.seek(job.src.offset)
        length = job.src.length
        head = raw.read(min(8, length) if length is not None else 8)
        reader = Prefixed(head, raw)  # type: ignore[arg-type]
        copy = open(job.blob_tmp, "wb") if job.blob_tmp else None
        try:
            src = _Source(reader, length, copy)  # type: ignore[arg-type]
            compression = sniff_compression(head)
            skipped: tuple[str, ...] = ()
            # Even when the layer is already unpacked, a new blob is decompressed and digested:
            # its bytes must be the DiffID the config claims, or a save would hand them on.
            try:
                if compression not in ("none", "gzip", "zstd"):
                    raise LayerError(f"layer compression {compression} is not supported (use gzip, zstd or none)")
                ahead = ReadAhead(decompressing(src, compression)) if compression != "none" else None
                stream = _Hashing(ahead if ahead is not None else src)
                try:
                    if job.dest is not None:
                        skipped = extract_layer(stream, job.dest, owners=job.owners).skipped_devices  # type: ignore[arg-type]
                    stream.drain()
                finally:
                    if ahead is not None:
                        ahead.close()
            except Exception as e:  # gzip, zlib and zstandard each raise their own kinds
                # Bytes that are not what their digest says (a download gone wrong) usually break
                # the gzip or tar stream first: say what is wrong with them, not what broke.
                io_error = isinstance(e, OSError) and e.errno is not None
                if job.digest is not None and not io_error and not isinstance(e, ArchiveError):
                    src.drain()
                    if "sha256:" + src.hash.hexdigest() != job.digest:
                        raise DigestMismatch("layer", job.digest, "sha256:" + src.hash.hexdigest()) from e
                if isinstance(e, RlError):
                    raise
                if io_error:
                    raise  # disk full, permission: not the layer's fault
                raise LayerError(f"layer is corrupt or truncated: {type(e).__name__}: {e}") from e
            diff_id = "sha256:" + stream.hash.hexdigest()
            diff_size = stream.size
            src.drain()
            if copy is not None:
                copy.flush()
                os.fsync(copy.fileno())
        finally:
            if copy is not None:
                copy.close()
    return UnpackResult("sha256:" + src.hash.hexdigest(), src.size, diff_id, diff_size, compression, skipped)


def run_jobs(jobs: list[UnpackJob]) -> list[UnpackResult]:
    return [run_job(j) for j in jobs]
