"""Capabilities of the container process, which are those of root of its user namespace.

apply_caps runs on the container's start path, so this module imports nothing beyond what Python
has loaded at startup, native and rootless.errors.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence

import native
from rootless.errors import UsageError

# linux/capability.h: a capability's number is its index.
CAP_NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS: dict[str, int] = {name: n for n, name in enumerate(CAP_NAMES)}
ALL_CAPS: frozenset[int] = frozenset(range(len(CAP_NAMES)))

# podman's default_capabilities (containers.conf): docker's set without AUDIT_WRITE, MKNOD,
# NET_RAW.
DEFAULT_CAPS: frozenset[int] = frozenset(CAP_NUMBERS["CAP_" + n] for n in (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
    "SETPCAP", "SETUID", "SYS_CHROOT"))

_LAST_POSSIBLE_CAP = 63  # the masks are 64 bits; the kernel may know caps this table does not


def _normalize(names: Sequence[str]) -> tuple[bool, frozenset[int]]:
    """(ALL was given, the capabilities named). podman's comma lists (NET_ADMIN,SYS_TIME) accepted."""
    all_given = False
    caps = set()
    for entry in names:
        for name in entry.split(","):
            upper = name.strip().upper()
            if upper == "ALL":
                all_given = True
                continue
            full = upper if upper.startswith("CAP_") else "CAP_" + upper
            if full not in CAP_NUMBERS:
                raise UsageError(f"unknown capability {name!r}: use a name from capabilities(7) such as "
                                 "NET_ADMIN or CAP_NET_ADMIN, or ALL")
            caps.add(CAP_NUMBERS[full])
    return all_given, frozenset(caps)


def resolve_caps(cap_add: Sequence[str], cap_drop: Sequence[str]) -> frozenset[int]:
    """The capabilities the container keeps, by Docker's rules: --cap-add ALL gives every one but
    those dropped; else --cap-drop ALL gives only those added; else the defaults, minus those
    dropped, plus those added (adding wins over dropping the same one). Names are
    case-insensitive, with or without CAP_."""
    add_all, add = _normalize(cap_add)
    drop_all, drop = _normalize(cap_drop)
    if add_all:
        return ALL_CAPS - drop
    if drop_all:
        return add
    return (DEFAULT_CAPS - drop) | add


def mask(caps: frozenset[int]) -> int:
    """The 64-bit mask of a set of capabilities, as /proc/PID/status and capset(2) show them."""
    return sum(1 << c for c in caps)


def apply_caps(keep: frozenset[int], *, uid: int = 0, gid: int = 0,
               groups: Sequence[int] | None = None) -> None:
    """Limit the calling process, root of its user namespace, to the capabilities `keep`, and make
    it the user uid:gid with the supplementary groups `groups` (None: leave them, as where
    setgroups is denied), just before it execs the container's command.

    The user switch happens in the middle, in runc's order: the bounding set is cut first (that
    needs CAP_SETPCAP), the ids change next (that needs CAP_SETUID/CAP_SETGID, which `keep` may
    lack), the remaining sets are cut last. After exec, root gets exactly `keep`; another user gets
    no capability unless a file grants it, and then never one outside `keep` (the bounding set).
    The inheritable set is emptied rather than set to `keep`: a non-empty one let a file's
    inheritable bits give capabilities to non-root users (CVE-2022-24769, CVE-2022-27649).
    """
    for cap in range(_LAST_POSSIBLE_CAP + 1):
        if cap in keep:
            continue
        try:
            native.prctl(native.PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            break  # capability numbers are dense: the first unknown one ends the kernel's list
    if uid != 0:
        # Keeps the permitted set across setuid, so that the capset below is still allowed;
        # execve resets the flag.
        native.prctl(native.PR_SET_KEEPCAPS, 1)
    if groups is not None:
        os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    m = mask(keep)
    native.capset(m, m, 0)
    native.prctl(native.PR_CAP_AMBIENT, native.PR_CAP_AMBIENT_CLEAR_ALL)
