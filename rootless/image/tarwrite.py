"""A directory tree as a layer tar: deterministic, PAX, numeric ids, streamed in one pass.

The same tree always gives the same bytes (names sorted, no user names, no access times), so a
layer rebuilt from the same content gets the same digest. With `overlay_upper=True` the tree is an
overlay upper directory (`fuse_overlay.upperfmt`) and its whiteouts and opaque directories become
OCI whiteout entries.
"""
from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO, Literal

from fuse_overlay import upperfmt
from rootless.errors import RlError
from rootless.values import valueclass

Owners = Literal["real", "xattr"]

_CHUNK = 1 << 20
_BLOCK = 512
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK and O_NOCTTY: a file swapped for a FIFO or a terminal between listing and opening
# must neither hang the open nor become anyone's terminal (the fstat after it refuses it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Labels of the host's security policy, not content of the image.
_HOST_XATTRS = frozenset({"security.selinux"})
# Whiteout and opaque entries carry no content; fixed attributes keep the tar the same whichever
# storage driver made the upper directory (each creates whiteouts with its own mode).
_MARKER_MODE = 0o600


@valueclass
class TarStats:
    entries: int
    size: int
    """Bytes written, end-of-archive blocks included."""
    whiteouts: int
    opaque_dirs: int
    skipped_sockets: tuple[str, ...]


def write_tar(src: str | os.PathLike[str], out: BinaryIO | IO[bytes], *, owners: Owners, overlay_upper: bool,
              uid_map: Callable[[int], int] | None = None,
              gid_map: Callable[[int], int] | None = None,
              exclude: frozenset[str] = frozenset(), clamp_mtime: int | None = None) -> TarStats:
    """Write the tree under `src` (not `src` itself) to `out` as a tar; `out` may be a pipe.

    owners="xattr": ids and mode come from user.containers.override_stat where a file has it;
    elsewhere, and with owners="real", from stat() through uid_map/gid_map. Without maps, ids are
    kept as they are, except that with owners="xattr" the invoking user's own ids become 0 (in
    single-id mode the user is root inside). Sockets are skipped, and so are the relative paths in
    `exclude` (with what is under them). With clamp_mtime (SOURCE_DATE_EPOCH), no entry is newer
    than it, so that the same changes make the same tar. Raises RlError if a file cannot be read.
    """
    if owners not in ("real", "xattr"):
        raise ValueError(f"owners must be 'real' or 'xattr', not {owners!r}")
    if owners == "xattr":
        my_uid, my_gid = os.getuid(), os.getgid()
        uid_map = uid_map or (lambda u: 0 if u == my_uid else u)
        gid_map = gid_map or (lambda g: 0 if g == my_gid else g)
    w = _Writer(out, owners, overlay_upper, uid_map or _same, gid_map or _same, os.fspath(src), exclude,
                clamp_mtime)
    try:
        root_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RlError(f"cannot archive {os.fspath(src)}: {e.strerror}") from e
    try:
        w.walk(root_fd)
    finally:
        os.close(root_fd)
    return w.end()


def write_named(path: str, arcname: str, out: BinaryIO | IO[bytes], *, follow: bool) -> TarStats:
    """`path` itself and, for a directory, the tree under it, as a tar whose names start with
    `arcname` (rl cp's stream), ids as they are. The last component of `path` is archived as it
    is (a symlink as a symlink) unless `follow`, which asks for the directory it leads to."""
    parent, name = (path, ".") if follow else (os.path.dirname(path) or "/", os.path.basename(path))
    w = _Writer(out, "real", False, _same, _same, path)
    w.arcname = arcname
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RlError(f"cannot archive {path}: {e.strerror}") from e
    try:
        try:
            sub_fd = w._entry(parent_fd, arcname, _Child(name, os.lstat(name, dir_fd=parent_fd)))
        except OSError as e:
            raise w._fail(arcname, e) from e
        if sub_fd is not None:
            try:
                w.walk(sub_fd, arcname + "/")
            finally:
                os.close(sub_fd)
    finally:
        os.close(parent_fd)
    return w.end()


def _same(i: int) -> int:
    return i


@valueclass
class _Child:
    name: str
    st: os.stat_result
    whiteout: str | None = None  # for a whiteout of the upper format: the name it hides
    # Whiteout entries take their directory's mtime: the node's own is just when it was made,
    # and would make an unpacked and re-archived tree differ from the tar it came from.
    marker_mtime_ns: int = 0


