"""The overlay's rules: what a name of the merged view shows, given what each layer holds there.

The one statement of them in rl. The FUSE overlay resolves and lists through them
(`resolve`, `list_names`), and so do rl's readers of unpacked layers that mount nothing
(`rootless.image.layerfs`: the vfs driver's copy, a volume's first copy, COPY's look at the
image), so that every driver shows the same tree as the kernel overlay does (format of
`fuse_overlay.upperfmt`, as the extractor writes it). A name of a merged directory comes from the
topmost layer that has it:

- a whiteout hides the name in the layers below: a 0/0 character device, or where mknod was
  refused `.wh.NAME` beside it (of any type, as the OCI layer format says of `.wh.` entries);
  beside a directory NAME, `.wh.NAME` replaces the lower layers' directories with this layer's;
- a directory merges with the directories of its name below it, until one is opaque (an xattr of
  `upperfmt.OPAQUE_XATTRS_READ`, or fuse-overlayfs's marker `.wh..wh..opq` in it) or a layer has
  a whiteout or a non-directory there; a layer's root is never opaque, as with the kernel;
- a non-directory hides the name in every layer below;
- every `.wh.` name is bookkeeping (whiteouts, opaque markers, aufs's `.wh..wh.` names), never
  content.

Layer 0 is the upper directory (absent in a read-only overlay), layers 1.. are the lower
directories, topmost first. Paths inside the overlay are `""` for the root and `"/a/b"` below it,
and `roots[layer]` is the descriptor of a layer's directory, below which `fuse_overlay.beneath`
resolves them.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from fuse_overlay import beneath, upperfmt

# What one layer's directory holds at a name.
ABSENT, DIR, WHITEOUT, OTHER = range(4)


def is_bookkeeping(name: str) -> bool:
    """True for the names that are markers of the format, never entries of the merged view."""
    return name.startswith(upperfmt.WHITEOUT_PREFIX)


@dataclass
class Merging:
    """A directory of the merged view: the layers that have it, top first, while lower layers
    may still add theirs (until an opaque directory, a whiteout or a non-directory ends it)."""

    layers: list[int]
    open: bool


@dataclass(frozen=True)
class Leaf:
    """A non-directory of the merged view: the one layer it comes from."""

    layer: int
    entry: os.DirEntry[str] | None = None
    """Its directory entry, for `Listing` (a lookup has its lstat instead)."""


@dataclass(frozen=True)
class Hidden:
    """A name a whiteout hides."""


HIDDEN = Hidden()
Shown = Merging | Leaf | Hidden


def below(prev: Shown | None, layer: int, kind: int, ends_merge: bool,
          entry: os.DirEntry[str] | None = None) -> Shown:
    """What a name shows once `layer` (holding a `kind` there), below the layers that made
    `prev` (None: none had it), is consulted; `ends_merge`: this layer's directory hides the
    lower ones (`.wh.NAME` beside it, opaque)."""
    if prev is None:
        if kind == DIR:
            return Merging([layer], not ends_merge)
        return HIDDEN if kind == WHITEOUT else Leaf(layer, entry)
    if isinstance(prev, Merging) and prev.open:
        if kind == DIR:
            prev.layers.append(layer)
            prev.open = not ends_merge
        else:
            prev.open = False
    return prev


@dataclass(frozen=True)
class Found:
    """What a name resolves to: its topmost layer, the lstat there, and for a directory every
    layer whose directory of that name is merged into it, topmost first."""

    layers: tuple[int, ...]
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


_MISSING = (errno.ENOENT, errno.ENOTDIR)


def stat_in(dir_fd: int, name: str) -> os.stat_result | None:
    """The lstat of `name` in directory `dir_fd`, None when there is none: a single name, so
    there is nothing to follow."""
    if name in ("", ".", "..") or "/" in name:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise


def has_fallback_whiteout(dir_fd: int, name: str) -> bool:
    """True when directory `dir_fd` holds `.wh.NAME`, the whiteout of NAME where mknod was
    refused."""
    try:
        return stat_in(dir_fd, upperfmt.WHITEOUT_PREFIX + name) is not None
    except OSError as e:
        # A name too long for the prefix cannot have a fallback whiteout.
        if e.errno == errno.ENAMETOOLONG:
            return False
        raise


def dir_is_opaque(dir_fd: int) -> bool:
    """True when a directory (`dir_fd`) hides the directories of the same name in the layers
    below it."""
    return (upperfmt.is_opaque(beneath.proc(dir_fd), follow_symlinks=True)
            or stat_in(dir_fd, upperfmt.OPAQUE_MARKER) is not None)


def look(dir_fd: int, name: str, *, may_be_opaque: bool) -> tuple[int, os.stat_result | None, bool]:
    """What one layer's directory `dir_fd` holds at `name`: its kind, its lstat and, for a
    directory, whether it hides the lower layers' ones. `may_be_opaque` is False where that
    cannot matter (the lowest layer that may have it), which spares reading the xattr."""
    st = stat_in(dir_fd, name)
    if st is None:
        return (WHITEOUT if has_fallback_whiteout(dir_fd, name) else ABSENT), None, False
    if not stat.S_ISDIR(st.st_mode):
        return (WHITEOUT if upperfmt.is_whiteout(st) else OTHER), st, False
    ends_merge = may_be_opaque and (has_fallback_whiteout(dir_fd, name) or _child_is_opaque(dir_fd, name))
    return DIR, st, ends_merge


def resolve(roots: Sequence[int], parent_layers: tuple[int, ...], path: str) -> Found | None:
    """The entry at `path` (whose parent directory is merged from `parent_layers`), or None when
    no layer has it or a whiteout hides it."""
    parent, _, name = path.rpartition("/")
    if is_bookkeeping(name):
        return None
    shown: Shown | None = None
    top: os.stat_result | None = None
    for i, layer in enumerate(parent_layers):
        try:
            dir_fd = (beneath.open_in(roots[layer], parent, beneath.DIR_PATH) if parent
                      else roots[layer])
        except OSError as e:
            if e.errno in _MISSING:
                continue
            raise
        try:
            kind, st, ends_merge = look(dir_fd, name, may_be_opaque=i < len(parent_layers) - 1)
        finally:
            if dir_fd != roots[layer]:
                os.close(dir_fd)
        if kind == ABSENT:
            continue
        shown = below(shown, layer, kind, ends_merge)
        if isinstance(shown, Leaf):
            assert st is not None
            return Found((layer,), st)
        if top is None:
            top = st
        if not (isinstance(shown, Merging) and shown.open):
            break
    if not isinstance(shown, Merging) or top is None:
        return None
    return Found(tuple(shown.layers), top)


def _child_is_opaque(dir_fd: int, name: str) -> bool:
    fd = os.open(name, beneath.DIR_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        return dir_is_opaque(fd)
    finally:
        os.close(fd)


@dataclass
class Listing:
    """One directory of the merged view, listed layer by layer from the top: `add` each layer's
    directory until it answers True. `names` then holds what each name shows."""

    names: dict[str, Shown] = field(default_factory=dict)
    hidden: int = 0
    """Names a whiteout hides."""

    def add(self, layer: int, fd: int, *, may_be_opaque: bool) -> bool:
        """Merge in the directory `fd` of `layer`, below the ones added before. True when it hides
        the layers below (opaque); `may_be_opaque` is False where that cannot matter or must be
        ignored (the lowest layer that has it, a layer's root), which spares the xattr read."""
        marker = False
        whiteouts: set[str] = set()  # targets of `.wh.NAME` entries
        entries: list[os.DirEntry[str]] = []
        with os.scandir(fd) as it:
            for e in it:
                if is_bookkeeping(e.name):
                    target = upperfmt.whiteout_target(e.name)
                    if target is not None:
                        whiteouts.add(target)
                    marker = marker or e.name == upperfmt.OPAQUE_MARKER
                    continue
                entries.append(e)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                kind = DIR
            elif _maybe_device(e) and upperfmt.is_whiteout(e.stat(follow_symlinks=False)):
                kind = WHITEOUT
            else:
                kind = OTHER
            self._see(e.name, layer, kind, e.name in whiteouts, e)
        if whiteouts:
            for target in whiteouts.difference(e.name for e in entries):
                self._see(target, layer, WHITEOUT, False, None)
        return may_be_opaque and (marker or upperfmt.is_opaque(fd))

    def _see(self, name: str, layer: int, kind: int, ends_merge: bool, entry: os.DirEntry[str] | None) -> None:
        prev = self.names.get(name)
        now = below(prev, layer, kind, ends_merge, entry)
        if prev is None:
            self.names[name] = now
            if now is HIDDEN:
                self.hidden += 1


def list_names(roots: Sequence[int], dir_layers: tuple[int, ...], path: str) -> list[str]:
    """The visible names of a merged directory, upper layer's first, each once."""
    listing = Listing()
    for layer in dir_layers:
        with beneath.opened(roots[layer], path, os.O_RDONLY | os.O_DIRECTORY) as fd:
            # `dir_layers` already ends where an opaque directory hides the rest.
            listing.add(layer, fd, may_be_opaque=False)
    return [name for name, shown in listing.names.items() if shown is not HIDDEN]


def _maybe_device(entry: os.DirEntry[str]) -> bool:
    """False when the directory entry's type says it is not a device, which needs no stat."""
    return not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)
                or entry.is_symlink())


def has_lower(roots: Sequence[int], parent_layers: tuple[int, ...], path: str) -> bool:
    """True when a lower layer shows an entry at `path`: removing or renaming it away then needs a
    whiteout in the upper layer."""
    lowers = tuple(layer for layer in parent_layers if layer > 0)
    return bool(lowers) and resolve(roots, lowers, path) is not None
