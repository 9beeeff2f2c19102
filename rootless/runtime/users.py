"""Resolve `-u`/USER against the container's own /etc/passwd and /etc/group, as runc does.

The rules are those of libcontainer's user.GetExecUser, which Docker and podman share, so a
container runs as the same ids under rl as under them.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from rootless.errors import RlError, UsageError
from rootless.values import valueclass

_MAX_ID = 2**31 - 1  # libcontainer's maxID: ids are signed 32-bit in the kernel's interfaces
_NUMBER = r"[+-]?[0-9]+"  # patterns: re compiles one when first used
_ID = r"[0-9]+"


@valueclass
class ResolvedUser:
    """Who the container process runs as. groups: the supplementary groups to set, in order,
    without duplicates. name: the passwd entry matched, None when there was none."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str | None


@valueclass
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@valueclass
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _records(text: str | None, min_fields: int) -> list[list[str]]:
    """The colon-separated fields of each line; comments, blank lines and lines too short skipped."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            out.append(fields)
    return out


def _entry_id(text: str) -> int | None:
    return int(text) if re.fullmatch(_ID, text) and int(text) <= _MAX_ID else None


def _passwd(text: str | None) -> list[_PasswdEntry]:
    out = []
    for f in _records(text, 4):
        uid, gid = _entry_id(f[2]), _entry_id(f[3])
        if uid is None or gid is None:  # a malformed line, or a NIS "+" entry: nothing to match
            continue
        home = f[5] if len(f) > 5 and f[5] else "/"
        out.append(_PasswdEntry(f[0], uid, gid, home))
    return out


def _groups(text: str | None) -> list[_GroupEntry]:
    out = []
    for f in _records(text, 3):
        gid = _entry_id(f[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
        out.append(_GroupEntry(f[0], gid, members))
    return out


def _numeric(text: str, what: str) -> int | None:
    """The id a numeric user or group part stands for; None when the part is a name."""
    if not re.fullmatch(_NUMBER, text):
        return None
    n = int(text)
    if not 0 <= n <= _MAX_ID:
        raise UsageError(f"{what} {text} is out of range: ids run from 0 to {_MAX_ID}")
    return n


def resolve_user(spec: str | None, passwd: str | None, group: str | None,
                 group_add: Sequence[str] = ()) -> ResolvedUser:
    """The user `spec` names: "", "name", "uid", "name:group", "uid:gid", "uid:group"...

    passwd and group are the texts of the container's /etc/passwd and /etc/group (None when the
    image has none). A number is always an id, found in passwd or not (then its home is / and its
    group 0 unless given); a name must be found. Supplementary groups are those of /etc/group that
    list the user's name, but only when no group is given explicitly (runc's rule), then the
    group_add entries, each a group name or a number.
    """
    spec = spec or ""
    user_part, _, group_part = spec.partition(":")
    if ":" in group_part:
        raise UsageError(f"invalid user {spec!r}: use NAME, UID, NAME:GROUP or UID:GID")
    uid_arg = _numeric(user_part, "uid")
    gid_arg = _numeric(group_part, "gid")

    users = _passwd(passwd)
    if not user_part:  # only a group given, or nothing: root's entry
        match = next((u for u in users if u.uid == 0), None)
    elif uid_arg is not None:
        match = next((u for u in users if u.uid == uid_arg), None)
    else:
        match = next((u for u in users if u.name == user_part), None)
    if match is not None:
        name: str | None = match.name
        uid, gid, home = match.uid, match.gid, match.home
    elif uid_arg is not None or not user_part:
        name, uid, gid, home = None, uid_arg or 0, 0, "/"
    else:
        raise RlError(f"unable to find user {user_part}: no matching entries in passwd file")

    groups = _groups(group)
    supplementary: list[int] = []
    if group_part:
        if gid_arg is not None:
            gid = gid_arg
        else:
            found = next((g for g in groups if g.name == group_part), None)
            if found is None:
                raise RlError(f"unable to find group {group_part}: no matching entries in group file")
            gid = found.gid
    elif name is not None:
        supplementary = [g.gid for g in groups if name in g.members]
    for extra in group_add:
        found = next((g for g in groups if extra in (g.name, str(g.gid))), None)
        if found is not None:
            supplementary.append(found.gid)
            continue
        n = _numeric(extra, "gid")
        if n is None:
            raise RlError(f"unable to find group {extra}: no matching entries in group file")
        supplementary.append(n)
    return ResolvedUser(uid, gid, tuple(dict.fromkeys(supplementary)), home, name)
