"""A volume on the way into a container: made on first use and filled from the image, as Docker does.

The first mount of an empty volume (without nocopy) copies what the image has at the mount point:
the merged view of the layers at that path, found the way the kernel overlay would find it
(whiteouts, opaque directories, symlinks resolved inside the image), then copied with `vfs`'s
merge, which keeps owners, modes, times, xattrs and hard links.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from rootless.image import layerfs
from rootless.runtime.options import MountSpec
from rootless.runtime.spec import Mount
from rootless.store import volumes as volstore
from rootless.store.store import Store


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
    found = layerfs.resolve(layers, path, follow_symlinks=True)
    return list(reversed(found.paths)) if found is not None and found.is_dir else []
