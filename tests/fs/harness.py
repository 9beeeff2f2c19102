"""Mount an overlay (ours, the kernel's, fuse-overlayfs) in a private namespace and act on it.

Kernel overlayfs can only be mounted by root of a user namespace, and its mount is only visible
inside that namespace's mount namespace. So every test gets a *namespace worker*: a process forked
from pytest that enters new user (the full subuid range mapped through newuidmap), mount and pid
namespaces and runs the module-level functions it is sent (pickled by reference), returning their
result or exception (OSError keeps its errno) to pytest. The worker is pid 1 of its pid
namespace: when it goes, the kernel kills every FUSE daemon it started and the mount namespace
with its mounts disappears, so a failed test leaks neither mounts nor daemons.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import pickle
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fuse_overlay
import native
from fuse_overlay import HANDLER_BUG, upperfmt
from rootless.userns.enter import spawn_in_userns
from rootless.userns.idmap import detect_mapping

REPO = Path(__file__).resolve().parents[2]
IMPLS = ("ours", "kernel", "fuse-overlayfs")
# The user's own mapping: with it, a range to give files other owners.
MAPPING = detect_mapping()
# A call that takes this long means the filesystem hangs (a deadlocked daemon), not that it is slow.
CALL_TIMEOUT = 120.0
DAEMON_EXIT_TIMEOUT = 15.0


# --- what a layer holds -------------------------------------------------------------------------

@dataclass(frozen=True)
class File:
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    mtime: float | None = None


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    opaque: bool = False
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    mtime: float | None = None


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Fifo:
    mode: int = 0o644


@dataclass(frozen=True)
class HardLink:
    """Another name of the file at `to` (a path in the same layer, made earlier in the dict)."""

    to: str


@dataclass(frozen=True)
class Whiteout:
    pass


WHITEOUT = Whiteout()
Entry = File | Dir | Symlink | Fifo | HardLink | Whiteout
Tree = Mapping[str, Entry]


def build_tree(root: str, tree: Tree) -> None:
    """Make `tree` under `root` (run in the worker, as root of the namespace, so owners are real).
    Parents not named in the tree are plain 0755 directories."""
    os.makedirs(root, exist_ok=True)
    dir_times: list[tuple[str, float]] = []
    for rel, e in tree.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(e, File):
            with open(path, "wb") as f:
                f.write(e.data)
            _attrs(path, e.mode, e.uid, e.gid, e.xattrs)
            if e.mtime is not None:
                os.utime(path, (e.mtime, e.mtime))
        elif isinstance(e, Dir):
            os.makedirs(path, exist_ok=True)
            _attrs(path, e.mode, e.uid, e.gid, e.xattrs)
            if e.opaque:
                upperfmt.set_opaque(path)
            if e.mtime is not None:
                dir_times.append((path, e.mtime))
        elif isinstance(e, Symlink):
            os.symlink(e.target, path)
        elif isinstance(e, Fifo):
            os.mkfifo(path, e.mode)
        elif isinstance(e, HardLink):
            os.link(os.path.join(root, e.to), path)
        else:
            fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
            try:
                native.mknod_whiteout(fd, os.path.basename(path))
            finally:
                os.close(fd)
    # Last, since making entries inside a directory changes its mtime.
    for path, t in dir_times:
        os.utime(path, (t, t))


def _attrs(path: str, mode: int, uid: int, gid: int, xattrs: Mapping[str, bytes]) -> None:
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    for k, v in xattrs.items():
        os.setxattr(path, k, v)


# --- the mount under test ----------------------------------------------------------------------

@dataclass(frozen=True)
class Mnt:
    """Where one overlay lives; picklable, so functions run in the worker take it as argument."""

    impl: str
    lowers: tuple[str, ...]  # the topmost first, as lowerdir= lists them
    upper: str
    work: str
    merged: str

    def p(self, rel: str = "") -> str:
        return os.path.join(self.merged, rel) if rel else self.merged

    def u(self, rel: str = "") -> str:
        return os.path.join(self.upper, rel) if rel else self.upper


# What the worker has mounted: the daemon of each FUSE mount (its pid for fuse-overlayfs), None
# for the kernel's.
_mounts: dict[str, fuse_overlay.MountHandle | int | None] = {}


def mount(m: Mnt) -> None:
    """Mount `m` (run in the worker); returns once the mount is live."""
    opts = f"lowerdir={':'.join(m.lowers)},upperdir={m.upper},workdir={m.work}"
    if m.impl == "kernel":
        native.mount("overlay", m.merged, "overlay", 0, opts + ",userxattr")
        _mounts[m.merged] = None
        return
    log = os.path.join(os.path.dirname(m.merged), f"daemon-{m.impl}.log")
    if m.impl == "ours":
        # As rl mounts it: the daemon's stderr, where it reports its own bugs, kept in the log
        # (the daemonizing command sends it to /dev/null).
        _mounts[m.merged] = fuse_overlay.mount(list(m.lowers), m.upper, m.work, m.merged, stderr_path=log)
        return
    with open(log, "ab") as err:
        p = subprocess.run(["fuse-overlayfs", "-o", opts, m.merged], stdin=subprocess.DEVNULL, check=False,
                           stdout=err, stderr=err, cwd=REPO, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{m.impl} mount exited {p.returncode}: {_tail(log)}")
    if not os.path.ismount(m.merged):
        raise RuntimeError(f"{m.impl} returned 0 but {m.merged} is not a mount point: {_tail(log)}")
    pids = [pid for pid in _processes() if m.merged in _cmdline(pid)]
    if len(pids) != 1:
        raise RuntimeError(f"expected one {m.impl} daemon serving {m.merged}, found {pids}")
    _mounts[m.merged] = pids[0]


def umount(m: Mnt) -> None:
    """Unmount `m` (run in the worker) and, for FUSE, wait for the daemon to exit cleanly."""
    check_daemon_log(m)
    native.umount2(m.merged)
    daemon = _mounts.pop(m.merged, None)
    if daemon is None:
        return
    code = _exit_code(daemon)
    if code is None:
        raise RuntimeError(f"the {m.impl} daemon is still running {DAEMON_EXIT_TIMEOUT:.0f} s after unmount")
    if code != 0:
        raise RuntimeError(f"the {m.impl} daemon exited {code} after unmount: {_tail(m)}")


def _exit_code(daemon: fuse_overlay.MountHandle | int) -> int | None:
    """The daemon's exit status once it exits, None if it does not in DAEMON_EXIT_TIMEOUT."""
    if isinstance(daemon, fuse_overlay.MountHandle):
        try:
            return daemon.wait(DAEMON_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
    deadline = time.monotonic() + DAEMON_EXIT_TIMEOUT
    while time.monotonic() < deadline:
        # fuse-overlayfs daemonized: the worker is pid 1 of the namespace and reaps orphans.
        done, status = os.waitpid(daemon, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    return None


def check_daemon_log(m: Mnt) -> None:
    """Fail if our daemon met anything but an OSError in a request: it answered EIO for a bug."""
    if m.impl != "ours":
        return
    bugs = [line for line in _tail(m, None).splitlines() if line.startswith(HANDLER_BUG)]
    if bugs:
        raise AssertionError(f"the daemon of {m.merged} logged bugs:\n" + "\n".join(bugs))


def _tail(log_or_mnt: str | Mnt, size: int | None = 2000) -> str:
    log = log_or_mnt if isinstance(log_or_mnt, str) else \
        os.path.join(os.path.dirname(log_or_mnt.merged), f"daemon-{log_or_mnt.impl}.log")
    try:
        with open(log, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ""
    return (data if size is None else data[-size:]).decode(errors="replace")


def _processes() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid()]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []


# --- the worker --------------------------------------------------------------------------------

def _send(sock: socket.socket, obj: Any) -> None:
    try:
        data = pickle.dumps(obj)
    except Exception as e:  # noqa: BLE001 - the other side must get an answer
        data = pickle.dumps(("raise", RuntimeError(f"cannot pickle {obj!r}: {e}")))
    sock.sendall(struct.pack("!Q", len(data)) + data)


def _recv(sock: socket.socket) -> Any:
    head = _recv_exactly(sock, 8)
    if head is None:
        return None
    body = _recv_exactly(sock, struct.unpack("!Q", head)[0])
    if body is None:
        raise EOFError("the namespace worker died mid-reply")
    return pickle.loads(body)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _serve(sock: socket.socket, workspace: str) -> None:
    native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    # Our own /proc: pids of daemons as this pid namespace numbers them.
    native.mount("proc", "/proc", "proc", native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC)
    # Modes of new files must not depend on the umask of whoever ran pytest.
    os.umask(0o022)
    while True:
        msg = _recv(sock)
        if msg is None:
            break
        fn, args, kwargs = msg
        try:
            reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - everything goes back to pytest
            e.add_note("raised in the namespace worker:\n" + "".join(traceback.format_exception(e)))
            reply = ("raise", e)
        _send(sock, reply)
    for merged in list(_mounts):
        try:
            native.umount2(merged, native.MNT_DETACH)
        except OSError:
            pass
    # Files of other owners (the subuid range) can only be removed from inside the namespace.
    shutil.rmtree(workspace, ignore_errors=True)


class Worker:
    """A process in its own user, mount and pid namespaces that runs the functions sent to it."""

    def __init__(self, workspace: Path) -> None:
        ours, theirs = socket.socketpair()

        def intermediate() -> int:
            ours.close()
            pid = os.fork()
            if pid == 0:
                try:
                    _serve(theirs, str(workspace))
                finally:
                    os._exit(0)
            theirs.close()
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)

        # Looked up now, not at import: single_id tests ask for a single-id map through RL_IDMAP.
        self.pid = spawn_in_userns(detect_mapping(), intermediate, native.CLONE_NEWNS | native.CLONE_NEWPID)
        theirs.close()
        ours.settimeout(CALL_TIMEOUT)
        self.sock: socket.socket | None = ours

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.sock is None:
            raise RuntimeError("the namespace worker is closed")
        try:
            _send(self.sock, (fn, args, kwargs))
            reply = _recv(self.sock)
        except TimeoutError:
            self.close()
            raise TimeoutError(f"{fn.__name__} did not return within {CALL_TIMEOUT:.0f} s: the filesystem hangs") from None
        if reply is None:
            raise EOFError(f"the namespace worker died running {fn.__name__}")
        kind, value = reply
        if kind == "raise":
            raise value
        return value

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def prepare(root: str, lowers: list[Tree], upper: Tree | None) -> None:
    """Make the layer directories of a mount under `root` (run in the worker)."""
    for i, tree in enumerate(lowers):
        build_tree(os.path.join(root, f"lower{i}"), tree)
    build_tree(os.path.join(root, "upper"), upper or {})
    os.makedirs(os.path.join(root, "work"), exist_ok=True)
    os.makedirs(os.path.join(root, "merged"), exist_ok=True)


class Overlay:
    """An overlay mounted in a worker. `ov(fn, *args)` runs fn in the worker."""

    def __init__(self, worker: Worker, impl: str, root: Path, lowers: list[Tree], upper: Tree | None = None) -> None:
        self.worker = worker
        self.impl = impl
        r = str(root)
        self.mnt = Mnt(impl, tuple(os.path.join(r, f"lower{i}") for i in range(len(lowers))),
                       os.path.join(r, "upper"), os.path.join(r, "work"), os.path.join(r, "merged"))
        worker.call(prepare, r, lowers, upper)
        self.mount()

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.worker.call(fn, *args, **kwargs)

    def p(self, rel: str = "") -> str:
        return self.mnt.p(rel)

    def u(self, rel: str = "") -> str:
        return self.mnt.u(rel)

    def l(self, i: int, rel: str = "") -> str:
        return os.path.join(self.mnt.lowers[i], rel)

    def mount(self) -> None:
        self.worker.call(mount, self.mnt)

    def umount(self) -> None:
        self.worker.call(umount, self.mnt)

    def remount(self) -> None:
        self.umount()
        self.mount()

    def errno(self, fn: Callable[..., Any], *args: Any) -> int:
        """The errno fn(*args) fails with in the worker, 0 if it succeeds."""
        try:
            self.worker.call(fn, *args)
        except OSError as e:
            return e.errno or -1
        return 0


# --- helpers run in the worker ------------------------------------------------------------------

def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path: str, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode: int = 0o644) -> None:
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def listdir(path: str) -> list[str]:
    return sorted(os.listdir(path))


