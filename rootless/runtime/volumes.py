"""A volume on the way into a container: made on first use and filled from the image, as Docker does.

The first mount of an empty volume (without nocopy) copies what the image has at the mount point:
the merged view of the layers at that path, found the way the kernel overlay would find it
(whiteouts, opaque directories, symlinks resolved inside the image), then copied with `vfs`'s
merge, which keeps owners, modes, times, xattrs and hard links.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from fuse_overlay import upperfmt
from rootless.runtime.options import MountSpec
from rootless.runtime.spec import Mount
from rootless.store import volumes as volstore
from rootless.store.store import Store

_MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup


def mount_volume(store: Store, spec: MountSpec, layers: Sequence[Path]) -> Mount:
    """The bind mount of the volume `spec` names (a new random one for `-v /path`), made and
    populated first if need be."""
    anonymous = spec.source is None
    rec = volstore.create(store, spec.source)
    nocopy = "nocopy" in spec.options
    if not nocopy and not volstore.is_populated(store, rec.name):
        staged = store.scratch.new_path("volume-copy")
        store.in_userns(_populate, [str(p) for p in layers], spec.target,
                        str(volstore.data_path(store, rec.name)), str(staged))
        volstore.mark_populated(store, rec.name)
    return Mount("bind", str(volstore.data_path(store, rec.name)), spec.target, spec.readonly,
                 volume=rec.name, anonymous=anonymous)


def _populate(layers: list[str], path: str, data: str, staged: str) -> None:
    """Copy the image's directory `path` into the volume directory `data` if that is empty.

    Runs where the layers' owners can be kept (the user namespace). The copy is made beside and
    renamed over the empty `data`, so a crash never leaves a half-copied volume; a volume someone
    filled meanwhile keeps its content (the rename fails on a non-empty directory)."""
    with os.scandir(data) as it:
        if next(it, None) is not None:
            return
    dirs = image_dirs(layers, path)
    if not dirs:
        return
    from rootless.runtime.vfs import merge_layers

    os.mkdir(staged, 0o700)
    merge_layers(dirs, staged)
    try:
        os.rename(staged, data)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def image_dirs(layers: Sequence[str], path: str) -> list[str]:
    """The directories of the layers (lowest first) whose merge is the image's directory `path`;
    empty when the image has no directory there. Symlinks resolve inside the image, as
    `paths.secure_join` does for a container's root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    tops_first = list(reversed(layers))
    candidates = tops_first
    while parts:
        name = parts.pop(0)
        if name == "..":  # walked again from the root: the parent's layers are not kept
            parts = resolved[:-1] + parts
            resolved, candidates = [], tops_first
            continue
        found = _lookup(candidates, name)
        if isinstance(found, str):
            links += 1
            if links > _MAX_LINKS:
                return []
            if found.startswith("/"):
                resolved, candidates = [], tops_first
            parts = [p for p in found.split("/") if p not in ("", ".")] + parts
            continue
        if not found:
            return []
        resolved.append(name)
        candidates = found
    return list(reversed(candidates))


def _lookup(candidates: list[str], name: str) -> list[str] | str | None:
    """`name` in the merged directory made of `candidates` (top first): the layer directories
    that make it (top first) if it is a directory, its target if it is a symlink, else None."""
    dirs: list[str] = []
    for d in candidates:
        p = os.path.join(d, name)
        # `.wh.NAME` hides NAME of the lower layers (and, beside a directory, replaces them).
        whited_out = os.path.lexists(os.path.join(d, upperfmt.WHITEOUT_PREFIX + name))
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            if whited_out:
                break
            continue
        if stat.S_ISDIR(st.st_mode):
            dirs.append(p)
            if whited_out or upperfmt.is_opaque(p) or os.path.lexists(os.path.join(p, upperfmt.OPAQUE_MARKER)):
                break
            continue
        if dirs or upperfmt.is_whiteout(st):
            break  # a non-directory below a directory ends its merge; a whiteout hides the name
        return os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
    return dirs or None