class _Writer:
    def __init__(self, out: BinaryIO | IO[bytes], owners: Owners, overlay_upper: bool,
                 uid_map: Callable[[int], int], gid_map: Callable[[int], int], src: str,
                 exclude: frozenset[str] = frozenset(), clamp_mtime: int | None = None) -> None:
        self.out = out
        self.exclude = exclude
        self.clamp_mtime = clamp_mtime
        self.owners = owners
        self.overlay_upper = overlay_upper
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.src = src
        self.arcname = ""  # write_named's name for src, when it is not src's own
        self.links: dict[tuple[int, int], str] = {}  # (dev, ino) -> first name written
        self.entries = 0
        self.size = 0
        self.whiteouts = 0
        self.opaque_dirs = 0
        self.sockets: list[str] = []

    def write(self, data: bytes) -> None:
        n = self.out.write(data)
        # Raw files and pipes may take less than offered; buffered ones (and writers that
        # return None, like hashing adapters) take everything.
        if n is not None and n < len(data):
            view = memoryview(data)[n:]
            while view:
                n = self.out.write(view)
                view = view[len(view) if n is None else n:]
        self.size += len(data)

    def end(self) -> TarStats:
        self.write(bytes(2 * _BLOCK))
        return TarStats(self.entries, self.size, self.whiteouts, self.opaque_dirs, tuple(self.sockets))

    def _header(self, ti: tarfile.TarInfo) -> None:
        ti.uname = ti.gname = ""
        if self.clamp_mtime is not None and ti.mtime > self.clamp_mtime:
            ti.mtime = self.clamp_mtime
        self.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.entries += 1

    def _fail(self, path: str, e: OSError) -> RlError:
        return RlError(f"cannot archive {self.shown(path)}: {e.strerror or e}")

    def shown(self, path: str) -> str:
        """The file an entry name stands for, for messages."""
        if self.arcname and (path == self.arcname or path.startswith(self.arcname + "/")):
            return (self.src.rstrip("/") + path[len(self.arcname):]) or "/"
        return os.path.join(self.src, path)

    def walk(self, root_fd: int, prefix: str = "") -> None:
        """Depth first, parents before children, each directory's entries in byte order; names
        start with `prefix`."""
        stack: list[tuple[int, str, Iterator[_Child]]] = []
        try:
            stack.append((root_fd, prefix, iter(self._children(root_fd, prefix, os.fstat(root_fd).st_mtime_ns))))
            while stack:
                dfd, prefix, it = stack[-1]
                child = next(it, None)
                if child is None:
                    stack.pop()
                    if dfd != root_fd:
                        os.close(dfd)
                    continue
                path = prefix + child.name
                if path in self.exclude:
                    continue
                try:
                    sub_fd = self._entry(dfd, path, child)
                except OSError as e:
                    raise self._fail(path, e) from e
                if sub_fd is not None:
                    # On the stack before listing it, so that a failure still closes it.
                    stack.append((sub_fd, path + "/", iter(())))
                    stack[-1] = (sub_fd, path + "/", iter(self._children(sub_fd, path + "/", child.st.st_mtime_ns)))
        finally:
            for dfd, _, _ in stack:
                if dfd != root_fd:
                    os.close(dfd)

    def _children(self, dfd: int, prefix: str, mtime_ns: int) -> list[_Child]:
        try:
            found = []
            with os.scandir(dfd) as it:
                for e in it:
                    try:
                        found.append((e.name, e.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        pass  # removed since it was listed, as if it had been before
            opaque = self.overlay_upper and upperfmt.is_opaque(dfd)
        except OSError as e:
            raise self._fail(prefix, e) from e
        found.sort(key=lambda c: os.fsencode(c[0]))
        if not self.overlay_upper:
            return [_Child(name, st) for name, st in found]
        whiteouts: dict[str, _Child] = {}
        others = []
        for name, st in found:
            if upperfmt.is_whiteout(st):
                whiteouts.setdefault(name, _Child(name, st, name, mtime_ns))
            elif name == upperfmt.OPAQUE_MARKER and stat.S_ISREG(st.st_mode):
                opaque = True  # fuse-overlayfs's marker where it cannot set xattrs
            elif stat.S_ISREG(st.st_mode) and (target := upperfmt.whiteout_target(name)) is not None:
                whiteouts.setdefault(target, _Child(name, st, target, mtime_ns))
            else:
                others.append(_Child(name, st))
        if opaque:
            self._marker(prefix + upperfmt.OPAQUE_MARKER, mtime_ns)
            self.opaque_dirs += 1
        # OCI: whiteouts come before their siblings.
        ordered = sorted(whiteouts.values(), key=lambda c: os.fsencode(upperfmt.WHITEOUT_PREFIX + (c.whiteout or "")))
        return ordered + others

    def _marker(self, name: str, mtime_ns: int) -> None:
        ti = tarfile.TarInfo(name)
        ti.mode = _MARKER_MODE
        ti.mtime = mtime_ns // 1_000_000_000
        self._header(ti)

    def _owner(self, st: os.stat_result, override: upperfmt.OverrideStat | None) -> tuple[int, int, int]:
        if override is not None:
            return override.uid, override.gid, override.perms
        return self.uid_map(st.st_uid), self.gid_map(st.st_gid), stat.S_IMODE(st.st_mode)

    def _xattrs(self, fd: int, path: str) -> tuple[upperfmt.OverrideStat | None, dict[str, str]]:
        """The override (in xattr mode) and the other xattrs as PAX records of a file or dir."""
        override = None
        pax: dict[str, str] = {}
        for name in os.listxattr(fd):
            if name.startswith(upperfmt.PRIVATE_XATTR_PREFIXES) or name in _HOST_XATTRS:
                if name == upperfmt.OVERRIDE_XATTR and self.owners == "xattr":
                    try:
                        override = upperfmt.decode_override(os.getxattr(fd, name))
                    except ValueError as e:
                        raise RlError(f"cannot archive {self.shown(path)}: {e}") from e
                continue
            # tarfile writes PAX values with surrogates as raw bytes (hdrcharset=BINARY).
            pax["SCHILY.xattr." + name] = os.getxattr(fd, name).decode("utf-8", "surrogateescape")
        return override, pax

    def _entry(self, dfd: int, path: str, child: _Child) -> int | None:
        """Write one entry; return the open fd of a directory to descend into."""
        st = child.st
        mtime = st.st_mtime_ns // 1_000_000_000
        if child.whiteout is not None:
            head, _, _ = path.rpartition("/")
            self._marker((head + "/" if head else "") + upperfmt.WHITEOUT_PREFIX + child.whiteout,
                         child.marker_mtime_ns)
            self.whiteouts += 1
            return None
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFSOCK:
            self.sockets.append(path)
            return None
        ti = tarfile.TarInfo(path)
        ti.mtime = mtime
        if kind == stat.S_IFDIR:
            fd = os.open(child.name, _DIR_FLAGS, dir_fd=dfd)
            try:
                override, ti.pax_headers = self._xattrs(fd, path)
                ti.uid, ti.gid, ti.mode = self._owner(st, override)
                ti.type = tarfile.DIRTYPE
                self._header(ti)
            except BaseException:
                os.close(fd)
                raise
            return fd
        if st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first
                ti.uid, ti.gid, ti.mode = self._owner(st, None)
                self._header(ti)
                return None
        if kind == stat.S_IFREG:
            fd = os.open(child.name, _FILE_FLAGS, dir_fd=dfd)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (child.st.st_dev, child.st.st_ino):
                    raise RlError(f"cannot archive {self.shown(path)}: it was replaced while being read")
                override, ti.pax_headers = self._xattrs(fd, path)
                ti.uid, ti.gid, ti.mode = self._owner(st, override)
                ti.size = st.st_size
                self._header(ti)
                self._data(fd, st.st_size, path)
            finally:
                os.close(fd)
            return None
        ti.uid, ti.gid, ti.mode = self._owner(st, None)
        if kind == stat.S_IFLNK:
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(child.name, dir_fd=dfd)
        elif kind == stat.S_IFIFO:
            ti.type = tarfile.FIFOTYPE
        else:
            ti.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self._header(ti)
        return None

    def _data(self, fd: int, size: int, path: str) -> None:
        left = size
        while left:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                raise RlError(f"cannot archive {self.shown(path)}: it shrank while being read")
            self.write(chunk)
            left -= len(chunk)
        if size % _BLOCK:
            self.write(bytes(_BLOCK - size % _BLOCK))
