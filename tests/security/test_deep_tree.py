"""Finding 6 of the isolation audit: a malicious image blocks its own removal forever.

A layer holding a path about 2,000 directories deep loaded fine, then `rl rmi` and every later
`rl system prune` failed with "Too many open files": the removal held a descriptor per level, and
the test user's limit is 1024. The user could not remove the files by hand either (they belong to
subordinate ids), so the disk space was gone for good.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl

# As deep as a name may be: rl refuses layer entries longer than 4095 bytes.
DEPTH = 2040


def _deep_layer(path: Path) -> None:
    """A root file system tar whose deepest file lies DEPTH directories down, with side branches
    on the way so that removal goes up and down again."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        name = ""
        for level in range(DEPTH):
            name += ("/" if name else "") + "d"
            d = tarfile.TarInfo(name)
            d.type, d.mode = tarfile.DIRTYPE, 0o755 if level % 7 else 0o500  # some unwritable
            tf.addfile(d)
            if level % 50 == 0:
                side = tarfile.TarInfo(name + "/s")
                side.type, side.mode = tarfile.DIRTYPE, 0o000
                tf.addfile(side)
        data = b"bottom\n"
        f = tarfile.TarInfo(name + "/f")
        f.size = len(data)
        tf.addfile(f, io.BytesIO(data))


def _layers_left(rl: Rl) -> list[Path]:
    return [p for p in (rl.root / "layers").iterdir()] if (rl.root / "layers").exists() else []


@pytest.mark.parametrize("remove", [("rmi", "deep"), ("system", "prune", "-a", "-f")])
def test_an_image_thousands_of_levels_deep_can_be_removed(rl: Rl, tmp_path: Path,
                                                          remove: tuple[str, ...]) -> None:
    layer = tmp_path / "deep.tar"
    _deep_layer(layer)
    rl("import", str(layer), "deep")
    assert _layers_left(rl), "the layer was unpacked"
    r = rl(*remove, check=False)
    assert r.code == 0, r.err
    assert _layers_left(rl) == [], "the layer's tree is gone"
    assert rl("images", "-q").out == ""


@pytest.mark.single_id
def test_an_image_thousands_of_levels_deep_can_be_removed_in_single_id_mode(rl: Rl, tmp_path: Path) -> None:
    layer = tmp_path / "deep.tar"
    _deep_layer(layer)
    rl("import", str(layer), "deep")
    r = rl("rmi", "deep", check=False)
    assert r.code == 0, r.err
    assert _layers_left(rl) == []
