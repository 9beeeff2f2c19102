"""The on-disk format of an overlay upper (and lower) directory.

It is the kernel overlay's format with user xattrs (the `userxattr` mount option), which is also
what fuse-overlayfs reads, so a directory written by the layer extractor, by our FUSE overlay or by
the kernel overlay can be used and turned into a layer tar by any of them:

- whiteout: a 0/0 character device; where mknod is refused, an empty regular file `.wh.NAME`;
- opaque directory: xattr `user.overlay.opaque` = `y`;
- owner and mode override: xattr `user.containers.override_stat`, containers/storage's format.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

import native

WHITEOUT_PREFIX = ".wh."
# The OCI tar marker of an opaque directory. fuse-overlayfs also writes it as a file in the upper
# directory where it cannot set xattrs, so readers of an upper directory honour it too.
OPAQUE_MARKER = ".wh..wh..opq"
# Other `.wh..wh.` names are aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), never content.
AUFS_META_PREFIX = ".wh..wh."

OPAQUE_XATTR = "user.overlay.opaque"
OPAQUE_XATTRS_READ = (OPAQUE_XATTR, "trusted.overlay.opaque", "user.fuseoverlayfs.opaque")
OVERRIDE_XATTR = "user.containers.override_stat"

# Xattrs that steer the overlay (opaque, redirect, metacopy, origin...) or carry overridden
# owners. They describe the storage, not the image: a layer must neither set them (a forged
# `user.overlay.redirect` would change what the kernel overlay shows) nor export them.
PRIVATE_XATTR_PREFIXES = (
    "user.overlay.",
    "trusted.overlay.",
    "user.fuseoverlayfs.",
    "security.fuseoverlayfs.",
    "user.containers.",
)

# What the kernel overlay (userxattr) stores for a `user.overlay.X` xattr set through the mount:
# `user.overlay.overlay.X`, which it shows back as `user.overlay.X`. An overlay nested in a
# container keeps its own markers this way without steering ours.
ESCAPED_XATTR_PREFIX = "user.overlay.overlay."
OVERLAY_XATTR_PREFIX = "user.overlay."


def escape_xattr(name: str) -> str:
    """The stored name of an xattr set through the overlay; ValueError for a private name that
    no one may set through it."""
    if name.startswith(OVERLAY_XATTR_PREFIX):
        return ESCAPED_XATTR_PREFIX + name[len(OVERLAY_XATTR_PREFIX):]
    if name.startswith(PRIVATE_XATTR_PREFIXES):
        raise ValueError(f"{name} belongs to the overlay")
    return name


def unescape_xattr(stored: str) -> str | None:
    """The name shown through the overlay for a stored xattr; None when it is the overlay's own."""
    if stored.startswith(ESCAPED_XATTR_PREFIX):
        return OVERLAY_XATTR_PREFIX + stored[len(ESCAPED_XATTR_PREFIX):]
    if stored.startswith(PRIVATE_XATTR_PREFIXES):
        return None
    return stored


_MAX_ID = 2**32 - 1

# The file type names of containers/storage's 4th field (devices are "char-MAJOR-MINOR").
_TYPE_NAMES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "pipe",
    stat.S_IFSOCK: "socket",
}
_TYPES_BY_NAME = {v: k for k, v in _TYPE_NAMES.items()}


@dataclass(frozen=True)
class OverrideStat:
    """The owner and mode a file really has, as `user.containers.override_stat` records them.

    `mode` holds the permission bits (with setuid, setgid and sticky) and, when the value names
    the file type, its `S_IFMT` bits; `rdev` is set for devices only.
    """

    uid: int
    gid: int
    mode: int
    rdev: int = 0

    @property
    def perms(self) -> int:
        return stat.S_IMODE(self.mode)

    @property
    def file_type(self) -> int:
        """The S_IFMT bits, or 0 when the value does not say."""
        return stat.S_IFMT(self.mode)


def encode_override(uid: int, gid: int, mode: int, rdev: int = 0) -> bytes:
    """The xattr value: `UID:GID:0MODE`, then `:TYPE` when `mode` carries file type bits.

    This is what containers/storage writes (e.g. `0:0:0755:dir`); fuse-overlayfs reads the first
    three fields, so both accept it.
    """
    if not (0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID):
        raise ValueError(f"id out of range for {OVERRIDE_XATTR}: {uid}:{gid}")
    value = f"{uid}:{gid}:{stat.S_IMODE(mode):04o}"
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFCHR or kind == stat.S_IFBLK:
        prefix = "char" if kind == stat.S_IFCHR else "block"
        value += f":{prefix}-{os.major(rdev)}-{os.minor(rdev)}"
    elif kind:
        try:
            value += ":" + _TYPE_NAMES[kind]
        except KeyError:
            raise ValueError(f"unknown file type {kind:o} for {OVERRIDE_XATTR}")
    return value.encode("ascii")


