"""The parallel gzip rl push compresses layers with: valid gzip, and the same bytes whatever the
number of threads."""
from __future__ import annotations

import gzip
import io
import os

import pytest

from rootless.image.compression import GZIP_BLOCK, gzip_parallel


def _gzip(data: bytes, threads: int, level: int = 2) -> bytes:
    out = io.BytesIO()
    gzip_parallel(io.BytesIO(data), out, level, threads)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 1000, GZIP_BLOCK, 3 * GZIP_BLOCK + 12345])
def test_the_output_is_gzip_of_the_input_and_the_same_for_any_thread_count(size: int) -> None:
    # Half random, half repetitive: blocks that compress and blocks that do not.
    data = (os.urandom(size // 2) + b"layer " * (size // 12 + 1))[:size]
    one = _gzip(data, 1)
    assert gzip.decompress(one) == data
    assert _gzip(data, 2) == one and _gzip(data, 5) == one


def test_blocks_are_primed_with_the_input_before_them() -> None:
    # 16 KiB of noise over and over: unprimed, the second block would start with a whole copy of
    # the noise and cost what the first does; primed, it refers back into the first from its start.
    noise = os.urandom(16 << 10)
    one = len(_gzip(noise * (GZIP_BLOCK // len(noise)), 2))
    two = len(_gzip(noise * (2 * GZIP_BLOCK // len(noise)), 2))
    assert two < 2 * one - len(noise) // 2
