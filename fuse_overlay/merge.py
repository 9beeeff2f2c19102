"""Name resolution and listing through the layers, by the overlay rules.

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
from dataclasses import dataclass

from fuse_overlay import beneath, upperfmt


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


def resolve(roots: Sequence[int], parent_layers: tuple[int, ...], path: str) -> Found | None:
    """The entry at `path` (whose parent directory is merged from `parent_layers`), or None when
    no layer has it or a whiteout hides it."""
    parent, _, name = path.rpartition("/")
    if name.startswith(upperfmt.WHITEOUT_PREFIX):
        # Whiteout files and opaque markers are bookkeeping, never visible entries.
        return None
    top: os.stat_result | None = None
    layers: list[int] = []
    for layer in parent_layers:
        try:
            dir_fd = (beneath.open_in(roots[layer], parent, beneath.DIR_PATH) if parent
                      else roots[layer])
        except OSError as e:
            if e.errno in _MISSING:
                continue
            raise
        try:
            st = stat_in(dir_fd, name)
            if st is None:
                if has_fallback_whiteout(dir_fd, name):
                    break
                continue
            if upperfmt.is_whiteout(st):
                break
            if not stat.S_ISDIR(st.st_mode):
                if top is None:
                    return Found((layer,), st)
                break
            if top is None:
                top = st
            layers.append(layer)
            if len(parent_layers) > 1 and _child_is_opaque(dir_fd, name):
                break
        finally:
            if dir_fd != roots[layer]:
                os.close(dir_fd)
    if top is None:
        return None
    return Found(tuple(layers), top)


def _child_is_opaque(dir_fd: int, name: str) -> bool:
    fd = os.open(name, beneath.DIR_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        return dir_is_opaque(fd)
    finally:
        os.close(fd)


def list_names(roots: Sequence[int], dir_layers: tuple[int, ...], path: str) -> list[str]:
    """The visible names of a merged directory, upper layer's first, each once."""
    seen: set[str] = set()
    hidden: set[str] = set()
    names: list[str] = []
    for layer in dir_layers:
        hidden_here: list[str] = []
        with beneath.opened(roots[layer], path, os.O_RDONLY | os.O_DIRECTORY) as fd, \
                os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(upperfmt.WHITEOUT_PREFIX):
                    target = upperfmt.whiteout_target(name)
                    if target is not None:
                        hidden_here.append(target)
                    continue
                if name in seen or name in hidden:
                    continue
                if _maybe_device(entry) and upperfmt.is_whiteout(entry.stat(follow_symlinks=False)):
                    hidden_here.append(name)
                    continue
                seen.add(name)
                names.append(name)
        # A whiteout hides the layers below it, never an entry of its own layer.
        hidden.update(hidden_here)
    return names


def _maybe_device(entry: os.DirEntry[str]) -> bool:
    """False when the directory entry's type says it is not a device, which needs no stat."""
    return not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)
                or entry.is_symlink())


def has_lower(roots: Sequence[int], parent_layers: tuple[int, ...], path: str) -> bool:
    """True when a lower layer shows an entry at `path`: removing or renaming it away then needs a
    whiteout in the upper layer."""
    lowers = tuple(layer for layer in parent_layers if layer > 0)
    return bool(lowers) and resolve(roots, lowers, path) is not None
