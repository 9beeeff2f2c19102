"""Syscalls Python 3.11 lacks, each raising OSError with the errno the kernel gave."""
from __future__ import annotations

import os
from collections.abc import Sequence

from native._native import ffi, lib

# The kernel's constants, with the values of its headers (see native/_build.py).
CLONE_NEWNS = lib.CLONE_NEWNS
CLONE_NEWCGROUP = lib.CLONE_NEWCGROUP
CLONE_NEWUTS = lib.CLONE_NEWUTS
CLONE_NEWIPC = lib.CLONE_NEWIPC
CLONE_NEWUSER = lib.CLONE_NEWUSER
CLONE_NEWPID = lib.CLONE_NEWPID
CLONE_NEWNET = lib.CLONE_NEWNET

MS_RDONLY = lib.MS_RDONLY
MS_NOSUID = lib.MS_NOSUID
MS_NODEV = lib.MS_NODEV
MS_NOEXEC = lib.MS_NOEXEC
MS_REMOUNT = lib.MS_REMOUNT
MS_BIND = lib.MS_BIND
MS_MOVE = lib.MS_MOVE
MS_REC = lib.MS_REC
MS_PRIVATE = lib.MS_PRIVATE
MS_SLAVE = lib.MS_SLAVE
MS_SHARED = lib.MS_SHARED
MS_NOATIME = lib.MS_NOATIME
MS_NODIRATIME = lib.MS_NODIRATIME
MS_RELATIME = lib.MS_RELATIME
MNT_FORCE = lib.MNT_FORCE
MNT_DETACH = lib.MNT_DETACH

# The kernel's limit on symlinks followed in one lookup (ELOOP past it), openat2's too. No
# header a program can include has it (glibc's MAXSYMLINKS, 20, is another limit).
MAXSYMLINKS = 40

RENAME_NOREPLACE = lib.RENAME_NOREPLACE
RENAME_EXCHANGE = lib.RENAME_EXCHANGE
AT_FDCWD = lib.AT_FDCWD
AT_EMPTY_PATH = lib.AT_EMPTY_PATH
AT_RECURSIVE = lib.AT_RECURSIVE

# openat2(2)'s `resolve` flags.
RESOLVE_NO_XDEV = lib.RESOLVE_NO_XDEV
RESOLVE_NO_MAGICLINKS = lib.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_SYMLINKS = lib.RESOLVE_NO_SYMLINKS
RESOLVE_BENEATH = lib.RESOLVE_BENEATH
RESOLVE_IN_ROOT = lib.RESOLVE_IN_ROOT
# Never leave the directory, never follow a link: how a path a container controls is walked.
RESOLVE_CONTAINED = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

CLOSE_RANGE_CLOEXEC = lib.CLOSE_RANGE_CLOEXEC

# The new mount API.
OPEN_TREE_CLONE = lib.OPEN_TREE_CLONE
OPEN_TREE_CLOEXEC = lib.OPEN_TREE_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = lib.MOVE_MOUNT_F_EMPTY_PATH
MOVE_MOUNT_T_EMPTY_PATH = lib.MOVE_MOUNT_T_EMPTY_PATH
MOUNT_ATTR_RDONLY = lib.MOUNT_ATTR_RDONLY

PR_SET_NO_NEW_PRIVS = lib.PR_SET_NO_NEW_PRIVS
PR_SET_PDEATHSIG = lib.PR_SET_PDEATHSIG
PR_SET_DUMPABLE = lib.PR_SET_DUMPABLE
PR_SET_KEEPCAPS = lib.PR_SET_KEEPCAPS
PR_CAPBSET_DROP = lib.PR_CAPBSET_DROP
PR_CAP_AMBIENT = lib.PR_CAP_AMBIENT
PR_CAP_AMBIENT_CLEAR_ALL = lib.PR_CAP_AMBIENT_CLEAR_ALL

# libseccomp's actions (ERRNO and TRACE without their 16-bit value) and argument comparisons.
SCMP_ACT_KILL = lib.SCMP_ACT_KILL
SCMP_ACT_KILL_THREAD = lib.SCMP_ACT_KILL_THREAD
SCMP_ACT_KILL_PROCESS = lib.SCMP_ACT_KILL_PROCESS
SCMP_ACT_TRAP = lib.SCMP_ACT_TRAP
SCMP_ACT_ERRNO = lib.RL_SCMP_ACT_ERRNO
SCMP_ACT_TRACE = lib.RL_SCMP_ACT_TRACE
SCMP_ACT_LOG = lib.SCMP_ACT_LOG
SCMP_ACT_ALLOW = lib.SCMP_ACT_ALLOW
SCMP_CMP_NE = lib.SCMP_CMP_NE
SCMP_CMP_LT = lib.SCMP_CMP_LT
SCMP_CMP_LE = lib.SCMP_CMP_LE
SCMP_CMP_EQ = lib.SCMP_CMP_EQ
SCMP_CMP_GE = lib.SCMP_CMP_GE
SCMP_CMP_GT = lib.SCMP_CMP_GT
SCMP_CMP_MASKED_EQ = lib.SCMP_CMP_MASKED_EQ


