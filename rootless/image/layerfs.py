"""The merged view of unpacked layers, read by the overlay's rules (`fuse_overlay.merge`, their
one statement) without mounting them: what COPY and a volume's first copy look up in an image,
so that they see what the kernel overlay and the FUSE overlay show of the same layers. The vfs
driver's copy lists directories with `fuse_overlay.merge.Listing`, under the same rules.

Layer lists are lowest first, as in an image's manifest. Every layer is read through a
descriptor of its root, below which names resolve (`fuse_overlay.beneath`).
"""
from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence

import native
from fuse_overlay import beneath, merge
from rootless.values import valueclass


@valueclass
class Entry:
    """A name of the merged view, found by `resolve`."""

    paths: tuple[str, ...]
    """Real paths, top first: of the directories that merge into it, or of the one non-directory."""
    st: os.stat_result
    """lstat of the topmost."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def resolve(layers: Sequence[str], path: str, *, follow_symlinks: bool = False) -> Entry | None:
    """The entry at `path` (absolute, inside the image) of the merged view of `layers`, None when
    the image has none. `..` and, with `follow_symlinks`, symlinks resolve inside the image as
    the kernel resolves them in a container's root (at most `native.MAXSYMLINKS` of them);
    without it a symlink on the way is a non-directory, and one at the end is the entry."""
    return _walk(layers, path, follow_symlinks)[0]


def real_path(layers: Sequence[str], path: str) -> str:
    """`path` (absolute) with `..` and the symlinks of the part the image has resolved inside the
    image, as a container would reach it; the part from the first name the image lacks, or the
    first non-directory on the way, is kept as it is."""
    _, resolved, rest = _walk(layers, path, True)
    return posixpath.normpath("/" + "/".join(resolved + rest))


def _walk(layers: Sequence[str], path: str, follow_symlinks: bool) -> tuple[Entry | None, list[str], list[str]]:
    """`resolve`'s lookup: the entry, the names of the path walked to it and, when there is no
    such entry, the names from where the walk stopped."""
    parts = _split(path)
    if not layers:
        return None, [], parts
    top_first = [os.fspath(p) for p in reversed(layers)]
    roots: list[int] = []
    try:
        roots += (beneath.open_root(p) for p in top_first)
        # A layer's root is never opaque: every layer's root merges.
        root = merge.Found(tuple(range(len(roots))), os.fstat(roots[0]))
        resolved: list[str] = []
        found = root
        links = 0
        while parts:
            name = parts.pop(0)
            if name == "..":  # walked again from the root: the parent's layers are not kept
                parts = resolved[:-1] + parts
                resolved, found = [], root
                continue
            child = merge.resolve(roots, found.layers, "/" + "/".join([*resolved, name]))
            if child is None:
                return None, resolved, [name, *parts]
            if follow_symlinks and stat.S_ISLNK(child.st.st_mode):
                links += 1
                if links > native.MAXSYMLINKS:
                    return None, resolved, [name, *parts]
                with beneath.opened(roots[child.layers[0]], "/" + "/".join(resolved), beneath.DIR_PATH) as fd:
                    target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    resolved, found = [], root
                parts = _split(target) + parts
                continue
            if parts and not child.is_dir:
                return None, resolved, [name, *parts]
            resolved.append(name)
            found = child
        rel = "/".join(resolved)
        paths = tuple(os.path.join(top_first[i], rel) if rel else top_first[i] for i in found.layers)
        return Entry(paths, found.st), resolved, []
    finally:
        for fd in roots:
            os.close(fd)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]
