"""write_copy_layer: the tar a COPY or ADD makes, over the unpacked layers of the image it goes
on (plain directories here, read as the user namespace reads them)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from rootless.build.copy import CopyJob, write_copy_layer
from rootless.errors import DockerfileError
from rootless.build.ignore import Ignore
from tests.unit.layers import layers_of, write


def _copy(tmp_path: Path, layers: list[Path], command: str, patterns: list[str], dest: str,
          chown: str | None = None) -> dict[str, tarfile.TarInfo]:
    """The entries of the layer `COMMAND PATTERNS... DEST` writes, from the context tmp_path/ctx."""
    out = tmp_path / "layer.tar"
    job = CopyJob(command, 1, tuple(patterns), dest.rstrip("/") or "/", dest.endswith("/"), chown, None, None,
                  tuple(str(p) for p in layers), str(out), context=str(tmp_path / "ctx"), ignore=Ignore())
    write_copy_layer(job)
    with tarfile.open(out) as tf:
        return {m.name: m for m in tf}


def test_one_file_goes_into_a_directory_of_any_layer(tmp_path: Path) -> None:
    write(tmp_path / "ctx/hello.py", b"print()\n")
    low, top = layers_of(tmp_path, 2)
    (low / "etc").mkdir(mode=0o750)
    (top / "app/ll-tests").mkdir(parents=True)
    assert list(_copy(tmp_path, [low, top], "COPY", ["hello.py"], "/app")) == ["app", "app/hello.py"]
    layer = _copy(tmp_path, [low, top], "COPY", ["hello.py"], "/etc")
    assert list(layer) == ["etc", "etc/hello.py"] and layer["etc"].mode == 0o750, "the directory stays as it is"
    assert list(_copy(tmp_path, [low, top], "COPY", ["hello.py"], "/new")) == ["new"]


def test_the_destination_follows_symlinks_to_directories(tmp_path: Path) -> None:
    write(tmp_path / "ctx/tool", b"#!/bin/sh\n")
    (layer,) = layers_of(tmp_path, 1)
    (layer / "usr/bin").mkdir(parents=True)
    os.symlink("usr/bin", layer / "bin")
    assert list(_copy(tmp_path, [layer], "COPY", ["tool"], "/bin")) == ["usr", "usr/bin", "usr/bin/tool"]
    assert list(_copy(tmp_path, [layer], "COPY", ["tool"], "/bin/sub/")) == ["usr", "usr/bin", "usr/bin/sub",
                                                                               "usr/bin/sub/tool"]


def _archive(path: Path, members: list[tuple[str, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name, uid, gid in members:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            ti.uid, ti.gid, ti.mode = uid, gid, 0o2755 if gid == 50 else 0o755
            tf.addfile(ti, io.BytesIO(b"") if ti.isreg() else None)


LONG = "static/" + "n" * 120  # longer than a ustar name: tarfile puts it in a pax record
BIG_ID = 3_000_000  # too big for a ustar field: in a pax record too


def test_add_keeps_the_archive_owners_unless_chown(tmp_path: Path) -> None:
    _archive(tmp_path / "ctx/site.tgz", [("./", 0, 0), ("home/user/", 1000, 1000), ("usr/bin/sg", 0, 50),
                                         (LONG, BIG_ID, BIG_ID)])
    (layer,) = layers_of(tmp_path, 1)
    got = _copy(tmp_path, [layer], "ADD", ["site.tgz"], "/srv/site/")
    assert {n: (m.uid, m.gid, m.mode) for n, m in got.items()} == {
        "srv": (0, 0, 0o755), "srv/site": (0, 0, 0o755), "srv/site/home": (0, 0, 0o755),
        "srv/site/home/user": (1000, 1000, 0o755), "srv/site/usr": (0, 0, 0o755), "srv/site/usr/bin": (0, 0, 0o755),
        "srv/site/usr/bin/sg": (0, 50, 0o2755), "srv/site/static": (0, 0, 0o755),
        f"srv/site/{LONG}": (BIG_ID, BIG_ID, 0o755)}
    got = _copy(tmp_path, [layer], "ADD", ["site.tgz"], "/", chown="7:8")
    assert {n: (m.uid, m.gid) for n, m in got.items() if not m.isdir() or n == "home/user"} == {
        "home/user": (7, 8), "usr/bin/sg": (7, 8), LONG: (7, 8)}, "no ./ entry for the image's root"


def test_add_leaves_the_directory_it_unpacks_into_to_the_image(tmp_path: Path) -> None:
    # `tar -C dist -cf dist.tar .` lists ./ first, with dist's owner and mode: Docker's untar skips
    # it, so the target keeps the owner and mode ADD made it with, or the image's.
    _archive(tmp_path / "ctx/dist.tgz", [("./", 1000, 50), ("./main.js", 1000, 1000)])
    (layer,) = layers_of(tmp_path, 1)
    (layer / "etc").mkdir(mode=0o750)
    got = _copy(tmp_path, [layer], "ADD", ["dist.tgz"], "/opt/app")
    assert [(n, (m.uid, m.gid), m.mode) for n, m in got.items()] == [
        ("opt", (0, 0), 0o755), ("opt/app", (0, 0), 0o755), ("opt/app/main.js", (1000, 1000), 0o755)]
    got = _copy(tmp_path, [layer], "ADD", ["dist.tgz"], "/etc")
    assert [(n, (m.uid, m.gid), m.mode) for n, m in got.items()] == [
        ("etc", (os.getuid(), os.getgid()), 0o750), ("etc/main.js", (1000, 1000), 0o755)]


def test_add_leaves_the_directories_of_the_image_as_they_are(tmp_path: Path) -> None:
    _archive(tmp_path / "ctx/a.tgz", [("tmp/x", 0, 0), ("bin/tool", 0, 0), ("bin/", 0, 0), ("bin/more", 0, 0),
                                      ("srv/new/f", 0, 0)])
    (layer,) = layers_of(tmp_path, 1)
    (layer / "tmp").mkdir()
    (layer / "tmp").chmod(0o1777)
    (layer / "usr/bin").mkdir(parents=True, mode=0o750)
    os.symlink("usr/bin", layer / "bin")
    me = os.getuid(), os.getgid()
    got = _copy(tmp_path, [layer], "ADD", ["a.tgz"], "/")
    assert [(n, (m.uid, m.gid), m.mode) for n, m in got.items()] == [
        ("tmp", me, 0o1777), ("tmp/x", (0, 0), 0o755),
        ("usr", me, 0o755), ("usr/bin", me, 0o750), ("usr/bin/tool", (0, 0), 0o755),  # through the symlink
        ("bin", (0, 0), 0o755), ("bin/more", (0, 0), 0o755),  # a directory the archive lists replaces it
        ("srv", (0, 0), 0o755), ("srv/new", (0, 0), 0o755), ("srv/new/f", (0, 0), 0o755)]


def test_add_refuses_to_unpack_through_a_file_of_the_image(tmp_path: Path) -> None:
    _archive(tmp_path / "ctx/a.tgz", [("etc/passwd/x", 0, 0)])
    (layer,) = layers_of(tmp_path, 1)
    write(layer / "etc/passwd", b"root")
    with pytest.raises(DockerfileError, match="/etc/passwd is not a directory in the image"):
        _copy(tmp_path, [layer], "ADD", ["a.tgz"], "/")


def test_add_of_a_deeply_nested_archive(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 1500) + "/f"  # deeper than Python's recursion limit
    _archive(tmp_path / "ctx/a.tgz", [(deep, 0, 0)])
    (layer,) = layers_of(tmp_path, 1)
    got = _copy(tmp_path, [layer], "ADD", ["a.tgz"], "/")
    assert len(got) == 1501 and got[deep].isreg()
