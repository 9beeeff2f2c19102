"""Secure, exact extraction of one OCI layer tar into one overlay lower directory, and of an
`rl cp` stream into an existing directory.

Every name is resolved one component at a time from a directory fd with O_NOFOLLOW and every
entry is made with O_EXCL (or mkdir, mkfifo, symlink, link, which never follow), so no entry can
reach outside the target, however hostile the tar or whoever swaps files in the target meanwhile.
A layer comes out in the overlay upper format of `fuse_overlay.upperfmt` (whiteouts, opaque
directories, owners in xattrs in single-id mode).
"""
from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections import OrderedDict
from typing import IO, BinaryIO, Literal, Self, cast

from fuse_overlay import upperfmt
from rootless.errors import ArchiveCorrupt, LayerError, LayerEscape
from rootless.store.trees import rmtree_at
from rootless.values import valueclass

Owners = Literal["real", "xattr"]
MergeOwners = Literal["real", "root", "self"]
"""Owners of what `extract_into` makes: the tar's ids; the extracting process's, which is root of
the container's namespace; the extracting user's, with set-id bits dropped."""

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FIFO_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directory fds kept open between entries: tar order is depth-first, so a small LRU saves almost
# every walk while staying far below the usual 1024-fd limit.
_MAX_OPEN_DIRS = 128
# No real image has longer names (a container could not open them by path), and the limit bounds
# the depth of the trees a hostile layer can make.
_MAX_NAME_BYTES = 4095
PAX_XATTR = "SCHILY.xattr."
# What setxattr answers for an xattr this kernel, filesystem or user may not set (trusted.* without
# privilege, unknown namespaces, values too big for the filesystem): skipped, not fatal.
_XATTR_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL,
                            errno.E2BIG, errno.ERANGE, errno.ENOSPC})


@valueclass
class ExtractResult:
    entries: int
    """Tar members read, whatever became of them."""
    skipped_devices: tuple[str, ...]
    """Character and block devices, which are never created (the caller warns)."""
    whiteouts: int
    opaque_dirs: int
    skipped_xattrs: tuple[str, ...]
    """Names of xattrs the kernel refused (e.g. trusted.*) or that cannot be set on that file type."""
    overridden: int
    """Entries whose owner or mode went into user.containers.override_stat."""


@valueclass
class _Meta:
    uid: int
    gid: int
    mode: int  # permission bits with setuid, setgid and sticky
    mtime_ns: int | None
    xattrs: tuple[tuple[str, bytes], ...] = ()


# A parent directory the tar does not list: made like `mkdir -p` as root would.
_IMPLICIT_DIR = _Meta(0, 0, 0o755, None)


class _Corrupt(Exception):
    """A tar header that is damaged or cut short (tarfile would silently stop reading there)."""


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose reader tells a proper end of archive from a damaged or missing one.

    tarfile ends the member list quietly at a bad checksum or a short header after the first
    member; a layer cut short must not unpack as if it were complete.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        # A zero block, or none at all: the end of the archive. Go's archive/tar, which writes
        # most layers and reads them for Docker and podman, makes the two zero blocks optional
        # (umoci writes none): a layer's digest, not its trailer, tells whether it is whole. An
        # empty stream is still no tar (tarfile says so at offset 0).
        except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):  # type: ignore[attr-defined]  # not in typeshed
            raise
        except tarfile.HeaderError as e:
            raise _Corrupt(str(e) or type(e).__name__) from e


# Everything tarfile raises on bytes that are not a well-formed tar.
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError, _Corrupt)


def _corrupt(e: BaseException, noun: str = "layer") -> LayerError:
    return ArchiveCorrupt(f"the {noun} is corrupt or truncated: {e or type(e).__name__}")


