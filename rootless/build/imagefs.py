"""Reading an image's files straight from its unpacked layers (merged as `rootless.image.layerfs`
says), without a container: what COPY needs to know (does the destination's parent exist? who is
`--chown=app`?).

Run these where the layers' files are readable: `store.in_userns`.
"""
from __future__ import annotations

import os
import posixpath
import stat

from fuse_overlay import upperfmt
from rootless.image import layerfs


def existing_dirs(layers: list[str], paths: list[str], owners: str = "real") -> dict[str, tuple[int, int, int, int]]:
    """Which of `paths` are directories in the image, with their (uid, gid, permission bits,
    mtime): a layer that adds files under them must carry them as they are, or unpacking it
    would make them anew, root's and 0755, over the image's. A file there is an error."""
    dirs, files = dirs_and_files(layers, paths, owners)
    if files:
        raise NotADirectoryError(f"{files[0]} is not a directory in the image")
    return dirs


def dirs_and_files(layers: list[str], paths: list[str],
                   owners: str = "real") -> tuple[dict[str, tuple[int, int, int, int]], list[str]]:
    """`existing_dirs`, and the paths where the image has a non-directory (a symlink included)."""
    dirs = {}
    files = []
    for p in paths:
        found = layerfs.resolve(layers, p)
        if found is None:
            continue
        if not found.is_dir:
            files.append(p)
            continue
        dirs[p] = (*owner(found.paths[0], found.st, owners), int(found.st.st_mtime))
    return dirs, files


def copy_target(layers: list[str], path: str) -> tuple[str, bool]:
    """Where COPY puts what it copies to `path`, and whether the image has a directory there (a
    single file then goes into it). As with Docker, symlinks on the way resolve inside the image,
    and so does one at the end that leads to a directory; one that leads elsewhere is replaced."""
    at = posixpath.join(layerfs.real_path(layers, posixpath.dirname(path)), posixpath.basename(path))
    followed = layerfs.real_path(layers, at)
    found = layerfs.resolve(layers, followed)
    if found is not None and found.is_dir:
        return followed, True
    return at, False


def owner(path: str, st: os.stat_result, owners: str) -> tuple[int, int, int]:
    """(uid, gid, permission bits) a file of an image has: its own, or in single-id mode
    (owners="xattr") the ones kept in user.containers.override_stat, the user's files being root's."""
    perms = stat.S_IMODE(st.st_mode)
    if owners != "xattr":
        return st.st_uid, st.st_gid, perms
    try:
        o = upperfmt.decode_override(os.getxattr(path, upperfmt.OVERRIDE_XATTR, follow_symlinks=False))
    except (OSError, ValueError):
        return (0 if st.st_uid == os.getuid() else st.st_uid), (0 if st.st_gid == os.getgid() else st.st_gid), perms
    return o.uid, o.gid, o.perms


def read_text(layers: list[str], path: str) -> str | None:
    """A small file of the image (e.g. /etc/passwd), None when it has none."""
    found = layerfs.resolve(layers, path)
    if found is None or not stat.S_ISREG(found.st.st_mode):
        return None
    with open(found.paths[0], encoding="utf-8", errors="replace") as f:
        return f.read()
