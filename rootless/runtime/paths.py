"""Resolving a container path inside its root file system, the way the kernel would after chroot."""
from __future__ import annotations

import os
import stat

import native
from rootless.errors import RlError


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
            if links > native.MAXSYMLINKS:
                raise RlError(f"too many levels of symbolic links in {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        resolved.append(p)
    return os.path.join(root, *resolved)

