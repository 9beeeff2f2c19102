"""The `vfs` storage driver's core: a container's root filesystem as a full copy of its image.

`merge_layers` writes, as real files, exactly what the kernel overlay shows of the layers mounted
as lowerdirs (the rules of `fuse_overlay.merge`). The walk is top-down: for each merged directory
every contributing layer is listed once and each name is copied from the one layer that shows it,
so nothing that an upper layer hides or replaces is ever copied.

Every name is opened relative to a directory fd with O_NOFOLLOW and symlinks are recreated, never
followed, so a hostile layer cannot make the copy read or write outside the layers and `dest`.
"""
from __future__ import annotations

import errno
import os
import resource
import stat
from collections.abc import Sequence

from fuse_overlay import merge
from fuse_overlay.copyup import copy_data
from rootless.errors import StoreError
from rootless.values import field, valueclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The overlay's own markers describe the storage, not the image; everything else a user may read
# and set (user.*, including the owners kept in user.containers.override_stat) is content, and so
# are file capabilities, which the kernel overlay shows too (e.g. ping's cap_net_raw).
_MARKER_XATTR_PREFIXES = ("user.overlay.", "user.fuseoverlayfs.")
_CAPABILITY_XATTR = "security.capability"
# setxattr's answers for an xattr this kernel, filesystem or user may not set: skipped, not fatal.
_XATTR_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL,
                            errno.E2BIG, errno.ERANGE, errno.ENOSPC})


@valueclass
class MergeStats:
    files: int
    """Regular files copied (hard links to one already copied are counted in `hard_links`)."""
    directories: int
    """Directories made below `dest`."""
    symlinks: int
    special_files: int
    """Fifos and sockets."""
    hard_links: int
    """Names linked to a file copied earlier, as they are in their layer."""
    bytes_copied: int
    """File data copied; the holes of sparse files are not."""
    whiteouts: int
    """Names that a whiteout hides in the merged view (whiteouts are never copied)."""
    opaque_dirs: int
    """Opaque directories that hid a lower layer's directory."""
    owners_not_kept: int
    """Entries whose owner could not be set (single-id mode): they belong to the user."""
    skipped_xattrs: tuple[str, ...]
    """Names of xattrs the kernel refused to set here."""
    skipped_devices: tuple[str, ...]
    """Paths of device nodes, which no layer should hold (the extractor skips them)."""


@valueclass(frozen=False)
class _Frame:
    """One merged directory being copied, with the fds it still needs."""

    path: str  # relative to dest, "" or ending with "/"
    dest_fd: int
    src: dict[int, int] = field(default_factory=dict)  # layer index -> fd of this directory in it
    pending: list[tuple[str, merge.Merging]] = field(default_factory=list)
    st: os.stat_result | None = None  # the topmost layer's directory, whose attributes it takes
    xattrs: list[tuple[str, bytes]] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.src.values():
            os.close(fd)
        self.src.clear()
        os.close(self.dest_fd)