def _check(ret: int, operation: str, *paths: str | None) -> int:
    """`ret`, or the OSError of errno (FileNotFoundError and friends, as os raises them) when it
    is negative; its `operation` names the call and every path ("mount shm on /dev/shm"), for
    rootless.errors.describe."""
    if ret < 0:
        err = ffi.errno
        names = [p for p in paths if p]
        if len(names) >= 2:
            e = OSError(err, os.strerror(err), names[0], None, names[1])
        else:
            e = OSError(err, os.strerror(err), names[0] if names else None)
        e.operation = operation  # type: ignore[attr-defined]
        raise e
    return ret


def _c(s: str | None) -> object:
    return ffi.NULL if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(lib.rl_unshare(flags), f"unshare {flags:#x}")


def setns(fd: int, nstype: int = 0) -> None:
    _check(lib.rl_setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    _check(lib.rl_mount(_c(source), _c(target), _c(fstype), flags, _c(data)),
           f"mount {source or fstype or 'none'} on {target}", source, target)


def umount2(target: str, flags: int = 0) -> None:
    _check(lib.rl_umount2(_c(target), flags), f"unmount {target}", target)


def fstatfs_type(fd: int) -> int:
    """The file system type (statfs's f_type magic, e.g. 0x01021994 for tmpfs) of the open file."""
    out = ffi.new("uint64_t *")
    _check(lib.rl_fstatfs_type(fd, out), "fstatfs")
    return int(out[0])


def pivot_root(new_root: str, put_old: str) -> None:
    _check(lib.rl_pivot_root(_c(new_root), _c(put_old)), f"pivot_root into {new_root}", new_root, put_old)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(lib.rl_prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def sethostname(name: str) -> None:
    """socket.sethostname without importing socket (~1.5 ms on every container start)."""
    raw = name.encode()
    _check(lib.rl_sethostname(raw, len(raw)), f"set the hostname {name}")


def mknod_whiteout(dir_fd: int, name: str) -> None:
    _check(lib.rl_mknod_whiteout(dir_fd, os.fsencode(name)), f"make the whiteout {name}", name)


def capget(pid: int = 0) -> tuple[int, int, int]:
    """The (effective, permitted, inheritable) capability masks of process pid (0: the caller)."""
    out = ffi.new("uint64_t[3]")
    _check(lib.rl_capget(pid, out, out + 1, out + 2), "capget")
    return int(out[0]), int(out[1]), int(out[2])


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability masks (bit n is capability n)."""
    _check(lib.rl_capset(effective, permitted, inheritable), "capset")


def renameat2(old: str, new: str, flags: int = 0, old_dir_fd: int = AT_FDCWD,
              new_dir_fd: int = AT_FDCWD) -> None:
    """rename(2) with RENAME_NOREPLACE / RENAME_EXCHANGE, which os.rename cannot ask for."""
    _check(lib.rl_renameat2(old_dir_fd, os.fsencode(old), new_dir_fd, os.fsencode(new), flags),
           f"rename {old} to {new}", old, new)


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat(2) with openat2's `resolve` restrictions; ENOSYS before Linux 5.6, EXDEV or ELOOP
    when the path would leave the directory or cross a link it forbids."""
    return _check(lib.rl_openat2(dir_fd, os.fsencode(path), flags, mode, resolve), f"open {path}", path)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """Close (or with CLOSE_RANGE_CLOEXEC, mark close-on-exec) descriptors first..last."""
    _check(lib.rl_close_range(first, last, flags), "close_range")


def forward_signal(sig: int, pid: int) -> None:
    """From now on, signal sig is sent on to process pid by a C handler, at once, even while
    Python blocks in a system call (SA_RESTART resumes it). The last pid given is the target of
    every signal forwarded so."""
    _check(lib.rl_forward_signal(sig, pid), f"send signal {sig} to {pid}")


def open_tree(dir_fd: int, path: str, flags: int) -> int:
    """A descriptor of the mount at dir_fd/path; with OPEN_TREE_CLONE, of a detached copy of it
    (and with AT_RECURSIVE, of the mounts under it too). ENOSYS before Linux 5.2."""
    return _check(lib.rl_open_tree(dir_fd, os.fsencode(path), flags), f"open_tree {path}", path)


def move_mount(from_fd: int, to_fd: int) -> None:
    """Attach the mount tree of from_fd (an open_tree descriptor) on the file or directory to_fd
    stands for: no path is looked up, so none can be swapped underneath."""
    _check(lib.rl_move_mount(from_fd, b"", to_fd, b"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
           "move_mount")


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, recursive: bool = False) -> None:
    """Change the attributes (MOUNT_ATTR_*) of the mount fd stands for, and with recursive of
    every mount under it. ENOSYS before Linux 5.12."""
    _check(lib.rl_mount_setattr(fd, b"", AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0),
                                attr_set, attr_clr), "mount_setattr")


def zero_memory(address: int, size: int) -> None:
    """Overwrite size bytes of our own memory at address with zeros (the environment block that
    /proc/PID/environ shows: see rootless.runtime.handoff)."""
    ffi.memmove(ffi.cast("char *", address), bytes(size), size)


def fuse_hooks_enable() -> None:
    """Give the next FUSE session the C request handlers of native/_build.py: read, write, lseek
    (SEEK_DATA/SEEK_HOLE), fallocate and copy_file_range act on the real file whose descriptor
    is the request's file handle, and what the overlay described (fuse_flag, fuse_cache_attr,
    fuse_lower_path) is answered without pyfuse3's loop. Call it before pyfuse3 is imported;
    OSError when libfuse3 (or its header at build time) is missing."""
    _check(lib.rl_fuse_hooks_enable(), "enable the FUSE hooks")


FUSE_CACHE_DIR = lib.RL_FUSE_CACHE_DIR
FUSE_NO_CAPS = lib.RL_FUSE_NO_CAPS
# The bit of the file handles the FUSE hooks open themselves (a directory's handle is its inode).
FUSE_C_FH = lib.RL_FUSE_C_FH


def fuse_flag(ino: int, flag: int, on: bool) -> None:
    """Tell the FUSE hooks (see fuse_hooks_enable) about inode `ino`: FUSE_CACHE_DIR, the kernel
    may keep the directory's listing across opens; FUSE_NO_CAPS, the file has no
    security.capability. Every flag is off until set."""
    if lib.rl_fuse_flag(ino, flag, int(on)) < 0:
        raise MemoryError("no memory for the FUSE inode flags")


def fuse_cache_attr(ino: int, st: os.stat_result, mode: int, uid: int, gid: int, rdev: int,
                    timeout: float) -> None:
    """Let the FUSE hooks answer getattr of inode `ino` with `st` (mode, owner and device as
    given) until fuse_forget_attr: for files whose attributes never change."""
    if lib.rl_fuse_cache_attr(ino, mode, st.st_nlink, uid, gid, rdev, st.st_size,
                              st.st_blocks, st.st_blksize, st.st_atime_ns, st.st_mtime_ns,
                              st.st_ctime_ns, timeout) < 0:
        raise MemoryError("no memory for the FUSE attribute cache")


def fuse_forget_attr(ino: int) -> None:
    lib.rl_fuse_forget_attr(ino)


def fuse_lower_path(ino: int, root_fd: int, path: str) -> None:
    """Let the FUSE hooks open and close lower file `ino` for reading themselves, at `path`
    below the layer directory `root_fd` (which must stay open), never through a symlink."""
    if lib.rl_fuse_lower_path(ino, root_fd, os.fsencode(path.lstrip("/"))) < 0:
        raise MemoryError("no memory for the FUSE lower paths")


def fuse_copied_up(ino: int, upper_fd: int) -> None:
    """Lower file `ino` now lives in the upper file open for reading as `upper_fd`: the
    descriptors the hooks opened read it from now on."""
    _check(lib.rl_fuse_copied_up(ino, upper_fd), f"record the copy-up of inode {ino}")


def seccomp_syscall(name: str) -> int:
    """libseccomp's number for a syscall name on this architecture: negative for one that exists
    only elsewhere (a rule for it is left out where it does not exist), -1 for an unknown name."""
    return int(lib.rl_seccomp_syscall(name.encode()))


def seccomp_compile(default_action: int, arches: Sequence[str],
                    rules: Sequence[tuple[int, int, Sequence[tuple[int, int, int, int]]]]) -> bytes:
    """libseccomp's BPF program for a filter: `rules` are (action, syscall number, conditions),
    each condition (argument index, comparison, value, second value) as in seccomp.h."""
    ctx = lib.rl_seccomp_new(default_action)
    if ctx == ffi.NULL:
        raise OSError(ffi.errno, os.strerror(ffi.errno), "seccomp_init")
    try:
        for arch in arches:
            _check(lib.rl_seccomp_arch_add(ctx, arch.encode()), f"add the seccomp architecture {arch}", arch)
        for action, nr, conds in rules:
            n = len(conds)
            _check(lib.rl_seccomp_rule(ctx, action, nr, n, [c[0] for c in conds], [c[1] for c in conds],
                                       [c[2] for c in conds], [c[3] for c in conds]),
                   f"add the seccomp rule for syscall {nr}")
        fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)
        try:
            _check(lib.rl_seccomp_export(ctx, fd), "export the seccomp filter")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.rl_seccomp_release(ctx)


def seccomp_install(program: bytes) -> None:
    """Load a BPF program (seccomp_compile's) as the calling thread's seccomp filter: it needs
    no_new_privs or CAP_SYS_ADMIN in the thread's user namespace."""
    _check(lib.rl_seccomp_install(program, len(program)), "install the seccomp filter")


def ficlone(dst_fd: int, src_fd: int) -> None:
    """Make `dst_fd` share `src_fd`'s extents (a reflink copy); OSError where the file system
    cannot (EOPNOTSUPP, EXDEV, ...)."""
    _check(lib.rl_ficlone(dst_fd, src_fd), "clone the file's extents")


def link_up(ifname: str) -> None:
    """Bring a network interface of the caller's network namespace up (`ip link set NAME up`)."""
    _check(lib.rl_link_up(os.fsencode(ifname)), f"bring the interface {ifname} up", ifname)
