"""The command line of `python -m fuse_overlay`, with fuse-overlayfs's option names."""
from __future__ import annotations

from dataclasses import dataclass


class OptionsError(Exception):
    """A bad command line; its text is the one-line message to print."""


@dataclass(frozen=True)
class Config:
    lowerdirs: tuple[str, ...]
    upperdir: str | None
    workdir: str | None
    mountpoint: str
    foreground: bool = False
    debug: bool = False
    ready_fd: int | None = None
    squash_uid: int | None = None
    squash_gid: int | None = None
    xattr_permissions: bool = False
    fsync: bool = True
    allow_other: bool = False
    # Options handed to libfuse as they are (fsname=, noatime...).
    fuse_options: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return self.upperdir is None


# Generic mount options that podman, mount(8) and fuse-overlayfs users pass; they either go to
# libfuse or mean nothing for a FUSE overlay (the kernel forces nosuid/nodev in a user namespace).
_IGNORED = frozenset({
    "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async", "sync", "auto", "noauto",
    "user", "nouser", "default_permissions", "noacl", "static_nlink", "fast_ino=0", "fast_ino=1",
    "redirect_dir=off", "index=off", "metacopy=off", "userxattr", "volatile",
})
_PASSED_TO_FUSE = frozenset({"atime", "noatime", "relatime", "norelatime", "strictatime",
                             "nostrictatime", "diratime", "nodiratime"})
_PASSED_PREFIXES = ("fsname=", "subtype=")
# fuse-overlayfs options whose value does not change what we do.
_IGNORED_PREFIXES = ("timeout=", "threaded=", "max_write=", "context=", "fscontext=",
                     "defcontext=", "rootcontext=")

USAGE = ("usage: python -m fuse_overlay [-f] [-d] [--ready-fd N] "
         "-o lowerdir=L1:L2,upperdir=U,workdir=W[,OPTS] MOUNTPOINT")


def parse_args(argv: list[str]) -> Config:
    """The Config of a command line; OptionsError with a one-line message when it is wrong."""
    opts: list[str] = []
    positional: list[str] = []
    foreground = debug = False
    ready_fd: int | None = None
    args = iter(argv)
    for arg in args:
        if arg == "-f":
            foreground = True
        elif arg == "-d":
            debug = foreground = True
        elif arg == "-o" or arg == "--ready-fd":
            value = next(args, None)
            if value is None:
                raise OptionsError(f"{arg} needs a value")
            if arg == "-o":
                opts.append(value)
            else:
                ready_fd = _int_option("--ready-fd", value)
        elif arg.startswith("-o") and len(arg) > 2:
            opts.append(arg[2:])
        elif arg.startswith("--ready-fd="):
            ready_fd = _int_option("--ready-fd", arg.split("=", 1)[1])
        elif arg.startswith("-") and arg != "-":
            raise OptionsError(f"unknown argument {arg!r}; {USAGE}")
        else:
            positional.append(arg)
    if len(positional) != 1:
        raise OptionsError(f"expected one MOUNTPOINT; {USAGE}")
    return _config(",".join(opts).split(","), positional[0], foreground, debug, ready_fd)


def _config(items: list[str], mountpoint: str, foreground: bool, debug: bool,
            ready_fd: int | None) -> Config:
    lower: tuple[str, ...] = ()
    upper = work = None
    squash_uid = squash_gid = None
    xattr_permissions = False
    fsync = True
    allow_other = read_only = False
    fuse: list[str] = []
    for item in items:
        if not item:
            continue
        key, _, value = item.partition("=")
        if key == "lowerdir":
            lower = tuple(d for d in value.split(":") if d)
        elif key == "upperdir":
            upper = value
        elif key == "workdir":
            work = value
        elif key == "squash_to_uid":
            squash_uid = _int_option(key, value)
        elif key == "squash_to_gid":
            squash_gid = _int_option(key, value)
        elif item == "squash_to_root":
            squash_uid = squash_gid = 0
        elif key == "xattr_permissions":
            if value not in ("0", "1", "2"):
                raise OptionsError(f"xattr_permissions must be 0, 1 or 2, not {value!r}")
            # 1 keeps the owner in a privileged xattr that a rootless process cannot write, so
            # both 1 and 2 use the user.* xattr that a user namespace can write.
            xattr_permissions = value != "0"
        elif key == "fsync":
            fsync = value != "0"
        elif item == "ro":
            read_only = True
        elif item in ("allow_other", "allow_root"):
            allow_other = True
        elif item in _IGNORED or item.startswith(_IGNORED_PREFIXES):
            continue
        elif item in _PASSED_TO_FUSE or item.startswith(_PASSED_PREFIXES):
            fuse.append(item)
        else:
            raise OptionsError(f"unknown option {item!r}")
    if not lower:
        raise OptionsError("lowerdir= is required")
    if read_only:
        upper = work = None
    elif upper is None:
        raise OptionsError("upperdir= is required (or ro for a read-only overlay)")
    elif work is None:
        raise OptionsError("workdir= is required with upperdir=")
    return Config(lowerdirs=lower, upperdir=upper, workdir=work, mountpoint=mountpoint,
                  foreground=foreground, debug=debug, ready_fd=ready_fd, squash_uid=squash_uid,
                  squash_gid=squash_gid, xattr_permissions=xattr_permissions, fsync=fsync,
                  allow_other=allow_other, fuse_options=tuple(fuse))


def _int_option(name: str, value: str) -> int:
    if not value.isdigit():
        raise OptionsError(f"{name} needs a non-negative integer, not {value!r}")
    return int(value)
