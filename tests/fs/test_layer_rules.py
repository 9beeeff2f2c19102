"""One set of overlay rules: the same layer stacks read by every reader of layers rl has give the
same tree. The readers are the FUSE overlay (fuse_overlay.merge), the vfs driver's copy
(rootless.runtime.vfs, through layerfs.MergedDir), the image lookup of COPY and of volumes
(rootless.image.layerfs.resolve), and as references the kernel overlay (for stacks in the kernel's
format: 0/0 character devices and the opaque xattr) and fuse-overlayfs (for stacks in its format:
`.wh.NAME` files and `.wh..wh..opq` markers, which rl's extractor writes where mknod is refused)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rootless.image import layerfs
from rootless.runtime.vfs import merge_layers
from tests.fs.harness import (
    WHITEOUT,
    Dir,
    Fifo,
    File,
    Mnt,
    Node,
    Symlink,
    Tree,
    Worker,
    mount,
    node,
    prepare,
    snapshot,
    umount,
)

# Each stack lists its layers topmost first; `kernel` says whether it is in the kernel's format.
STACKS: dict[str, tuple[bool, list[Tree]]] = {
    "opaque xattr on a layer root": (True, [
        {"": Dir(opaque=True), "b": File(b"top")}, {"a": File(b"low"), "d/x": File(b"x")}]),
    "opaque marker file on a layer root": (False, [
        {".wh..wh..opq": File(), "b": File(b"top")}, {"a": File(b"low")}]),
    "whiteout files of every type": (False, [
        {".wh.a": Dir(), ".wh.b": Symlink("x"), ".wh.c": Fifo(), ".wh.d": File()},
        {"a": File(b"a"), "b": File(b"b"), "c/x": File(b"c"), "d": File(b"d"), "e": File(b"e")}]),
    "whiteout file beside a directory of its name": (False, [
        {".wh.d": File(), "d/new": File(b"new")}, {"d/old": File(b"old")}]),
    "whiteout device over a directory, directory over a file": (True, [
        {"d": WHITEOUT, "f/x": File(b"x")}, {"d/y": File(b"y"), "f": File(b"f")}]),
    "opaque directory in the middle": (True, [
        {"d/top": File(b"t")}, {"d": Dir(opaque=True), "d/mid": File(b"m")}, {"d/low": File(b"l")}]),
    "opaque marker file in the middle": (False, [
        {"d/top": File(b"t")}, {"d/.wh..wh..opq": File(), "d/mid": File(b"m")}, {"d/low": File(b"l")}]),
    "a file in the middle ends the merge": (True, [
        {"d/top": File(b"t")}, {"d": File(b"mid")}, {"d/low": File(b"l")}]),
    "a symlink over a directory": (True, [
        {"d": Symlink("e")}, {"d/x": File(b"x"), "e/y": File(b"y")}]),
    "aufs bookkeeping": (False, [
        {".wh..wh.plnk/x": File(b"p"), ".wh..wh.aufs": File()}, {"a": File(b"a")}]),
    "modes and owners from the topmost directory": (True, [
        {"d": Dir(mode=0o700, uid=1, gid=2)}, {"d": Dir(mode=0o755), "d/x": File(b"x", mode=0o600, uid=3)}]),
}


# Where fuse-overlayfs, the reference for its own format, shows something else than rl's rules
# say: why rl's rules hold, and the paths they show.
REFERENCE_DIFFERS: dict[str, tuple[str, set[str]]] = {
    "opaque marker file on a layer root": (
        "fuse-overlayfs 1.10 takes the marker on a layer's root as opaque and hides the lower "
        "layers' files; the kernel ignores the opaque xattr on a layer's root, and rl follows the "
        "kernel so that one image shows the same files on every driver", {"a", "b"}),
    "whiteout file beside a directory of its name": (
        "fuse-overlayfs 1.10 hides the directory altogether; the OCI layer format says a whiteout "
        "hides only the lower layers' entries, so the directory shows with this layer's files "
        "alone", {"d", "d/new"}),
}


def _without_nlink(tree: dict[str, Node]) -> dict[str, Node]:
    # Link counts say how a reader stores files (vfs copies, overlays pass through), not what
    # the image holds.
    return {rel: Node(n.kind, n.mode, n.uid, n.gid, n.size, n.content, 0) for rel, n in tree.items()}


def mounted_tree(m: Mnt) -> dict[str, Node]:
    mount(m)
    try:
        return _without_nlink(snapshot(m.merged))
    finally:
        umount(m)


def vfs_tree(lowers: tuple[str, ...], dest: str) -> dict[str, Node]:
    os.mkdir(dest)
    merge_layers(list(reversed(lowers)), dest)
    return _without_nlink(snapshot(dest))


def layerfs_tree(lowers: tuple[str, ...]) -> dict[str, Node]:
    """Every path any layer has, looked up one by one with layerfs.resolve."""
    lowest_first = list(reversed(lowers))
    candidates = {os.path.relpath(os.path.join(d, n), layer)
                  for layer in lowers for d, dirs, files in os.walk(layer) for n in dirs + files}
    out: dict[str, Node] = {}
    for rel in sorted(candidates):
        found = layerfs.resolve(lowest_first, "/" + rel)
        if found is not None:
            out[rel] = node(found.paths[0], with_nlink=False)
    return out


@pytest.mark.parametrize("case", list(STACKS))
def test_every_reader_shows_the_same_tree(case: str, worker: Worker, tmp_path: Path) -> None:
    kernel_format, layers = STACKS[case]
    root = str(tmp_path / "ws" / "layers")
    worker.call(prepare, root, layers, None)
    lowers = tuple(os.path.join(root, f"lower{i}") for i in range(len(layers)))

    def mnt(impl: str) -> Mnt:
        base = tmp_path / "ws" / impl
        for sub in ("upper", "work", "merged"):
            (base / sub).mkdir(parents=True)
        return Mnt(impl, lowers, str(base / "upper"), str(base / "work"), str(base / "merged"))

    trees = {"fuse overlay": worker.call(mounted_tree, mnt("ours")),
             "vfs": worker.call(vfs_tree, lowers, str(tmp_path / "ws" / "vfs")),
             "layerfs": worker.call(layerfs_tree, lowers)}
    for reader, tree in trees.items():
        assert_same(tree, trees["fuse overlay"], f"{reader} differs from the fuse overlay")
    reference = "kernel" if kernel_format else "fuse-overlayfs"
    if reference == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
        return
    theirs = worker.call(mounted_tree, mnt(reference))
    if case in REFERENCE_DIFFERS:
        why, paths = REFERENCE_DIFFERS[case]
        assert set(trees["fuse overlay"]) == paths
        assert theirs != trees["fuse overlay"], f"{reference} now agrees: {why}"
    else:
        assert_same(trees["fuse overlay"], theirs, f"rl differs from {reference}")


def assert_same(tree: dict[str, Node], expected: dict[str, Node], what: str) -> None:
    differ = sorted(rel for rel in tree.keys() | expected.keys() if tree.get(rel) != expected.get(rel))
    assert not differ, f"{what} at {differ}: {[tree.get(r) for r in differ]} against {[expected.get(r) for r in differ]}"
