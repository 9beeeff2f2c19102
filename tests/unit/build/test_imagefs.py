"""imagefs.copy_target: where COPY puts what it copies, over the unpacked layers of an image."""
from __future__ import annotations

import os
from pathlib import Path

from rootless.build import imagefs
from tests.unit.layers import layers_of, write


def test_an_existing_directory_takes_the_copy_whichever_layer_made_it(tmp_path: Path) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "etc/passwd", b"root")
    (mid / "app/ll-tests").mkdir(parents=True)
    (top / "app").mkdir()
    write(top / "file", b"f")
    layers = [str(low), str(mid), str(top)]
    assert imagefs.copy_target(layers, "/etc") == ("/etc", True)
    assert imagefs.copy_target(layers, "/app") == ("/app", True)
    assert imagefs.copy_target(layers, "/file") == ("/file", False)
    assert imagefs.copy_target(layers, "/new") == ("/new", False)
    assert imagefs.copy_target(layers, "/") == ("/", True)


def test_a_removed_directory_takes_no_copy(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    (low / "app").mkdir()
    write(top / ".wh.app")
    assert imagefs.copy_target([str(low), str(top)], "/app") == ("/app", False)


def test_symlinks_lead_to_directories_not_to_files(tmp_path: Path) -> None:
    (layer,) = layers_of(tmp_path, 1)
    (layer / "usr/bin").mkdir(parents=True)
    write(layer / "usr/bin/tool", b"t")
    os.symlink("usr/bin", layer / "bin")
    os.symlink("/usr/bin/tool", layer / "tool-link")
    os.symlink("/nowhere", layer / "dangling")
    layers = [str(layer)]
    assert imagefs.copy_target(layers, "/bin") == ("/usr/bin", True)
    assert imagefs.copy_target(layers, "/bin/tool") == ("/usr/bin/tool", False)
    assert imagefs.copy_target(layers, "/bin/new") == ("/usr/bin/new", False)
    assert imagefs.copy_target(layers, "/tool-link") == ("/tool-link", False), "replaced, not written through"
    assert imagefs.copy_target(layers, "/dangling") == ("/dangling", False)