def lstat(path: str) -> os.stat_result:
    return os.lstat(path)


def xattrs(path: str) -> dict[str, bytes]:
    """The xattrs listxattr shows, with their values."""
    return {k: os.getxattr(path, k, follow_symlinks=False) for k in os.listxattr(path, follow_symlinks=False)}


def check_upper(ov: Overlay, expected: Mapping[str, str]) -> None:
    """The upper directory means `expected` (see upper_meaning); ours and the kernel's must also
    write the same markers: 0/0 character devices and user.overlay.opaque."""
    assert ov(upper_meaning, ov.u(), ov.mnt.lowers) == expected
    if ov.impl in ("ours", "kernel"):
        fmt = ov(upper_format, ov.u())
        for rel, meaning in expected.items():
            if meaning == "whiteout":
                assert fmt.get(rel) == "chr 0/0", rel
            elif meaning == "opaque dir":
                assert fmt.get(rel) == "user.overlay.opaque", rel


def stored_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs of a file in a layer directory, without the ones overlays keep for themselves
    (origin, impure, opaque...): what the file carries for its users."""
    return {k: v for k, v in xattrs(path).items() if not k.startswith(upperfmt.PRIVATE_XATTR_PREFIXES)}


def as_user(uid: int, gid: int, cwd: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a child that has dropped to uid:gid (no supplementary groups, no caps) in
    directory cwd: pass paths relative to it, since pytest's tmp_path is private to its user."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            reply: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - goes back to the caller
            reply = ("raise", e)
        try:
            data = pickle.dumps(reply)
        except Exception as e:  # noqa: BLE001
            data = pickle.dumps(("raise", RuntimeError(f"cannot pickle {reply!r}: {e}")))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "raise":
        raise value
    return value


@dataclass(frozen=True)
class Node:
    """What a user sees of one entry: its type, permission bits, owner, size, content or target."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    content: str  # sha256 of a file's data, a symlink's target, "" otherwise
    nlink: int