def extract_layer(stream: BinaryIO | IO[bytes], dest: str | os.PathLike[str], *,
                  owners: Owners) -> ExtractResult:
    """Unpack the uncompressed layer tar `stream` (read once, front to back) into the empty `dest`.

    owners="real": chown to the tar's ids (run as root of a user namespace with the full subuid
    range; ids outside it go to user.containers.override_stat). owners="xattr": no chown, ids and
    any mode that had to change on disk go to that xattr; files stay u+rw and directories u+rwx.
    Raises LayerEscape for entries aiming outside `dest`, LayerError for anything else wrong.
    """
    if owners not in ("real", "xattr"):
        raise ValueError(f"owners must be 'real' or 'xattr', not {owners!r}")
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extractor(root_fd, owners)
    try:
        with os.scandir(root_fd) as it:
            if next(it, None) is not None:
                raise LayerError(f"cannot unpack a layer into {os.fspath(dest)}: the directory is not empty")
        _feed(stream, ex)
    finally:
        ex.close()
    return ex.result()


def extract_into(stream: BinaryIO | IO[bytes], dest_fd: int, *, owners: MergeOwners) -> None:
    """Unpack the tar `stream` into the existing directory `dest_fd`, merged with what is there,
    as `rl cp` does: a directory over a directory merges, a file replaces what is in its way
    (never a directory, never written through). Names are plain names (no whiteouts), xattrs and
    the entry for the destination itself are ignored, and device nodes are refused. `dest_fd`
    stays open. Raises LayerEscape for entries aiming outside, LayerError for anything else.
    """
    ex = _Extractor(os.dup(dest_fd), owners, merge=True)
    try:
        _feed(stream, ex)
    finally:
        ex.close()


def _feed(stream: BinaryIO | IO[bytes], ex: _Extractor) -> None:
    reader = _ForwardReader(stream)
    try:
        tf = tarfile.open(fileobj=cast(IO[bytes], reader), mode="r:", tarinfo=_StrictTarInfo,
                          encoding="utf-8", errors="surrogateescape")
    except _TAR_ERRORS as e:
        raise _corrupt(e, ex.noun) from e
    while True:
        try:
            ti = tf.next()
        except _TAR_ERRORS as e:
            raise _corrupt(e, ex.noun) from e
        if ti is None:
            break
        # Members are read once; keeping them all would cost ~1 KB per entry.
        tf.members.clear()  # type: ignore[attr-defined]  # the list TarFile.next() appends to
        ex.add(tf, reader, ti)
        try:
            if reader.ended_before(tf.offset, _data_end(ti, tf.offset)):
                break
        except _Corrupt as e:
            raise _corrupt(e, ex.noun) from e
    ex.finish()


def _data_end(ti: tarfile.TarInfo, next_header: int) -> int:
    """Where the data of member `ti` ends; its padding runs to `next_header`."""
    if ti.issparse():
        return next_header  # tarfile keeps no stored size for these; GNU tar, their writer, pads
    return min(ti.offset_data + ti.size, next_header)  # links, directories...: no data blocks


def _split(name: str, entry: str, noun: str = "layer") -> list[str]:
    """The components of a tar name inside the layer: `/` and `.` dropped, `..` applied."""
    if len(name) > _MAX_NAME_BYTES // 4 and len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        raise LayerError(f"{noun} entry {entry[:80]!r}...: the name is longer than {_MAX_NAME_BYTES} bytes")
    parts: list[str] = []
    for c in name.split("/"):
        if c == "" or c == ".":
            continue
        if c == "..":
            if not parts:
                raise LayerEscape(f"{noun} entry {entry!r} points outside the {noun}")
            parts.pop()
        else:
            parts.append(c)
    return parts


def _mtime_ns(mtime: float) -> int:
    return mtime * 1_000_000_000 if isinstance(mtime, int) else round(mtime * 1_000_000_000)


