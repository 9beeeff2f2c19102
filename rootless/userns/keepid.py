"""`--userns keep-id`: the invoking user keeps its own uid and gid inside the container, as podman does.

With a subordinate range of N ids, container ids 0..U-1 map to the first U subordinate ids, U to
the user and U+1..N to the rest of the range. Layers are unpacked under the default mapping
(root inside is the user), so a keep-id container sees them through copies whose owners are
shifted: `shift_uid`/`shift_gid` give, in the default mapping's terms, the owner a file must have
for keep-id to show the owner it had.
"""
from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable

from rootless.errors import UsageError
from rootless.userns.idmap import IdMapping, IdRange

USERNS_MODES = ("", "host", "keep-id")


def check_mode(mode: str) -> str:
    """The --userns value, normalized: "" (the default mapping) or "keep-id"."""
    if mode not in USERNS_MODES:
        raise UsageError(f"--userns {mode!r} is not supported: use keep-id (or leave it out)")
    return "" if mode == "host" else mode


def _ranges(host_id: int, sub: IdRange | None) -> tuple[IdRange, ...]:
    if sub is None:
        return (IdRange(host_id, host_id, 1),)
    if sub.count <= host_id:
        raise UsageError(f"--userns keep-id needs more than {host_id} subordinate ids to map id {host_id} "
                         f"to itself; this user has {sub.count}")
    return (IdRange(0, sub.outside, host_id), IdRange(host_id, host_id, 1),
            IdRange(host_id + 1, sub.outside + host_id, sub.count - host_id))


def keep_id_mapping(base: IdMapping) -> IdMapping:
    """The keep-id mapping made of the same ids as `base` (the user and its subordinate range)."""
    uid, gid = base.uids[0].outside, base.gids[0].outside
    sub_u = base.uids[1] if base.mode == "subuid" else None
    sub_g = base.gids[1] if base.mode == "subuid" else None
    return IdMapping(base.mode, _ranges(uid, sub_u), _ranges(gid, sub_g),
                     f"--userns keep-id: uid {uid} and gid {gid} are themselves inside")


def for_container(base: IdMapping, userns: str) -> IdMapping:
    return keep_id_mapping(base) if userns == "keep-id" else base


def _shift(user_id: int) -> Callable[[int], int]:
    # Default-mapping container ids: 0 is the user, k >= 1 is subordinate id k-1. Under keep-id
    # container id j < U is subordinate id j, U is the user and j > U is subordinate id j-1.
    def shift(image_id: int) -> int:
        if image_id < user_id:
            return image_id + 1
        return 0 if image_id == user_id else image_id
    return shift


def shift_tree(root: str, uid: int, gid: int, recursive: bool = True) -> None:
    """Re-own a tree (run inside the default mapping's user namespace) for keep-id of uid:gid."""
    su, sg = _shift(uid), _shift(gid)

    def fix(path: str, st: os.stat_result) -> None:
        new = (su(st.st_uid), sg(st.st_gid))
        if new != (st.st_uid, st.st_gid):
            os.lchown(path, *new)
            # chown clears setuid and setgid bits: put them back.
            if st.st_mode & 0o6000 and not stat.S_ISLNK(st.st_mode):
                os.chmod(path, st.st_mode & 0o7777)

    fix(root, os.lstat(root))
    if not recursive:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            fix(p, os.lstat(p))


def passwd_lines(uid: int, gid: int) -> tuple[str, str]:
    """The /etc/passwd and /etc/group lines keep-id adds when the image has no entry for the ids."""
    try:
        pw = pwd.getpwuid(uid)
        name, home = pw.pw_name, pw.pw_dir
    except KeyError:
        name, home = f"user{uid}", "/"
    return f"{name}:*:{uid}:{gid}:{name}:{home}:/bin/sh\n", f"{name}:x:{gid}:\n"
