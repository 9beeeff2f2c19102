"""Reading an image's files straight from its unpacked layers (overlay format), without a
container: what COPY needs to know (does the destination's parent exist? who is `--chown=app`?).

Run these where the layers' files are readable: `store.in_userns`.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from fuse_overlay import upperfmt


def _in_layer(layer: str, parts: Sequence[str]) -> tuple[str, os.stat_result | None, bool]:
    """How one layer answers for a path: ("found", st), ("hidden", None) when the layer whites it
    out or hides everything below (opaque dir, a file over a parent), or ("absent", None); the
    bool says whether lower layers can still answer."""
    cur = layer
    for i, comp in enumerate(parts):
        wh = os.path.join(cur, upperfmt.WHITEOUT_PREFIX + comp)
        nxt = os.path.join(cur, comp)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            return ("hidden", None, False) if os.path.lexists(wh) else ("absent", None, True)
        if upperfmt.is_whiteout(st):
            return "hidden", None, False
        if i == len(parts) - 1:
            return "found", st, False
        if not stat.S_ISDIR(st.st_mode):
            return "hidden", None, False
        if upperfmt.is_opaque(nxt) or os.path.lexists(os.path.join(nxt, upperfmt.OPAQUE_MARKER)):
            # What lower layers have under it is gone; this layer may still have the rest.
            found = _in_layer(nxt, parts[i + 1:])
            return found[0], found[1], False
        cur = nxt
    return "absent", None, True


def _lookup(layers: Sequence[str], path: str) -> tuple[str, os.stat_result] | None:
    """(layer, stat) of `path` (absolute, inside the image) in the merged view; top layer last."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts:
        return (layers[-1], os.lstat(layers[-1])) if layers else None
    for layer in reversed(layers):
        kind, st, go_on = _in_layer(layer, parts)
        if kind == "found" and st is not None:
            return layer, st
        if not go_on:
            return None
    return None


def existing_dirs(layers: list[str], paths: list[str], owners: str = "real") -> dict[str, tuple[int, int, int, int]]:
    """Which of `paths` are directories in the image, with their (uid, gid, permission bits,
    mtime): a layer that adds files under them must carry them as they are, or unpacking it
    would make them anew, root's and 0755, over the image's. A file there is an error."""
    out = {}
    for p in paths:
        found = _lookup(layers, p)
        if found is None:
            continue
        layer, st = found
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"{p} is not a directory in the image")
        out[p] = (*owner(os.path.join(layer, p.lstrip("/")), st, owners), int(st.st_mtime))
    return out


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
    found = _lookup(layers, path)
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return None
    with open(os.path.join(found[0], path.lstrip("/")), encoding="utf-8", errors="replace") as f:
        return f.read()