def merge_layers(layers: Sequence[str | os.PathLike[str] | int], dest: str | os.PathLike[str]) -> MergeStats:
    """Copy the merged view of `layers` (unpacked layer directories, lowest first) into the empty
    directory `dest`, keeping data, modes, owners, times, xattrs, symlinks and hard links.

    A layer may be given as an open directory descriptor (left open), for a directory inside the
    layers found without resolving the container's names on the host.

    Run it where the layers' owners can be given to new files (inside the user namespace when
    there is a subordinate range); where chown is refused, files keep the caller's owner.
    Raises StoreError if a layer cannot be read or `dest` written.
    """
    if not layers:
        raise ValueError("merge_layers needs at least one layer")
    _raise_fd_limit()
    # Layer index 0 is the top layer: the order in which lookups see them.
    tops_first = [p if isinstance(p, int) else os.fspath(p) for p in reversed(layers)]
    merger = _Merger()
    root = _Frame("", -1)
    try:
        try:
            root.dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for i, path in enumerate(tops_first):
                root.src[i] = (os.dup(path) if isinstance(path, int)
                               else os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            with os.scandir(root.dest_fd) as it:
                if next(it, None) is not None:
                    raise StoreError(f"cannot copy the image's layers into {os.fspath(dest)}: "
                                     "the directory is not empty")
        except OSError as e:
            raise StoreError(f"cannot copy the image's layers into {os.fspath(dest)}: {e.strerror}") from e
        merger.run(root)
    finally:
        if root.dest_fd >= 0:
            root.close()
        else:
            for fd in root.src.values():
                os.close(fd)
    return merger.stats()


def _raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one, as the Go runtime does for podman: each
    level of a deep directory holds an fd per layer that has it, which 1024 fds may not cover."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Merger:
    def __init__(self) -> None:
        self.root_fd = -1
        # (st_dev, st_ino) of a layer file with several names -> the path of its copy in dest
        self.links: dict[tuple[int, int], str] = {}
        self.files = self.directories = self.symlinks = self.special_files = self.hard_links = 0
        self.bytes_copied = self.whiteouts = self.opaque_dirs = self.owners_not_kept = 0
        self.skipped_xattrs: set[str] = set()
        self.skipped_devices: list[str] = []

    def stats(self) -> MergeStats:
        return MergeStats(self.files, self.directories, self.symlinks, self.special_files, self.hard_links,
                          self.bytes_copied, self.whiteouts, self.opaque_dirs, self.owners_not_kept,
                          tuple(sorted(self.skipped_xattrs)), tuple(self.skipped_devices))

    def run(self, root: _Frame) -> None:
        """Depth first with an explicit stack: a hostile layer's depth is bounded by fds (see
        `_raise_fd_limit`), not by Python's recursion limit."""
        self.root_fd = root.dest_fd
        # The kernel ignores the opaque xattr on a layer's root: every layer's root merges.
        self._fill(root, [(i, fd) for i, fd in root.src.items()], None, check_opaque=False)
        stack = [root]
        try:
            while stack:
                frame = stack[-1]
                if frame.pending:
                    name, sub = frame.pending.pop()
                    stack.append(self._enter(frame, name, sub))
                else:
                    self._leave(frame)
                    stack.pop()
                    if stack:  # the root's fds belong to merge_layers
                        frame.close()
        finally:
            for frame in stack[1:]:
                frame.close()

    def _fail(self, path: str, e: OSError) -> StoreError:
        return StoreError(f"cannot copy /{path} of the image's layers: {e.strerror or e}")

    # -- directories -----------------------------------------------------------------------------

    def _enter(self, parent: _Frame, name: str, sub: merge.Merging) -> _Frame:
        path = parent.path + name
        try:
            os.mkdir(name, 0o700, dir_fd=parent.dest_fd)
            frame = _Frame(path + "/", os.open(name, _DIR_FLAGS, dir_fd=parent.dest_fd))
        except OSError as e:
            raise self._fail(path, e) from e
        self.directories += 1
        try:
            self._fill(frame, [(i, parent.src[i]) for i in sub.layers], name, check_opaque=True)
        except BaseException:
            frame.close()
            raise
        return frame

    def _fill(self, frame: _Frame, candidates: list[tuple[int, int]], name: str | None, *,
              check_opaque: bool) -> None:
        """List the directory in each layer that may contribute, top first, decide what each name
        shows, copy the non-directories and queue the subdirectories."""
        merged = merge.Listing()
        try:
            for n, (layer, parent_fd) in enumerate(candidates):
                fd = parent_fd if name is None else os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                frame.src[layer] = fd
                if n == 0:
                    frame.st = os.fstat(fd)
                    frame.xattrs = self._read_xattrs(fd)
                lowest = n == len(candidates) - 1
                if merged.add(layer, fd, may_be_opaque=check_opaque and not lowest):
                    self.opaque_dirs += 1
                    break
        except OSError as e:
            raise self._fail(frame.path, e) from e
        self.whiteouts += merged.hidden
        for child, shown in merged.names.items():
            if isinstance(shown, merge.Leaf):
                try:
                    self._copy(frame, child, shown)
                except OSError as e:
                    raise self._fail(frame.path + child, e) from e
            elif isinstance(shown, merge.Merging):
                frame.pending.append((child, shown))
        # Only the layers that have one of the subdirectories are needed any more (the layers'
        # roots stay open: merge_layers owns them).
        needed = {i for _, sub in frame.pending for i in sub.layers}
        if name is not None:
            for layer in [i for i in frame.src if i not in needed]:
                os.close(frame.src.pop(layer))

    def _leave(self, frame: _Frame) -> None:
        """The directory's own attributes, once its contents can no longer change its times."""
        assert frame.st is not None
        st = frame.st
        try:
            self._chown(frame.dest_fd, st)
            self._write_xattrs(frame.dest_fd, frame.xattrs)
            os.fchmod(frame.dest_fd, stat.S_IMODE(st.st_mode))
            os.utime(frame.dest_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError as e:
            raise self._fail(frame.path, e) from e

    # -- other entries ---------------------------------------------------------------------------

    def _copy(self, frame: _Frame, name: str, leaf: merge.Leaf) -> None:
        assert leaf.entry is not None
        st = leaf.entry.stat(follow_symlinks=False)
        dir_fd = frame.src[leaf.layer]
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFCHR or kind == stat.S_IFBLK:
            self.skipped_devices.append(frame.path + name)
            return
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                # Every parent on that path is a directory this merge made, so it leads nowhere else.
                os.link(first, name, src_dir_fd=self.root_fd, dst_dir_fd=frame.dest_fd, follow_symlinks=False)
                self.hard_links += 1
                return
            self.links[key] = frame.path + name
        if kind == stat.S_IFREG:
            self._copy_file(dir_fd, frame.dest_fd, name, st)
            self.files += 1
            return
        if kind == stat.S_IFLNK:
            os.symlink(os.readlink(name, dir_fd=dir_fd), name, dir_fd=frame.dest_fd)
            self.symlinks += 1
        else:
            os.mknod(name, kind | 0o600, dir_fd=frame.dest_fd)
            self.special_files += 1
        # Symlinks and special files cannot hold user xattrs.
        try:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=frame.dest_fd, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            self.owners_not_kept += 1
        if kind != stat.S_IFLNK:
            # Python cannot chmod without following symlinks here; this name is our new fifo.
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=frame.dest_fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=frame.dest_fd, follow_symlinks=False)

    def _copy_file(self, src_dir: int, dest_dir: int, name: str, st: os.stat_result) -> None:
        src = os.open(name, _READ_FLAGS, dir_fd=src_dir)
        try:
            dst = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dest_dir)
            try:
                if st.st_size:
                    self.bytes_copied += copy_data(src, dst, st.st_size)
                # chown clears setuid and file capabilities, and user xattrs need write permission.
                self._chown(dst, st)
                self._write_xattrs(dst, self._read_xattrs(src))
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    # -- attributes ------------------------------------------------------------------------------

    def _chown(self, fd: int, st: os.stat_result) -> None:
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError as e:
            # EINVAL: an id this namespace does not map; EPERM: no namespace, in single-id mode.
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise
            self.owners_not_kept += 1

    def _read_xattrs(self, fd: int) -> list[tuple[str, bytes]]:
        return [(name, os.getxattr(fd, name)) for name in os.listxattr(fd)
                if (name.startswith("user.") and not name.startswith(_MARKER_XATTR_PREFIXES))
                or name == _CAPABILITY_XATTR]

    def _write_xattrs(self, fd: int, xattrs: list[tuple[str, bytes]]) -> None:
        for name, value in xattrs:
            try:
                os.setxattr(fd, name, value)
            except OSError as e:
                if e.errno not in _XATTR_REFUSED:
                    raise
                self.skipped_xattrs.add(name)
