"""Resolving a container path inside its root file system, the way the kernel would after chroot."""
from __future__ import annotations

import os
import stat

from rootless.errors import RlError

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe with every symlink resolved as if root were '/': never a path outside root.

    Components that do not exist yet are kept as they are (the caller creates them).
    """
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, p)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise RlError(f"too many levels of symbolic links in {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        resolved.append(p)
    return os.path.join(root, *resolved)


def make_target(root: str, target: str, is_dir: bool, created: list[str] | None = None) -> str:
    """Create a mount point for `target` inside root (parents as directories) and return its path.
    A mount point that had to be made is appended to `created`, relative to root (not its parents:
    the container may put files of its own in them)."""
    path = secure_join(root, target)
    parent = os.path.dirname(path)
    rel = os.path.relpath(parent, root)
    cur = root
    for comp in [] if rel == "." else rel.split("/"):
        cur = os.path.join(cur, comp)
        if not os.path.lexists(cur):
            os.mkdir(cur, 0o755)
        elif not os.path.isdir(cur) or os.path.islink(cur):
            raise RlError(f"cannot mount on {target}: {os.path.relpath(cur, root)} is not a directory")
    if not os.path.lexists(path):
        if is_dir:
            os.mkdir(path, 0o755)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        if created is not None:
            created.append(os.path.relpath(path, root))
    return path
