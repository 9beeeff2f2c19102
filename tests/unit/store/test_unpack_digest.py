"""A layer whose bytes are not what its digest says is reported as a digest mismatch, even when
the corruption breaks its gzip stream before the digest can be compared."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from rootless.errors import DigestMismatch, LayerError
from rootless.store.unpack import LayerInput, UnpackJob, run_job


def _corrupt_gzip_layer(tmp_path: Path) -> tuple[Path, str]:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        data = os.urandom(200_000)
        info = tarfile.TarInfo("noise")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    blob = gzip.compress(tar.getvalue(), mtime=0)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    path = tmp_path / "layer"
    path.write_bytes(bytes(bad))
    return path, digest


def test_corrupt_bytes_with_a_digest_to_check_are_a_digest_mismatch(tmp_path: Path) -> None:
    path, digest = _corrupt_gzip_layer(tmp_path)
    with pytest.raises(DigestMismatch, match=digest):
        run_job(UnpackJob(LayerInput(str(path)), None, None, "xattr", digest))


def test_without_a_digest_they_are_a_corrupt_layer(tmp_path: Path) -> None:
    path, _ = _corrupt_gzip_layer(tmp_path)
    with pytest.raises(LayerError, match="corrupt"):
        run_job(UnpackJob(LayerInput(str(path)), None, None, "xattr"))
