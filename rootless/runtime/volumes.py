"""A volume on the way into a container: made on first use and filled from the image, as Docker does.

The first mount of an empty volume (without nocopy) copies what the image has at the mount point:
the merged view of the layers at that path, found the way the kernel overlay would find it
(whiteouts, opaque directories, symlinks resolved inside the image), then copied with `vfs`'s
merge, which keeps owners, modes, times, xattrs and hard links. The image's names are the
container's: each directory is opened below its layer's root without following a symlink, and the
copy works from those descriptors.

Besides the volumes of -v and --mount, an image's VOLUME paths each get a new anonymous volume on
`run` and `create`, as Docker gives them, unless the user mounts something there.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from fuse_overlay import beneath
from rootless.errors import StoreError, VolumeError
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
        try:
            store.in_userns(_populate, [str(p) for p in layers], spec.target,
                            str(volstore.data_path(store, rec.name)), str(staged))
        except BaseException:
            if anonymous:  # nobody can name it again
                volstore.remove(store, rec.name)
            raise
        volstore.mark_populated(store, rec.name)
    return Mount("bind", str(volstore.data_path(store, rec.name)), spec.target, spec.readonly,
                 volume=rec.name, anonymous=anonymous)


def remove_anonymous(store: Store, mounts: Sequence[Mount]) -> None:
    """Remove the anonymous volumes of a container that is removed or was not made after all,
    as Docker does; one another container uses, or already gone, stays as it is."""
    for m in mounts:
        if m.anonymous and m.volume:
            try:
                volstore.remove(store, m.volume)
            except VolumeError:
                pass


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

    fds: list[int] = []
    try:
        for d in dirs:
            fds.append(_open_in_layer(layers, d))
        os.mkdir(staged, 0o700)
        merge_layers(fds, staged)
    finally:
        for fd in fds:
            os.close(fd)
    try:
        os.rename(staged, data)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _open_in_layer(layers: Sequence[str], path: str) -> int:
    """The directory `path` of one of `layers`, opened below that layer's root: a name that is no
    longer the directory `image_dirs` found (a symlink, a rename) is refused, never followed."""
    layer = next(lay for lay in layers if path == lay or path.startswith(lay + "/"))  # the root too: /data -> /
    root = os.open(layer, beneath.DIR_PATH)
    try:
        return beneath.open_in(root, path[len(layer):], os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise StoreError(f"cannot copy the image's {path[len(layer):]} into a volume: {e.strerror}") from e
    finally:
        os.close(root)


def image_dirs(layers: Sequence[str], path: str) -> list[str]:
    """The directories of the layers (lowest first) whose merge is the image's directory `path`;
    empty when the image has nothing there. Symlinks resolve inside the image, as
    `paths.secure_join` does for a container's root."""
    found = layerfs.resolve(layers, path, follow_symlinks=True)
    if found is None:
        return []
    if not found.is_dir:
        raise VolumeError(f"cannot mount a volume on {path}: the image has a file there, not a directory")
    return list(reversed(found.paths))