def decode_override(value: bytes) -> OverrideStat:
    """Parse any form that containers/storage, fuse-overlayfs or rl wrote; ValueError if malformed.

    Accepted: `UID:GID:MODE` where MODE is octal and may include type bits (`0:0:0100755`, as
    libkrun writes it), and the same with a 4th TYPE field; fields after the 4th are ignored, as
    containers/storage does for forward compatibility.
    """
    try:
        fields = value.decode("ascii").split(":")
    except UnicodeDecodeError:
        raise ValueError(f"{OVERRIDE_XATTR} is not ASCII: {value!r}")
    if len(fields) < 3:
        raise ValueError(f"{OVERRIDE_XATTR} needs UID:GID:MODE, got {value!r}")
    uid, gid = _decimal_id(fields[0], value), _decimal_id(fields[1], value)
    if not fields[2] or not all(c in "01234567" for c in fields[2]):
        raise ValueError(f"{OVERRIDE_XATTR} has a bad mode: {value!r}")
    raw = int(fields[2], 8)
    mode = stat.S_IMODE(raw) | stat.S_IFMT(raw)
    rdev = 0
    if len(fields) > 3:
        kind, rdev = _parse_type(fields[3], value)
        mode = stat.S_IMODE(raw) | kind
    return OverrideStat(uid, gid, mode, rdev)


def _decimal_id(text: str, value: bytes) -> int:
    if not text.isdigit() or int(text) > _MAX_ID:
        raise ValueError(f"{OVERRIDE_XATTR} has a bad id: {value!r}")
    return int(text)


def _parse_type(text: str, value: bytes) -> tuple[int, int]:
    if text in _TYPES_BY_NAME:
        return _TYPES_BY_NAME[text], 0
    parts = text.split("-")
    if len(parts) >= 3 and parts[0] in ("char", "block") and all(p.isdigit() for p in parts[1:3]):
        kind = stat.S_IFCHR if parts[0] == "char" else stat.S_IFBLK
        return kind, os.makedev(int(parts[1]), int(parts[2]))
    raise ValueError(f"{OVERRIDE_XATTR} has an unknown file type: {value!r}")


def is_whiteout(st: os.stat_result) -> bool:
    """True for the kernel's whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def whiteout_target(name: str) -> str | None:
    """NAME for a fallback whiteout file `.wh.NAME`; None for any other name (and markers)."""
    if not name.startswith(WHITEOUT_PREFIX) or name.startswith(AUFS_META_PREFIX):
        return None
    target = name[len(WHITEOUT_PREFIX):]
    return target if target not in ("", ".", "..") else None


def make_whiteout(dir_fd: int, name: str) -> str:
    """Hide NAME of the lower layers in the directory `dir_fd`; returns the name created.

    A 0/0 character device needs no privilege since Linux 5.8; where mknod is still refused
    (older kernels, some filesystems) the fallback is an empty `.wh.NAME` file.
    """
    try:
        native.mknod_whiteout(dir_fd, name)
        return name
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
    fallback = WHITEOUT_PREFIX + name
    fd = os.open(fallback, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    os.close(fd)
    return fallback


def set_opaque(path_or_fd: str | os.PathLike[str] | int, follow_symlinks: bool = False) -> None:
    """Mark a directory opaque: the directories of lower layers with its name are hidden.
    `follow_symlinks` for a /proc/self/fd path (`fuse_overlay.beneath.proc`)."""
    if isinstance(path_or_fd, int):
        os.setxattr(path_or_fd, OPAQUE_XATTR, b"y")
    else:
        os.setxattr(path_or_fd, OPAQUE_XATTR, b"y", follow_symlinks=follow_symlinks)


def is_opaque(path_or_fd: str | os.PathLike[str] | int, follow_symlinks: bool = False) -> bool:
    """True if a directory carries any of the opaque xattrs that overlays write, set to `y`."""
    for name in OPAQUE_XATTRS_READ:
        try:
            if isinstance(path_or_fd, int):
                value = os.getxattr(path_or_fd, name)
            else:
                value = os.getxattr(path_or_fd, name, follow_symlinks=follow_symlinks)
        except OSError as e:
            # trusted.* is unreadable without privilege; a missing xattr is ENODATA.
            if e.errno in (errno.ENODATA, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP):
                continue
            raise
        if value == b"y":
            return True
    return False