def node(path: str, with_nlink: bool = True) -> Node:
    st = os.lstat(path)
    kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
            stat.S_IFSOCK: "socket", stat.S_IFCHR: "chr", stat.S_IFBLK: "blk"}[stat.S_IFMT(st.st_mode)]
    content = ""
    if kind == "file":
        content = hashlib.sha256(read(path)).hexdigest()[:16]
    elif kind == "symlink":
        content = os.readlink(path)
    # A merged directory's link count is not defined by overlayfs (it reports 1): files only.
    nlink = st.st_nlink if with_nlink and kind != "dir" else 0
    return Node(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size if kind != "dir" else 0, content, nlink)


def snapshot(root: str) -> dict[str, Node]:
    """Every entry under root, by relative path."""
    out: dict[str, Node] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = node(path)
    return out


def upper_meaning(upper: str, lowers: tuple[str, ...] = ()) -> dict[str, str]:
    """What an upper directory says, whichever overlay wrote it: for each path 'whiteout',
    'opaque dir', 'dir' or the kind of entry it is; read with fuse_overlay.upperfmt.

    Opaqueness only counts where a lower has a directory to hide (fuse-overlayfs marks every
    new directory opaque); whiteouts of `.wh.*` names are markers (fuse-overlayfs's `.wh..opq`).
    """
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, upper)
            st = os.lstat(path)
            if name == upperfmt.OPAQUE_MARKER:
                out[os.path.dirname(rel)] = "opaque dir"
            elif upperfmt.is_whiteout(st):
                if not name.startswith(upperfmt.WHITEOUT_PREFIX):
                    out[rel] = "whiteout"
            elif (target := upperfmt.whiteout_target(name)) is not None:
                out[os.path.join(os.path.dirname(rel), target)] = "whiteout"
            elif stat.S_ISDIR(st.st_mode):
                out.setdefault(rel, "opaque dir" if upperfmt.is_opaque(path) else "dir")
            else:
                out[rel] = node(path, with_nlink=False).kind
    for rel, meaning in out.items():
        if meaning == "opaque dir" and not any(os.path.isdir(os.path.join(lo, rel)) for lo in lowers):
            out[rel] = "dir"
    return out


