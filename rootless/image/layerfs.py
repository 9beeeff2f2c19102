"""The merged view of unpacked layers, read by the overlay's rules without mounting them.

The one statement of those rules for rl's own readers of layers (the vfs driver's copy, a volume's
first copy, COPY's look at the image), so that they all see what the kernel overlay shows of the
same layers (format of `fuse_overlay.upperfmt`, as the extractor writes it). A name of a merged
directory comes from the topmost layer that has it:

- a whiteout hides the name in the layers below: a 0/0 character device, or where mknod was
  refused an empty regular file `.wh.NAME`; beside a directory NAME, `.wh.NAME` replaces the lower
  layers' directories with this layer's own;
- a directory merges with the directories of its name below it, until one is opaque (an xattr of
  `upperfmt.OPAQUE_XATTRS_READ`, or fuse-overlayfs's regular file `.wh..wh..opq` in it) or a layer
  has a whiteout or a non-directory there; a layer's root is never opaque, as with the kernel;
- a non-directory hides the name in every layer below;
- other `.wh..wh.` names are aufs bookkeeping, never content.

Layer lists are lowest first, as in an image's manifest.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Sequence

from fuse_overlay import upperfmt
from rootless.values import valueclass

_MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup

# What one layer holds at a name, as `_below` takes it.
_DIR, _WHITEOUT, _OTHER = range(3)


@valueclass(frozen=False)
class Merging:
    """A directory of the merged view: the layers that have it, top first, while lower layers
    may still add theirs (until an opaque directory, a whiteout or a non-directory ends it)."""

    layers: list[int]
    open: bool


@valueclass
class Leaf:
    """A non-directory of the merged view: the one layer it comes from."""

    layer: int
    entry: os.DirEntry[str] | None = None
    """Its directory entry, for `MergedDir` (a lookup has its lstat instead)."""


@valueclass
class Hidden:
    """A name a whiteout hides."""


HIDDEN = Hidden()
Shown = Merging | Leaf | Hidden


def _below(prev: Shown | None, layer: int, kind: int, ends_merge: bool,
           entry: os.DirEntry[str] | None = None) -> Shown:
    """What a name shows once `layer`, below the layers that made `prev` (None: none had it), is
    consulted; `ends_merge`: this layer's directory hides the lower ones (`.wh.NAME`, opaque)."""
    if prev is None:
        if kind == _DIR:
            return Merging([layer], not ends_merge)
        return HIDDEN if kind == _WHITEOUT else Leaf(layer, entry)
    if isinstance(prev, Merging) and prev.open:
        if kind == _DIR:
            prev.layers.append(layer)
            prev.open = not ends_merge
        else:
            prev.open = False
    return prev


def _is_bookkeeping(name: str, regular_file: bool) -> bool:
    """True when a name that starts with `.wh.` is a marker, not content."""
    return name.startswith(upperfmt.AUFS_META_PREFIX) or (regular_file and upperfmt.whiteout_target(name) is not None)


def _maybe_device(entry: os.DirEntry[str]) -> bool:
    """False when the entry's type says it is no device, so that it needs no stat."""
    return not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)
                or entry.is_symlink())


