"""layerfs: the overlay's rules over unpacked layers, by lookup (`resolve`) and by listing
(`fuse_overlay.merge.Listing`, as the vfs driver lists), which must agree with each other; and no lookup leaves the layers."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fuse_overlay import merge, upperfmt
from rootless.image import layerfs
from tests.unit.layers import layers_of, whiteout, write


def whiteout_device(path: Path) -> None:
    try:
        whiteout(path)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EOPNOTSUPP):
            pytest.skip(f"this kernel or filesystem refuses whiteout devices: {e.strerror}")
        raise


def resolve(layers: list[Path], path: str, follow: bool = False) -> list[str] | None:
    """The entry's real paths (top first), relative to tmp_path's layers, or None."""
    found = layerfs.resolve([str(p) for p in layers], path, follow_symlinks=follow)
    if found is None:
        return None
    base = str(layers[0].parent) + "/"
    return [p.removeprefix(base) for p in found.paths]


def listing(layers: list[Path], rel: str = "") -> dict[str, object]:
    """What merge.Listing shows of a directory, walked to from the root as vfs does: name -> its
    layers (top first) for a directory, its layer for a non-directory, or "hidden"."""
    tops = list(reversed(layers))
    candidates = list(range(len(tops)))
    where = ""
    names = _list(tops, candidates, where)
    for name in [p for p in rel.split("/") if p]:
        shown = names[name]
        assert isinstance(shown, merge.Merging)
        candidates, where = shown.layers, f"{where}/{name}"
        names = _list(tops, candidates, where)
    out: dict[str, object] = {}
    for name, shown in names.items():
        if isinstance(shown, merge.Merging):
            out[name] = [tops[i].name for i in shown.layers]
        elif isinstance(shown, merge.Leaf):
            out[name] = tops[shown.layer].name
        else:
            out[name] = "hidden"
    return out


def _list(tops: list[Path], candidates: list[int], where: str) -> dict[str, merge.Shown]:
    merged = merge.Listing()
    for n, i in enumerate(candidates):
        fd = os.open(f"{tops[i]}{where}", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if merged.add(i, fd, may_be_opaque=where != "" and n < len(candidates) - 1):
                break
        finally:
            os.close(fd)
    return merged.names


def assert_lookup_agrees_with_listing(layers: list[Path], rel: str = "") -> None:
    """Every name the listing shows resolves to the same layers; hidden names resolve to None."""
    for name, shown in listing(layers, rel).items():
        got = resolve(layers, f"/{rel}/{name}")
        if shown == "hidden":
            assert got is None, name
        elif isinstance(shown, list):
            assert got == [f"{layer}/{rel}/{name}".replace("//", "/") for layer in shown], name
        else:
            assert got == [f"{shown}/{rel}/{name}".replace("//", "/")], name


def test_wh_file_hides_lower_file_and_directory(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "f", b"f")
    write(low / "d/x", b"x")
    write(low / "keep", b"k")
    write(top / ".wh.f")
    write(top / ".wh.d")
    write(top / ".wh.nothing")
    assert resolve([low, top], "/f") is None
    assert resolve([low, top], "/d") is None
    assert resolve([low, top], "/d/x") is None
    assert resolve([low, top], "/keep") == ["l0/keep"]
    assert resolve([low, top], "/.wh.f") is None  # a marker, not content
    assert listing([low, top]) == {"f": "hidden", "d": "hidden", "keep": "l0", "nothing": "hidden"}
    assert_lookup_agrees_with_listing([low, top])


def test_wh_file_beside_a_directory_replaces_the_lower_one(tmp_path: Path) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "r/old", b"old")
    write(mid / ".wh.r")
    write(mid / "r/new", b"new")
    write(top / "r/top", b"top")
    assert resolve([low, mid, top], "/r") == ["l2/r", "l1/r"]
    assert resolve([low, mid, top], "/r/old") is None
    assert resolve([low, mid, top], "/r/new") == ["l1/r/new"]
    assert listing([low, mid, top], "r") == {"top": "l2", "new": "l1"}
    assert_lookup_agrees_with_listing([low, mid, top])
    assert_lookup_agrees_with_listing([low, mid, top], "r")


def test_a_wh_entry_of_any_type_is_a_whiteout_never_content(tmp_path: Path) -> None:
    # The OCI layer format: an entry named `.wh.NAME`, whatever its type, hides NAME below.
    low, top = layers_of(tmp_path, 2)
    for name in ("f", "g", "h"):
        write(low / name, name.encode())
    (top / ".wh.f").mkdir()
    os.symlink("x", top / ".wh.g")
    os.mkfifo(top / ".wh.h")
    for name in ("f", "g", "h"):
        assert resolve([low, top], f"/{name}") is None
        assert resolve([low, top], f"/.wh.{name}") is None
    assert listing([low, top]) == {"f": "hidden", "g": "hidden", "h": "hidden"}
    assert_lookup_agrees_with_listing([low, top])


def test_whiteout_device_hides_lower_entries(tmp_path: Path) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "f", b"f")
    write(low / "d/x", b"x")
    whiteout_device(mid / "f")
    whiteout_device(mid / "d")
    write(top / "d/y", b"y")  # made anew above the whiteout: the lower d stays hidden
    assert resolve([low, mid, top], "/f") is None
    assert resolve([low, mid, top], "/d") == ["l2/d"]
    assert resolve([low, mid, top], "/d/x") is None
    assert resolve([low, mid], "/d") is None
    assert listing([low, mid, top]) == {"f": "hidden", "d": ["l2"]}
    assert_lookup_agrees_with_listing([low, mid, top])


@pytest.mark.parametrize("mark", ["user.overlay.opaque", "user.fuseoverlayfs.opaque", "marker file"])
def test_opaque_directory_hides_lower_entries(tmp_path: Path, mark: str) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "d/a", b"a")
    write(low / "d/sub/deep", b"deep")
    (mid / "d").mkdir()
    if mark == "marker file":
        write(mid / "d" / upperfmt.OPAQUE_MARKER)
    else:
        os.setxattr(mid / "d", mark, b"y")
    write(mid / "d/b", b"b")
    write(top / "d/c", b"c")
    layers = [low, mid, top]
    assert resolve(layers, "/d") == ["l2/d", "l1/d"]
    assert resolve(layers, "/d/a") is None
    assert resolve(layers, "/d/sub/deep") is None
    assert resolve(layers, "/d/b") == ["l1/d/b"]
    assert resolve(layers, "/d/" + upperfmt.OPAQUE_MARKER) is None
    assert listing(layers, "d") == {"b": "l1", "c": "l2"}
    assert_lookup_agrees_with_listing(layers, "d")


def test_opaque_mark_on_a_layer_root_is_ignored(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    write(low / "a", b"a")
    os.setxattr(top, upperfmt.OPAQUE_XATTR, b"y")
    write(top / upperfmt.OPAQUE_MARKER)
    assert resolve([low, top], "/a") == ["l0/a"]
    assert resolve([low, top], "/") == ["l1", "l0"]
    assert listing([low, top]) == {"a": "l0"}


def test_upper_file_shadows_lower_directory(tmp_path: Path) -> None:
    low, mid, top = layers_of(tmp_path, 3)
    write(low / "d/x", b"x")
    write(mid / "d", b"a file now")
    write(top / "e/y", b"y")
    write(mid / "e", b"below a directory")
    layers = [low, mid, top]
    found = layerfs.resolve([str(p) for p in layers], "/d")
    assert found is not None and not found.is_dir and found.paths == (str(mid / "d"),)
    assert resolve(layers, "/d/x") is None
    assert resolve(layers, "/e") == ["l2/e"]  # and the file below it ends its merge
    assert listing(layers) == {"d": "l1", "e": ["l2"]}
    assert_lookup_agrees_with_listing(layers)


def test_symlinks_never_lead_out_of_the_layers(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside/secret", b"secret").parent
    low, top = layers_of(tmp_path, 2)
    write(low / "etc/passwd", b"root")
    os.symlink(str(outside), top / "abs")
    os.symlink("../../outside", top / "up")
    os.symlink("/etc", top / "etc2")
    os.symlink("../..", top / "root")
    layers = [low, top]
    # Not followed: a symlink on the way is no directory.
    assert resolve(layers, "/abs/secret") is None
    assert resolve(layers, "/up/secret") is None
    assert resolve(layers, "/etc2/passwd") is None
    assert resolve(layers, "/up") == ["l1/up"]
    # Followed, they resolve inside the image, where there is no such file.
    assert resolve(layers, "/abs/secret", follow=True) is None
    assert resolve(layers, "/up/secret", follow=True) is None
    assert resolve(layers, "/up", follow=True) is None
    assert resolve(layers, "/root", follow=True) == ["l1", "l0"]  # `..` stops at the image's root
    assert resolve(layers, "/etc2/passwd", follow=True) == ["l0/etc/passwd"]
    # `..` in the path itself neither.
    assert resolve(layers, "/../outside/secret") is None
    assert resolve(layers, "/etc/../../outside/secret", follow=True) is None
    assert resolve(layers, "/etc/../etc/passwd") == ["l0/etc/passwd"]


def test_symlink_loops_end(tmp_path: Path) -> None:
    (layer,) = layers_of(tmp_path, 1)
    os.symlink("b", layer / "a")
    os.symlink("a", layer / "b")
    assert resolve([layer], "/a", follow=True) is None
    assert resolve([layer], "/a") == ["l0/a"]


def test_root_and_no_layers(tmp_path: Path) -> None:
    low, top = layers_of(tmp_path, 2)
    assert resolve([low, top], "/") == resolve([low, top], "/.") == ["l1", "l0"]
    assert layerfs.resolve([], "/") is None
    assert resolve([low, top], "/missing/deeper") is None


def test_real_path_resolves_what_the_image_has_and_keeps_the_rest(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside/secret", b"secret").parent
    low, top = layers_of(tmp_path, 2)
    write(low / "usr/bin/sh", b"sh")
    os.symlink("usr/bin", low / "bin")
    (top / "srv").mkdir()
    os.symlink("/usr/bin", top / "srv/abs")
    os.symlink(str(outside), top / "out")
    os.symlink("../../..", top / "srv/up")
    os.symlink("loop", top / "loop")
    layers = [str(low), str(top)]
    assert layerfs.real_path(layers, "/bin") == "/usr/bin"
    assert layerfs.real_path(layers, "/bin/new/deeper") == "/usr/bin/new/deeper"
    assert layerfs.real_path(layers, "/srv/abs/sh") == "/usr/bin/sh"
    assert layerfs.real_path(layers, "/srv/up/etc") == "/etc", "`..` stops at the image's root"
    assert layerfs.real_path(layers, "/out/secret") == str(outside / "secret"), "the host's path is one of the image"
    assert layerfs.real_path(layers, "/usr/bin/sh/x") == "/usr/bin/sh/x", "a file on the way stays, to be refused"
    assert layerfs.real_path(layers, "/loop/x") == "/loop/x"
    assert layerfs.real_path(layers, "/") == "/"
    assert layerfs.real_path([], "/a/../b") == "/b"