def upper_format(upper: str) -> dict[str, str]:
    """The exact markers in an upper directory: 'chr 0/0' whiteouts and 'user.overlay.opaque'
    directories, as the kernel overlay with userxattr writes them (what ours must write too)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, upper)
            st = os.lstat(path)
            if upperfmt.is_whiteout(st):
                out[rel] = "chr 0/0"
            elif name.startswith(upperfmt.WHITEOUT_PREFIX):
                out[rel] = "whiteout file"
            elif stat.S_ISDIR(st.st_mode):
                try:
                    out[rel] = "user.overlay.opaque" if os.getxattr(path, upperfmt.OPAQUE_XATTR) == b"y" else "dir"
                except OSError:
                    out[rel] = "dir"
    return out


# --- syscalls os lacks --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


_libc.syscall.restype = ctypes.c_long
SYS_getdents64 = 217  # x86_64


def getdents(fd: int, bufsize: int = 4096) -> list[tuple[str, int, int]]:
    """One getdents64 call on a directory fd: [(name, d_ino, d_off)]; [] at the end.
    A small bufsize makes iteration take many calls, as on a big directory."""
    buf = ctypes.create_string_buffer(bufsize)
    n = _libc.syscall(SYS_getdents64, fd, buf, bufsize)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    out = []
    raw = buf.raw[:n]
    pos = 0
    while pos < n:
        ino, off, reclen = struct.unpack_from("=QqH", raw, pos)
        name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
        out.append((os.fsdecode(name), ino, off))
        pos += reclen
    return out


def readdir_all(path: str) -> list[tuple[str, int]]:
    """Every entry getdents64 returns, `.` and `..` included: [(name, d_ino)]."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = []
        while batch := getdents(fd):
            out += [(name, ino) for name, ino, _ in batch]
        return out
    finally:
        os.close(fd)


def renameat2(old: str, new: str, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old, None, new)


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) itself: os.posix_fallocate falls back to writing zeros where it is refused."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

