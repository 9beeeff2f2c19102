"""Bad input: one clear line, exit code 125, and the store exactly as it was."""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl


def _store_is_clean(rl: Rl) -> None:
    """After the next command, nothing of the failed one remains: no image, layer, blob or temp file."""
    assert rl("images", "-q").out == ""
    rl("system", "prune", "-f")
    root = rl.root
    for sub in ("layers", "blobs/sha256", "tmp"):
        d = root / sub
        left = [n for n in os.listdir(d)] if d.exists() else []
        assert left == [], f"{sub} still holds {left}"


def _one_line_125(r) -> None:  # type: ignore[no-untyped-def]
    assert r.code == 125, (r.code, r.err)
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert r.err.startswith("Error: ")
    assert "Traceback" not in r.err


def test_truncated_tarball(rl: Rl, busybox_tar: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.tar"
    data = busybox_tar.read_bytes()
    bad.write_bytes(data[: len(data) // 2 + 100])
    r = rl("import", str(bad), "broken", check=False)
    _one_line_125(r)
    assert "corrupt or truncated" in r.err
    _store_is_clean(rl)


def test_corrupt_gzip(rl: Rl, busybox_tar: Path, tmp_path: Path) -> None:
    data = bytearray(gzip.compress(busybox_tar.read_bytes()[:400_000], compresslevel=1))
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(bytes(data))
    r = rl("import", str(bad), "broken", check=False)
    _one_line_125(r)
    _store_is_clean(rl)


def test_not_a_tar_at_all(rl: Rl, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not an archive\n" * 100)
    r = rl("import", str(bad), "broken", check=False)
    _one_line_125(r)
    _store_is_clean(rl)


def _escaping_tar(tmp_path: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        evil = tarfile.TarInfo("../../../../../../../../tmp/rl-escape-" + str(os.getpid()))
        evil.size = 4
        tf.addfile(evil, io.BytesIO(b"evil"))
    p = tmp_path / "evil.tar"
    p.write_bytes(buf.getvalue())
    return p


def test_escaping_layer(rl: Rl, tmp_path: Path) -> None:
    r = rl("import", str(_escaping_tar(tmp_path)), "evil", check=False)
    _one_line_125(r)
    assert not os.path.exists(f"/tmp/rl-escape-{os.getpid()}")
    _store_is_clean(rl)


def test_missing_source(rl: Rl, tmp_path: Path) -> None:
    r = rl("import", str(tmp_path / "nope.tar"), "x", check=False)
    _one_line_125(r)
    assert "no such file" in r.err


@pytest.mark.parametrize("args", [
    ("import",),                       # missing source
    ("tag", "busybox"),                # missing target
    ("images", "--bogus"),             # unknown flag
    ("rmi",),                          # missing image
    ("frobnicate",),                   # unknown command
])
def test_usage_errors(rl: Rl, args: tuple[str, ...]) -> None:
    _one_line_125(rl(*args, check=False))


def test_invalid_name(rl: Rl, busybox_tar: Path) -> None:
    r = rl("import", str(busybox_tar), "Not/Valid:Name!", check=False)
    _one_line_125(r)
    assert "invalid reference" in r.err
    _store_is_clean(rl)


def test_tag_unknown_image(rl: Rl) -> None:
    r = rl("tag", "ghost", "other", check=False)
    _one_line_125(r)
    assert "image not known: ghost" in r.err


def test_store_that_is_not_writable(rl: Rl, tmp_path: Path, busybox_tar: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    r = rl("--root", str(ro / "store"), "import", str(busybox_tar), "x", check=False)
    _one_line_125(r)


def test_full_disk(tmp_path: Path, busybox_tar: Path) -> None:
    """A store on a 1 MiB tmpfs (mounted in a private user+mount namespace) runs out of space."""
    script = f"""
set -e
mount -t tmpfs -o size=1m tmpfs {tmp_path}/small
export RL_ROOT={tmp_path}/small/store RL_IDMAP=single
set +e
{sys.executable} -m rootless import {busybox_tar} big 2>{tmp_path}/err
echo "exit=$?"
{sys.executable} -m rootless system prune -f >/dev/null 2>&1
ls -A {tmp_path}/small/store/layers {tmp_path}/small/store/blobs/sha256 {tmp_path}/small/store/tmp 2>/dev/null | grep -v ':$' | grep -v '^$' || true
{sys.executable} -m rootless images -q
"""
    (tmp_path / "small").mkdir()
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines == ["exit=125"], p.stdout
    err = (tmp_path / "err").read_text()
    assert len(err.strip().splitlines()) == 1 and "No space left on device" in err, err
