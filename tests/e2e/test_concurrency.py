"""Several rl commands on one store at once: nothing lost, nothing corrupt."""
from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import OtherStores, Rl, tree_snapshot


def _check_store(rl: Rl) -> None:
    from rootless.store.store import Store

    with Store(rl.root) as s:
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for img in s.images():
            for p in s.layer_paths(img):
                assert p.is_dir(), f"{img.tags} lost layer {p}"
            for d in [img.id, img.manifest_digest, *img.layer_blobs]:
                assert s.blobs.has(d), f"{img.tags} lost blob {d}"


def test_two_loads_and_an_rmi_at_once(tmp_path: Path, busybox_tar: Path, debian_tar: Path,
                                      other_store: OtherStores) -> None:
    src = other_store(tmp_path / "src")
    src("import", str(busybox_tar), "bb1")
    src("import", str(debian_tar), "deb")
    src("save", "-o", str(tmp_path / "bb1.tar"), "bb1")
    src("save", "-o", str(tmp_path / "deb.tar"), "deb")
    reference = {name: tree_snapshot(p) for name, p in
                 (("bb1", _layer(src, "bb1")), ("deb", _layer(src, "deb")))}

    for round_ in range(3):
        root = tmp_path / f"dst{round_}"
        rl = other_store(root)
        # The victim shares its only layer with bb1: removing it must not take the layer from the load.
        rl("load", "-i", str(tmp_path / "bb1.tar"))
        rl("tag", "bb1", "victim")
        rl("rmi", "bb1")
        procs = [
            rl.popen("load", "-q", "-i", str(tmp_path / "bb1.tar"), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            rl.popen("load", "-q", "-i", str(tmp_path / "deb.tar"), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            rl.popen("rmi", "victim", stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        ]
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()
        names = {line.split()[0] for line in rl("images").out.splitlines()[1:]}
        assert names == {"bb1", "deb"}
        _check_store(rl)
        for name in ("bb1", "deb"):
            assert tree_snapshot(_layer(rl, name)) == reference[name]


def _layer(rl: Rl, name: str) -> Path:
    from rootless.store.store import Store

    with Store(rl.root) as s:
        paths = s.layer_paths(s.resolve(name))
    assert len(paths) == 1
    return paths[0]


def test_many_imports_at_once_share_one_layer(tmp_path: Path, busybox_tar: Path, rl: Rl) -> None:
    procs = [rl.popen("import", "-c", f"ENV N={i}", str(busybox_tar), f"bb{i}",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    assert len(rl("images", "-q").out.split()) == 4
    assert len(os.listdir(rl.root / "layers")) == 1
    _check_store(rl)
    conn = sqlite3.connect(rl.root / "rl.db")
    assert conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 4
