"""The id mapping rl uses: the user's /etc/subuid range, or a single id when there is none."""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from rootless.values import valueclass

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Literal

SUBUID_FILE = Path("/etc/subuid")
SUBGID_FILE = Path("/etc/subgid")


@valueclass
class IdRange:
    inside: int
    outside: int
    count: int


@valueclass
class IdMapping:
    """How ids inside the namespace map to the host: root inside is always the invoking user."""

    mode: Literal["subuid", "single"]
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]
    reason: str

    @property
    def size(self) -> int:
        return sum(r.count for r in self.uids)

    def host_uid(self, inside: int) -> int | None:
        return _to_host(self.uids, inside)

    def host_gid(self, inside: int) -> int | None:
        return _to_host(self.gids, inside)

    def container_uid(self, host: int) -> int | None:
        return _to_inside(self.uids, host)

    def container_gid(self, host: int) -> int | None:
        return _to_inside(self.gids, host)

    def describe(self) -> str:
        if self.mode == "single":
            return f"single id (uid {self.uids[0].outside} is root inside; no other ids)"
        sub = self.uids[1]
        return f"subordinate range: uid {self.uids[0].outside} is root, 1-{sub.count} map to {sub.outside}-{sub.outside + sub.count - 1}"


def _to_host(ranges: tuple[IdRange, ...], inside: int) -> int | None:
    for r in ranges:
        if r.inside <= inside < r.inside + r.count:
            return r.outside + inside - r.inside
    return None


def _to_inside(ranges: tuple[IdRange, ...], host: int) -> int | None:
    for r in ranges:
        if r.outside <= host < r.outside + r.count:
            return r.inside + host - r.outside
    return None


def read_subid_file(path: Path, user: str, uid: int) -> tuple[int, int] | None:
    """The first range of `user` (by name or number) in a subuid/subgid file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            return start, count
    return None


def _which(name: str) -> str | None:
    """The first executable `name` on PATH: the file write_maps (posix_spawnp) will run, looked up
    as podman does (shutil.which would do, but its import costs every start ~2 ms)."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _usable_helper(name: str) -> str | None:
    path = _which(name)
    if path is None:
        return None
    st = os.stat(path)
    has_caps = False
    try:
        has_caps = bool(os.getxattr(path, "security.capability"))
    except OSError:
        pass
    if (st.st_mode & stat.S_ISUID and st.st_uid == 0) or has_caps:
        return path
    return None


def detect_mapping() -> IdMapping:
    uid, gid = os.getuid(), os.getgid()
    single = (IdRange(0, uid, 1),), (IdRange(0, gid, 1),)
    if os.environ.get("RL_IDMAP") == "single":
        return IdMapping("single", *single, "RL_IDMAP=single asks for a single-id mapping")
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = read_subid_file(SUBUID_FILE, user, uid)
    subgid = read_subid_file(SUBGID_FILE, user, uid)
    if subuid is None or subgid is None:
        missing = "/etc/subuid" if subuid is None else "/etc/subgid"
        return IdMapping("single", *single,
                         f"{user} has no range in {missing}: only one id is mapped, so files cannot have "
                         "other owners (an administrator can add one, e.g. 'usermod --add-subuids "
                         "100000-165535 --add-subgids 100000-165535 " + user + "')")
    for helper in ("newuidmap", "newgidmap"):
        if _usable_helper(helper) is None:
            return IdMapping("single", *single,
                             f"{helper} is missing or not setuid root (install the 'uidmap' package): "
                             "only one id is mapped")
    return IdMapping(
        "subuid",
        (IdRange(0, uid, 1), IdRange(1, subuid[0], subuid[1])),
        (IdRange(0, gid, 1), IdRange(1, subgid[0], subgid[1])),
        f"{user} has {subuid[1]} subordinate ids in /etc/subuid",
    )
