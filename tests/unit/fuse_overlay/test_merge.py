"""Name resolution through layers, on real directories in the on-disk formats of every writer."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fuse_overlay import beneath, merge, upperfmt

Opener = Callable[..., list[int]]


@pytest.fixture
def at() -> Iterator[Opener]:
    """The layers as merge takes them: descriptors of their directories."""
    opened: list[int] = []

    def open_roots(*roots: str) -> list[int]:
        fds = [beneath.open_root(r) for r in roots]
        opened.extend(fds)
        return fds
    yield open_roots
    for fd in opened:
        os.close(fd)


def layers(tmp_path: Path, n: int) -> list[str]:
    roots = [str(tmp_path / f"layer{i}") for i in range(n)]
    for r in roots:
        os.mkdir(r)
    return roots


def whiteout(path: str) -> None:
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        upperfmt.make_whiteout(fd, os.path.basename(path))
    finally:
        os.close(fd)


def test_the_topmost_file_wins_and_a_file_hides_directories_below(
        tmp_path: Path, at: Opener) -> None:
    up, l1, l2 = layers(tmp_path, 3)
    Path(l1, "f").write_text("l1")
    Path(l2, "f").write_text("l2")
    Path(up, "d").write_text("a file over a directory")
    os.makedirs(f"{l1}/d/inner")
    found = merge.resolve(at(up, l1, l2), (0, 1, 2), "/f")
    assert found is not None and found.layers == (1,)
    d = merge.resolve(at(up, l1, l2), (0, 1, 2), "/d")
    assert d is not None and not d.is_dir and d.layers == (0,)
    assert merge.list_names(at(up, l1, l2), (0, 1, 2), "") == ["d", "f"]


def test_directories_merge_until_an_opaque_one(tmp_path: Path, at: Opener) -> None:
    up, l1, l2, l3 = layers(tmp_path, 4)
    for r, name in ((up, "u"), (l1, "a"), (l2, "b"), (l3, "c")):
        os.makedirs(f"{r}/d")
        Path(r, "d", name).write_text(name)
    Path(l2, "d", upperfmt.OPAQUE_MARKER).write_text("")
    d = merge.resolve(at(up, l1, l2, l3), (0, 1, 2, 3), "/d")
    assert d is not None and d.layers == (0, 1, 2)
    assert sorted(merge.list_names(at(up, l1, l2, l3), d.layers, "/d")) == ["a", "b", "u"]
    upperfmt.set_opaque(f"{up}/d")
    d = merge.resolve(at(up, l1, l2, l3), (0, 1, 2, 3), "/d")
    assert d is not None and d.layers == (0,)


def test_both_kinds_of_whiteout_hide_lower_entries_but_not_their_own_layer(
        tmp_path: Path, at: Opener) -> None:
    up, l1, l2 = layers(tmp_path, 3)
    for name in ("x", "y", "z"):
        Path(l2, name).write_text(name)
    whiteout(f"{up}/x")
    Path(l1, upperfmt.WHITEOUT_PREFIX + "y").write_text("")
    roots = [up, l1, l2]
    assert merge.resolve(at(*roots), (0, 1, 2), "/x") is None
    assert merge.resolve(at(*roots), (0, 1, 2), "/y") is None
    assert merge.resolve(at(*roots), (0, 1, 2), "/" + upperfmt.WHITEOUT_PREFIX + "y") is None
    assert merge.list_names(at(*roots), (0, 1, 2), "") == ["z"]
    # What the lower layers hold, whatever the upper one says: a directory made over the
    # whiteout of x must be opaque.
    assert merge.has_lower(at(*roots), (0, 1, 2), "/x")
    assert not merge.has_lower(at(*roots), (0, 1, 2), "/y")
    assert not merge.has_lower(at(*roots), (0, 1, 2), "/nowhere")


def test_a_255_byte_name_resolves_although_no_fallback_whiteout_can_name_it(
        tmp_path: Path, at: Opener) -> None:
    up, low = layers(tmp_path, 2)
    name = "n" * 255
    Path(low, name).write_text("long")
    found = merge.resolve(at(up, low), (0, 1), "/" + name)
    assert found is not None and found.layers == (1,)