def _meta(ti: tarfile.TarInfo) -> _Meta:
    xattrs = tuple(
        (k[len(PAX_XATTR):], v.encode("utf-8", "surrogateescape"))
        for k, v in ti.pax_headers.items()
        if k.startswith(PAX_XATTR) and not k[len(PAX_XATTR):].startswith(upperfmt.PRIVATE_XATTR_PREFIXES)
    )
    return _Meta(ti.uid, ti.gid, ti.mode & 0o7777, _mtime_ns(ti.mtime), xattrs)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class _Extractor:
    def __init__(self, root_fd: int, owners: Owners | MergeOwners, *, merge: bool = False) -> None:
        self.root_fd = root_fd
        self.owners = owners
        # Merging (rl cp) into a directory that holds more than the tar: no whiteouts, and no
        # owners or modes kept in xattrs (the destination is not a layer).
        self.merge = merge
        self.noun = "archive" if merge else "layer"
        self.fds: OrderedDict[str, int] = OrderedDict()  # "a/b" -> fd of that directory
        # Directory attributes wait until the end: creating children changes mtimes, and a
        # mode like 000 would lock us out of the rest of the layer.
        self.dirs: dict[str, _Meta] = {}
        self.root_meta: _Meta | None = None
        # Whiteouts wait too: one hides NAME only if the layer itself has no NAME, wherever
        # NAME comes in the tar. Keyed (parent, NAME); a dict keeps tar order and drops repeats.
        self.whiteouts: dict[tuple[str, str], None] = {}
        self.opaque: set[str] = set()
        self.entries = 0
        self.devices: list[str] = []
        self.skipped_xattrs: set[str] = set()
        self.overridden = 0
        self.whiteouts_made = 0

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        os.close(self.root_fd)

    def result(self) -> ExtractResult:
        return ExtractResult(self.entries, tuple(self.devices), self.whiteouts_made, len(self.opaque),
                             tuple(sorted(self.skipped_xattrs)), self.overridden)

    # -- walking -----------------------------------------------------------------------------

    def _dir(self, key: str, entry: str, *, create: bool) -> int:
        """The fd of directory `key` ("" is the root), never following a symlink on the way."""
        if not key:
            return self.root_fd
        fd = self.fds.get(key)
        if fd is not None:
            self.fds.move_to_end(key)
            return fd
        cur, start, cut = self.root_fd, 0, len(key)
        while (cut := key.rfind("/", 0, cut)) >= 0:
            found = self.fds.get(key[:cut])
            if found is not None:
                cur, start = found, cut + 1
                break
        while True:
            end = key.find("/", start)
            sub = key if end < 0 else key[:end]
            cur = self._open_child(cur, sub[start:], sub, entry, create)
            if end < 0:
                return cur
            start = end + 1

    def _open_child(self, parent_fd: int, name: str, key: str, entry: str, create: bool) -> int:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise LayerError(f"{self.noun} entry {entry!r} refers to {key!r}, "
                                 f"which is not in this {self.noun}")
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            self.dirs[key] = _IMPLICIT_DIR
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            what = "a symlink" if stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode) else "not a directory"
            raise LayerEscape(f"{self.noun} entry {entry!r} goes through {key!r}, which is {what}") from e
        self.fds[key] = fd
        if len(self.fds) > _MAX_OPEN_DIRS:
            # The oldest is never `parent_fd`'s only user: callers use just the fd returned.
            os.close(self.fds.popitem(last=False)[1])
        return fd

    # -- entries -----------------------------------------------------------------------------

    def add(self, tf: tarfile.TarFile, reader: _ForwardReader, ti: tarfile.TarInfo) -> None:
        self.entries += 1
        entry = ti.name
        parts = _split(entry, entry, self.noun)
        if not parts:
            if not ti.isdir():
                raise LayerError(f"{self.noun} entry {entry!r} replaces the {self.noun} root with a non-directory")
            if not self.merge:  # the destination of a copy keeps its own attributes
                self.root_meta = _meta(ti)
            return
        base = parts[-1]
        for c in parts[:-1]:
            if c.startswith(upperfmt.WHITEOUT_PREFIX) and not self.merge:
                if c.startswith(upperfmt.AUFS_META_PREFIX):
                    return  # inside aufs bookkeeping (.wh..wh.plnk/...), which is not content
                raise LayerError(f"{self.noun} entry {entry!r} lies under a whiteout")
        key = "/".join(parts)
        pkey = key[:len(key) - len(base) - 1] if len(parts) > 1 else ""
        try:
            if base.startswith(upperfmt.WHITEOUT_PREFIX) and not self.merge:
                self._whiteout(entry, pkey, base)
            elif ti.ischr() or ti.isblk():
                if self.merge:
                    raise LayerError(f"refusing the {self.noun} entry {entry!r}: it is a device node")
                self.devices.append(key)
            elif ti.islnk():
                self._link(entry, pkey, base, key, ti.linkname)
            else:
                pfd = self._dir(pkey, entry, create=True)
                if ti.isdir():
                    self._mkdir(pfd, base, key, ti)
                elif ti.issym():
                    self._symlink(pfd, base, key, ti)
                elif ti.isfifo():
                    self._fifo(pfd, base, key, ti)
                else:
                    # Regular, contiguous, sparse, and (as POSIX says) unknown types.
                    self._file(pfd, base, key, tf, reader, ti)
        except (OSError, ValueError, OverflowError) as e:
            raise LayerError(f"cannot unpack {self.noun} entry {entry!r}: {_why(e)}") from e

    def _replace(self, pfd: int, base: str, key: str) -> None:
        """Remove what an earlier entry of this layer put at `key`, a whole tree if a directory."""
        st = os.lstat(base, dir_fd=pfd)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=pfd)
            return
        if self.merge:
            raise LayerError(f"cannot overwrite the directory {key} with a non-directory")
        rmtree_at(pfd, base)
        prefix = key + "/"
        for k in [k for k in self.fds if k == key or k.startswith(prefix)]:
            os.close(self.fds.pop(k))
        for k in [k for k in self.dirs if k == key or k.startswith(prefix)]:
            del self.dirs[k]
        self.opaque = {k for k in self.opaque if not (k == key or k.startswith(prefix))}
        self.whiteouts = {w: None for w in self.whiteouts if not (w[0] == key or w[0].startswith(prefix))}

    def _mkdir(self, pfd: int, base: str, key: str, ti: tarfile.TarInfo) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            # A directory over a directory only changes its attributes.
            if not stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode):
                self._replace(pfd, base, key)
                os.mkdir(base, 0o700, dir_fd=pfd)
        self.dirs[key] = _meta(ti)

    def _file(self, pfd: int, base: str, key: str, tf: tarfile.TarFile, reader: _ForwardReader,
              ti: tarfile.TarInfo) -> None:
        try:
            fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, base, key)
            fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            try:
                if ti.issparse():
                    src = tf.extractfile(ti)
                    assert src is not None  # only None for links, which never get here
                    _copy_sparse(src, fd, ti)
                else:
                    # Straight from the stream: tarfile's file object adds a copy and a
                    # Python call per 10 KiB, which doubles the time of a big layer.
                    reader.seek(ti.offset_data)
                    _copy(reader, fd, ti.size)
            except _TAR_ERRORS as e:
                raise _corrupt(e, self.noun) from e
            self._apply_fd(fd, _meta(ti), stat.S_IFREG)
        finally:
            os.close(fd)

    def _symlink(self, pfd: int, base: str, key: str, ti: tarfile.TarInfo) -> None:
        # The target is stored as it is: absolute ones resolve inside the container later.
        try:
            os.symlink(ti.linkname, base, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, base, key)
            os.symlink(ti.linkname, base, dir_fd=pfd)
        self._apply_path(pfd, base, key, _meta(ti), stat.S_IFLNK)

    def _fifo(self, pfd: int, base: str, key: str, ti: tarfile.TarInfo) -> None:
        try:
            os.mkfifo(base, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, base, key)
            os.mkfifo(base, 0o600, dir_fd=pfd)
        self._apply_path(pfd, base, key, _meta(ti), stat.S_IFIFO)

    def _link(self, entry: str, pkey: str, base: str, key: str, linkname: str) -> None:
        target = _split(linkname, entry, self.noun)
        tkey = "/".join(target)
        if not target or tkey == key:
            raise LayerError(f"{self.noun} entry {entry!r} is a hard link to {linkname!r}, which cannot be linked")
        tbase = target[-1]
        # Walking to the link's own parent may evict the target's directory from the cache.
        tpfd = os.dup(self._dir(tkey[:len(tkey) - len(tbase) - 1] if len(target) > 1 else "", entry,
                                create=False))
        try:
            try:
                tst = os.lstat(tbase, dir_fd=tpfd)
            except FileNotFoundError:
                raise LayerError(f"{self.noun} entry {entry!r} is a hard link to {linkname!r}, "
                                 f"which is not in this {self.noun}")
            if stat.S_ISDIR(tst.st_mode):
                raise LayerError(f"{self.noun} entry {entry!r} is a hard link to the directory {linkname!r}")
            pfd = self._dir(pkey, entry, create=True)
            try:
                os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileExistsError:
                self._replace(pfd, base, key)
                os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tpfd)

    def _whiteout(self, entry: str, pkey: str, base: str) -> None:
        if base == upperfmt.OPAQUE_MARKER:
            self._dir(pkey, entry, create=True)
            self.opaque.add(pkey)
            return
        if base.startswith(upperfmt.AUFS_META_PREFIX):
            return
        target = upperfmt.whiteout_target(base)
        if target is None:
            raise LayerError(f"{self.noun} entry {entry!r} is not a valid whiteout")
        self._dir(pkey, entry, create=True)
        self.whiteouts[(pkey, target)] = None

    # -- attributes --------------------------------------------------------------------------

    def _apply_fd(self, fd: int, meta: _Meta, kind: int) -> None:
        """Owner, xattrs, mode and mtime of a regular file or directory, in that order: chown
        clears setuid and security.capability, and user xattrs need write permission."""
        mode = meta.mode
        override = False
        if self.owners == "real":
            disk_mode = mode
            # Files and directories we create already belong to root of the namespace.
            if meta.uid != 0 or meta.gid != 0:
                try:
                    os.fchown(fd, meta.uid, meta.gid)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    # The id is outside the namespace's mapped range: a copy keeps ours.
                    override = not self.merge
        elif self.owners == "xattr":
            disk_mode = mode | (0o700 if kind == stat.S_IFDIR else 0o600)
            override = meta.uid != 0 or meta.gid != 0 or disk_mode != mode
        else:
            disk_mode = _merged_mode(self.owners, mode)
        for name, value in () if self.merge else meta.xattrs:
            try:
                os.setxattr(fd, name, value)
            except (OSError, ValueError) as e:
                if isinstance(e, OSError) and e.errno not in _XATTR_REFUSED:
                    raise
                self.skipped_xattrs.add(name)
        if override:
            os.setxattr(fd, upperfmt.OVERRIDE_XATTR, upperfmt.encode_override(meta.uid, meta.gid, kind | mode))
            self.overridden += 1
        os.fchmod(fd, disk_mode)
        if meta.mtime_ns is not None:
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))

    def _apply_path(self, pfd: int, base: str, key: str, meta: _Meta, kind: int) -> None:
        """Attributes of a symlink or fifo: neither can hold user xattrs, so owners that cannot
        be real are lost, and so are the tar's xattrs."""
        self.skipped_xattrs.update(name for name, _ in meta.xattrs)
        if self.owners == "real" and (meta.uid != 0 or meta.gid != 0):
            try:
                os.chown(base, meta.uid, meta.gid, dir_fd=pfd, follow_symlinks=False)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
        if kind != stat.S_IFLNK:
            disk_mode = meta.mode | 0o600 if self.owners == "xattr" else _merged_mode(self.owners, meta.mode)
            # fchmodat cannot refuse a symlink without /proc (the copy helper has none), and the
            # name may have been swapped for one: the FIFO itself is opened, which O_NONBLOCK
            # keeps from waiting for a writer.
            fd = os.open(base, _FIFO_FLAGS, dir_fd=pfd)
            try:
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    raise LayerError(f"{self.noun} entry {key!r} was replaced while it was unpacked")
                os.fchmod(fd, disk_mode)
            finally:
                os.close(fd)
        if meta.mtime_ns is not None:
            os.utime(base, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        try:
            for pkey, name in self.whiteouts:
                pfd = self._dir(pkey, f"{pkey}/{upperfmt.WHITEOUT_PREFIX}{name}".lstrip("/"), create=False)
                try:
                    os.lstat(name, dir_fd=pfd)
                    continue  # this layer has NAME itself: a whiteout hides lower layers only
                except FileNotFoundError:
                    pass
                upperfmt.make_whiteout(pfd, name)
                self.whiteouts_made += 1
            for key in self.opaque:
                upperfmt.set_opaque(self._dir(key, key, create=False))
            # Deepest first, so that no directory is closed to us before its children are done.
            for key in sorted(self.dirs, key=lambda k: k.count("/"), reverse=True):
                self._apply_fd(self._dir(key, key, create=False), self.dirs[key], stat.S_IFDIR)
            if self.root_meta is not None:
                self._apply_fd(self.root_fd, self.root_meta, stat.S_IFDIR)
            if self.owners == "xattr" or self.overridden:
                # fuse-overlayfs reads override xattrs in a layer only if its root has one.
                root = self.root_meta or _IMPLICIT_DIR
                os.setxattr(self.root_fd, upperfmt.OVERRIDE_XATTR,
                            upperfmt.encode_override(root.uid, root.gid, stat.S_IFDIR | root.mode))
        except (OSError, ValueError, OverflowError) as e:
            raise LayerError(f"cannot finish unpacking the {self.noun}: {_why(e)}") from e


def _merged_mode(owners: Owners | MergeOwners, mode: int) -> int:
    """A set-id bit on a file that becomes the extracting user's would run the archive's code
    as that user (or as root): it is kept only with owners the archive's author had."""
    return mode & ~(stat.S_ISUID | stat.S_ISGID) if owners == "self" else mode


class _ForwardReader:
    """The seekable file tarfile's member-by-member mode wants, over a stream read only once.

    Seeking forward skips data; tarfile never seeks back when members are read in order. Reads
    return all that was asked for unless the stream ends, as tarfile expects.
    """

    def __init__(self, stream: BinaryIO | IO[bytes]) -> None:
        self._stream = stream
        self._pos = 0

    def seekable(self) -> bool:
        return True  # forward only, which is all tarfile does with members read in order

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self._stream.read()
            self._pos += len(data)
            return data
        chunks = []
        want = size
        while want > 0:
            chunk = self._stream.read(want)
            if not chunk:
                break
            chunks.append(chunk)
            want -= len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            pos += self._pos
        elif whence != os.SEEK_SET:
            raise _Corrupt("cannot seek from the end of a stream")
        if pos < self._pos:
            raise _Corrupt("tar members out of order")
        while pos > self._pos and self.read(min(pos - self._pos, _CHUNK)):
            pass
        return self._pos

    def ended_before(self, pos: int, data_end: int) -> bool:
        """Skip to `pos`, the next header; whether the stream ended on the way, in the padding
        after the data that ends at `data_end` (which Go's archive/tar takes for the end of the
        archive too). Data cut short is an error."""
        self.seek(pos)
        if self._pos < data_end:
            raise _Corrupt("unexpected end of data")
        return self._pos < pos


def _copy(src: IO[bytes] | _ForwardReader, fd: int, size: int) -> None:
    while size > 0:
        chunk = src.read(min(size, _CHUNK))
        if not chunk:
            raise _Corrupt("unexpected end of data")
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        size -= len(chunk)


def _copy_sparse(src: IO[bytes], fd: int, ti: tarfile.TarInfo) -> None:
    """Write only the data regions, so the holes stay holes."""
    sparse: list[tuple[int, int]] = ti.sparse  # type: ignore[assignment]  # typeshed says int
    # tarfile's reader loops forever on regions that overlap or run past the end: check first.
    # Empty regions carry nothing (GNU tar's old format ends its map with one at offset 0).
    regions = [(offset, size) for offset, size in sparse if size]
    end = 0
    for offset, size in regions:
        if offset < end or size < 0 or offset + size > ti.size:
            raise _Corrupt(f"bad sparse map for {ti.name!r}")
        end = offset + size
    for offset, size in regions:
        src.seek(offset)
        os.lseek(fd, offset, os.SEEK_SET)
        _copy(src, fd, size)
    os.ftruncate(fd, ti.size)


