"""The changes of a vfs container, as an overlay upper directory, for `rl commit`.

The vfs driver keeps no upper directory: the container's tree is a full copy of its image. The
changes are found by comparing it with a fresh copy of the image (`vfs.merge_layers`): an entry
is changed when its type, mode, owner, size, mtime, symlink target or owner override differs
(every write sets the mtime, so contents are not compared); a name gone from the container
becomes a whiteout. The upper directory links the changed files (same inode: owner, mode,
times and xattrs come along) and copies the attributes of the directories above them, so
`tarwrite.write_tar(..., overlay_upper=True)` turns it into the layer as for the overlay driver.

Runs as root of the store's user namespace. Every container name is opened relative to its
directory with O_NOFOLLOW: a running container cannot redirect the walk with symlinks.
"""
from __future__ import annotations

import os
import stat

from fuse_overlay import upperfmt

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def write_upper(image_tree: str, container_tree: str, upper: str) -> None:
    """Fill the empty directory `upper` with what differs from image_tree in container_tree."""
    old = os.open(image_tree, _DIR_FLAGS)
    new = os.open(container_tree, _DIR_FLAGS)
    up = os.open(upper, _DIR_FLAGS)
    try:
        _diff_dir(old, new, up)
    finally:
        for fd in (old, new, up):
            os.close(fd)


def _entries(dfd: int) -> dict[str, os.stat_result]:
    with os.scandir(dfd) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


def _override(dfd: int, name: str, st: os.stat_result) -> bytes | None:
    if stat.S_ISLNK(st.st_mode):
        return None
    try:
        # getxattr has no dir_fd: the fd's /proc link names the directory, the name is not followed.
        return os.getxattr(f"/proc/self/fd/{dfd}/{name}", upperfmt.OVERRIDE_XATTR, follow_symlinks=False)
    except OSError:
        return None


def _same(old_dfd: int, new_dfd: int, name: str, a: os.stat_result, b: os.stat_result) -> bool:
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if _override(old_dfd, name, a) != _override(new_dfd, name, b):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True  # its entries are compared one by one
    if (a.st_size, a.st_mtime_ns) != (b.st_size, b.st_mtime_ns):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(name, dir_fd=old_dfd) == os.readlink(name, dir_fd=new_dfd)
    return True


def _diff_dir(old: int, new: int, up: int) -> bool:
    """Write the differences of one directory into `up`; whether there were any."""
    old_entries = _entries(old) if old >= 0 else {}
    new_entries = _entries(new)
    changed = False
    for name in sorted(old_entries.keys() - new_entries.keys()):
        upperfmt.make_whiteout(up, name)
        changed = True
    for name, st in sorted(new_entries.items()):
        before = old_entries.get(name)
        if stat.S_ISDIR(st.st_mode):
            # A directory that was something else, or new, is copied whole (old_sub = -1).
            was_dir = before is not None and stat.S_ISDIR(before.st_mode)
            if _sub_dir(old if was_dir else -1, new, up, name, st,
                        same=was_dir and _same(old, new, name, before, st)):  # type: ignore[arg-type]
                changed = True
            continue
        if before is not None and _same(old, new, name, before, st):
            continue
        os.link(name, name, src_dir_fd=new, dst_dir_fd=up, follow_symlinks=False)
        changed = True
    return changed


def _sub_dir(old: int, new: int, up: int, name: str, st: os.stat_result, same: bool) -> bool:
    """Diff the directory `name`; its entry goes into `up` when it or anything below changed."""
    os.mkdir(name, 0o700, dir_fd=up)
    old_sub = os.open(name, _DIR_FLAGS, dir_fd=old) if old >= 0 else -1
    new_sub = os.open(name, _DIR_FLAGS, dir_fd=new)
    up_sub = os.open(name, _DIR_FLAGS, dir_fd=up)
    try:
        below = _diff_dir(old_sub, new_sub, up_sub)
        if same and not below:
            os.rmdir(name, dir_fd=up)
            return False
        _copy_dir_attrs(new_sub, up_sub, st)
        return True
    finally:
        for fd in (old_sub, new_sub, up_sub):
            if fd >= 0:
                os.close(fd)


def _copy_dir_attrs(src: int, dst: int, st: os.stat_result) -> None:
    for attr in os.listxattr(src):
        if attr.startswith(upperfmt.PRIVATE_XATTR_PREFIXES) and attr != upperfmt.OVERRIDE_XATTR:
            continue
        try:
            os.setxattr(dst, attr, os.getxattr(src, attr))
        except OSError:
            pass  # an xattr this user may not set here (security.*): not part of the change
    try:
        os.chown(dst, st.st_uid, st.st_gid)
    except OSError:
        pass  # single-id mode: the owner is in the override xattr copied above
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