class MergedDir:
    """One directory of the merged view, listed layer by layer from the top: `add` each layer's
    directory until it answers True. `names` then holds what each name shows."""

    def __init__(self) -> None:
        self.names: dict[str, Shown] = {}
        self.hidden = 0
        """Names a whiteout hides."""

    def add(self, layer: int, fd: int, *, may_be_opaque: bool) -> bool:
        """Merge in the directory `fd` of `layer`, below the ones added before. True when it hides
        the layers below (opaque); `may_be_opaque` is False where that cannot matter or must be
        ignored (the lowest layer that has it, a layer's root), which spares the xattr read."""
        marker = False
        whiteouts: set[str] = set()  # targets of `.wh.NAME` files
        entries: list[os.DirEntry[str]] = []
        with os.scandir(fd) as it:
            for e in it:
                if e.name.startswith(upperfmt.WHITEOUT_PREFIX):
                    regular = e.is_file(follow_symlinks=False)
                    if _is_bookkeeping(e.name, regular):
                        target = upperfmt.whiteout_target(e.name)
                        if target is not None:
                            whiteouts.add(target)
                        marker = marker or (e.name == upperfmt.OPAQUE_MARKER and regular)
                        continue
                entries.append(e)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                kind = _DIR
            elif _maybe_device(e) and upperfmt.is_whiteout(e.stat(follow_symlinks=False)):
                kind = _WHITEOUT
            else:
                kind = _OTHER
            self._see(e.name, layer, kind, e.name in whiteouts, e)
        if whiteouts:
            for target in whiteouts.difference(e.name for e in entries):
                self._see(target, layer, _WHITEOUT, False, None)
        return may_be_opaque and (marker or upperfmt.is_opaque(fd))

    def _see(self, name: str, layer: int, kind: int, ends_merge: bool, entry: os.DirEntry[str] | None) -> None:
        prev = self.names.get(name)
        now = _below(prev, layer, kind, ends_merge, entry)
        if prev is None:
            self.names[name] = now
            if now is HIDDEN:
                self.hidden += 1


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
    `runtime.paths.secure_join` does for a container's root; without it a symlink on the way is
    a non-directory, and one at the end is the entry."""
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
    root = Entry(tuple(reversed(layers)), os.lstat(layers[-1]))
    resolved: list[str] = []
    found = root
    links = 0
    while parts:
        name = parts.pop(0)
        if name == "..":  # walked again from the root: the parent's layers are not kept
            parts = resolved[:-1] + parts
            resolved, found = [], root
            continue
        child = _lookup(found.paths, name)
        if child is None:
            return None, resolved, [name, *parts]
        if follow_symlinks and stat.S_ISLNK(child.st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return None, resolved, [name, *parts]
            target = os.readlink(child.paths[0])
            if target.startswith("/"):
                resolved, found = [], root
            parts = _split(target) + parts
            continue
        if parts and not child.is_dir:
            return None, resolved, [name, *parts]
        resolved.append(name)
        found = child
    return found, resolved, []


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _lookup(parents: Sequence[str], name: str) -> Entry | None:
    """`name` in the merged directory made of the layer directories `parents` (top first)."""
    shown: Shown | None = None
    top: os.stat_result | None = None
    paths: list[str] = []
    for i, d in enumerate(parents):
        path = os.path.join(d, name)
        whiteout_file = _is_whiteout_file(d, name)
        st: os.stat_result | None
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or (name.startswith(upperfmt.WHITEOUT_PREFIX)
                          and _is_bookkeeping(name, stat.S_ISREG(st.st_mode))):
            if not whiteout_file:
                continue
            shown = _below(shown, i, _WHITEOUT, False)
        elif stat.S_ISDIR(st.st_mode):
            ends_merge = whiteout_file or (i < len(parents) - 1 and _is_opaque_dir(path))
            shown = _below(shown, i, _DIR, ends_merge)
            paths.append(path)
            if top is None:
                top = st
        else:
            shown = _below(shown, i, _WHITEOUT if upperfmt.is_whiteout(st) else _OTHER, False)
            if isinstance(shown, Leaf):
                return Entry((path,), st)
        if not (isinstance(shown, Merging) and shown.open):
            break
    if top is None or not isinstance(shown, Merging):
        return None
    return Entry(tuple(paths), top)


def _is_whiteout_file(d: str, name: str) -> bool:
    """True when the layer directory `d` holds `.wh.NAME`, the whiteout of NAME where mknod was refused."""
    marker = upperfmt.WHITEOUT_PREFIX + name
    if upperfmt.whiteout_target(marker) is None:
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(d, marker)).st_mode)
    except OSError as e:
        # A name too long for the prefix cannot have one.
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            return False
        raise


def _is_opaque_dir(path: str) -> bool:
    if upperfmt.is_opaque(path):
        return True
    try:
        return stat.S_ISREG(os.lstat(os.path.join(path, upperfmt.OPAQUE_MARKER)).st_mode)
    except FileNotFoundError:
        return False
