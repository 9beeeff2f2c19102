"""The FUSE request handlers: the overlay semantics on top of merge (lookup rules), inodes (the
kernel's view) and copyup.

Handlers run on the trio thread and call the real filesystem synchronously: every syscall here is
on the layers, never on our own mount, so nothing can wait on us. Every name in the layers is the
container's, so the layers are reached through descriptors (`fuse_overlay.beneath`), and a
deleted node through the descriptor kept when its last name went (`Node.fd`).
"""
from __future__ import annotations

import bisect
import errno
import functools
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3

import native
from fuse_overlay import HANDLER_BUG, beneath, copyup, merge, upperfmt
from fuse_overlay.inodes import Inodes, Node
from fuse_overlay.options import Config

# The kernel caches what lower entries look like this long: the lower layers never change under
# a mount, and every change through the mount goes through the kernel, which updates its cache.
LONG_TIMEOUT = 3600.0
# Upper entries change under open handles (a write from another handle changes st_blocks).
SHORT_TIMEOUT = 1.0

_NOT_THERE = (errno.ENOENT, errno.ENOTDIR)
_CAPS_XATTR = "security.capability"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
# The flags of an open the kernel passes on that open(2) of the real file takes: openat2
# refuses the others (an exec's __FMODE_EXEC) where open(2) ignored them.
_OPEN_FLAGS = (os.O_ACCMODE | os.O_TRUNC | os.O_APPEND | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC
               | os.O_DIRECT | os.O_NOATIME | os.O_LARGEFILE | os.O_NOCTTY)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _fuse_errors(fn: F) -> F:
    """OSError becomes its errno for the caller; anything else is a bug: one line, then EIO."""
    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except pyfuse3.FUSEError:
            raise
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from e
        except Exception as e:  # noqa: BLE001 - a request must never take the daemon down
            print(f"{HANDLER_BUG}{fn.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
            raise pyfuse3.FUSEError(errno.EIO) from e
    return wrapper  # type: ignore[return-value]


def _err(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


def _open_for_writeback(opener: Callable[[int], int], flags: int) -> int:
    """open(2) (by `opener`, given the flags) as the writeback cache needs it: the kernel reads
    pages of files opened for writing only, and it places appends itself."""
    flags = (flags & ~(os.O_APPEND | os.O_NOCTTY)) | os.O_CLOEXEC
    if flags & os.O_ACCMODE == os.O_WRONLY:
        try:
            return opener((flags & ~os.O_ACCMODE) | os.O_RDWR)
        except PermissionError:
            pass  # a write-only file of ours (mode 0200) on the host: no page reads then
    return opener(flags)


@dataclass
class _DirHandle:
    node: Node
    # The entries of this pass, by increasing cookie, and their cookies.
    names: list[str]
    cookies: list[int]


class _Cookies:
    """Directory offsets that name an entry, not a position: each name of a directory gets a
    number on first sight and keeps it while it exists. The kernel continues a listing it cached
    from one open through another, and new or removed entries must not shift what follows."""

    DOT, DOTDOT = 1, 2

    def __init__(self) -> None:
        self._of: dict[int, dict[str, int]] = {}
        self._last: dict[int, int] = {}

    def order(self, dir_ino: int, names: list[str]) -> tuple[list[str], list[int]]:
        cookies = self._of.setdefault(dir_ino, {})
        for name in names:
            if name not in cookies:
                # Past every number given so far, so a new entry comes after what a reader saw.
                cookies[name] = self._last[dir_ino] = self._last.get(dir_ino, self.DOTDOT) + 1
        ordered = sorted(names, key=cookies.__getitem__)
        return [".", "..", *ordered], [self.DOT, self.DOTDOT, *(cookies[n] for n in ordered)]

    def forget(self, dir_ino: int, name: str) -> None:
        """A removed name: a new entry of that name gets a new number (memory stays bounded
        by the names that exist)."""
        cookies = self._of.get(dir_ino)
        if cookies is not None:
            cookies.pop(name, None)

    def forget_dir(self, dir_ino: int) -> None:
        self._of.pop(dir_ino, None)
        self._last.pop(dir_ino, None)


class Overlay(pyfuse3.Operations):
    supports_dot_lookup = False
    # The kernel gathers small writes into pages and sends them in big requests.
    enable_writeback_cache = True

    def __init__(self, config: Config, workdir: str | None) -> None:
        super().__init__()
        self.config = config
        self.upper = config.upperdir
        # Descriptors of the layers' directories: roots[0] is the upper layer; a read-only
        # overlay has none (-1), and layer 0 is never used.
        self.roots: list[int] = [beneath.open_root(config.upperdir) if config.upperdir else -1]
        self.roots += [beneath.open_root(d) for d in config.lowerdirs]
        self.work_fd = beneath.open_root(workdir) if workdir is not None else None
        root_layers = tuple(range(0 if self.upper else 1, len(self.roots)))
        # A layer's root is never opaque, as with the kernel: every layer's root merges.
        self.inodes = Inodes(root_layers)
        native.fuse_flag(self.inodes.root.ino, native.FUSE_CACHE_DIR, self.inodes.root.layer > 0)
        self.files: dict[int, Node] = {}
        self.dirs: dict[int, _DirHandle] = {}
        self._lower_dirs: dict[int, dict[str, merge.Found]] = {}
        self._cookies = _Cookies()
        # Far above any file descriptor: file handles are the descriptors themselves.
        self._next_dir_fh = 1 << 40
        self.uid, self.gid = os.geteuid(), os.getegid()

    def close(self) -> None:
        """Close the descriptors of the layers and of deleted nodes (at unmount)."""
        for fd in {*self.roots, self.work_fd}:
            if fd is not None and fd >= 0:
                os.close(fd)
        for node in self.inodes.nodes.values():
            node.close()

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _opened(self, node: Node, flags: int = beneath.ANY_PATH) -> Iterator[int]:
        """A descriptor of the real file of `node` (by default O_PATH): the one kept for a
        deleted upper node (reopened for other flags), else a walk below its layer, which for
        a deleted lower node still leads to it (the lower layers never change). ENOENT for a
        deleted upper node nothing holds any more."""
        if not node.deleted or (node.fd is None and node.layer > 0):
            with beneath.opened(self.roots[node.layer], node.path(), flags) as fd:
                yield fd
        elif node.fd is None:
            raise _err(errno.ENOENT)
        elif flags == beneath.ANY_PATH:
            yield node.fd
        else:
            fd = os.open(beneath.proc(node.fd), flags | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)

    @contextmanager
    def _upper_dir(self, node: Node) -> Iterator[int]:
        """A descriptor of directory `node` in the upper layer, for the *at calls on its
        entries."""
        if node.deleted:
            raise _err(errno.ENOENT)
        with beneath.opened(self.roots[0], node.path(), beneath.DIR_PATH) as fd:
            yield fd

    def _keep(self, dir_fd: int, name: str, node: Node) -> int | None:
        """A descriptor of upper entry `name`, about to lose its last name, while the kernel
        can still reach `node` through an open file or a working directory (a file the
        container holds by an O_PATH descriptor only then answers ENOENT)."""
        if not (node.handles or (node.is_dir and node.lookups > 0)):
            return None
        return os.open(name, beneath.ANY_PATH, dir_fd=dir_fd)

    def _remove(self, dir_fd: int, name: str, node: Node, last: bool,
                remove: Callable[..., None]) -> int | None:
        """`remove` (os.unlink, os.rmdir) `name`; the descriptor `_keep` gives when it was
        the last name of `node`."""
        kept = self._keep(dir_fd, name, node) if last else None
        try:
            remove(name, dir_fd=dir_fd)
        except BaseException:
            if kept is not None:
                os.close(kept)
            raise
        return kept

    def _writable(self) -> None:
        if self.upper is None:
            raise _err(errno.EROFS)

    def _resolve(self, parent: Node, name: str) -> merge.Found | None:
        return merge.resolve(self.roots, parent.layers, parent.child_path(name))

    def _node(self, parent: Node, name: str, found: merge.Found) -> Node:
        node = self.inodes.node_for(parent, name, found)
        if node.is_dir and node.layer > 0:
            native.fuse_flag(node.ino, native.FUSE_CACHE_DIR, True)
        return node

    def _child(self, parent: Node, name: str) -> tuple[Node, merge.Found]:
        found = self._resolve(parent, name)
        if found is None:
            raise _err(errno.ENOENT)
        return self._node(parent, name, found), found

    def _stat(self, node: Node) -> os.stat_result:
        if node.deleted and node.handles:
            return os.fstat(next(iter(node.handles)))
        with self._opened(node) as fd:
            return os.fstat(fd)

    def _override(self, fd: int, st: os.stat_result) -> upperfmt.OverrideStat | None:
        if stat.S_ISLNK(st.st_mode):
            return None
        try:
            return upperfmt.decode_override(os.getxattr(beneath.proc(fd), upperfmt.OVERRIDE_XATTR))
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, *_NOT_THERE):
                return None
            raise
        except ValueError:
            return None

    def _attrs(self, node: Node, st: os.stat_result) -> pyfuse3.EntryAttributes:
        lower = node.layer > 0
        if lower and node.attrs is not None:
            return node.attrs  # a lower entry never changes; a copy-up moves it to layer 0
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.ino
        e.generation = 0
        mode, uid, gid, rdev = st.st_mode, st.st_uid, st.st_gid, st.st_rdev
        if self.config.xattr_permissions and not node.deleted:
            with self._opened(node) as fd:
                ov = self._override(fd, st)
            if ov is not None:
                uid, gid = ov.uid, ov.gid
                kind = ov.file_type if ov.file_type in (stat.S_IFCHR, stat.S_IFBLK) else 0
                mode = (kind or stat.S_IFMT(mode)) | ov.perms
                if kind:
                    rdev = ov.rdev
        if self.config.squash_uid is not None:
            uid = self.config.squash_uid
        if self.config.squash_gid is not None:
            gid = self.config.squash_gid
        e.st_mode = mode
        e.st_nlink = st.st_nlink
        e.st_uid = uid
        e.st_gid = gid
        e.st_rdev = rdev
        e.st_size = st.st_size
        e.st_blocks = st.st_blocks
        e.st_blksize = st.st_blksize
        e.st_atime_ns = st.st_atime_ns
        e.st_mtime_ns = st.st_mtime_ns
        e.st_ctime_ns = st.st_ctime_ns
        e.attr_timeout = LONG_TIMEOUT if lower else SHORT_TIMEOUT
        e.entry_timeout = LONG_TIMEOUT
        if lower:
            node.attrs = e
            native.fuse_cache_attr(node.ino, st, mode, uid, gid, rdev, LONG_TIMEOUT)
            path = node.path() if stat.S_ISREG(st.st_mode) else None
            # The hooks open it with one openat2, which takes no longer path: Python opens
            # the others (see beneath.open_in).
            if path is not None and len(os.fsencode(path)) < beneath.PATH_MAX:
                native.fuse_lower_path(node.ino, self.roots[node.layer], path)
        return e

    def _entry(self, node: Node, st: os.stat_result) -> pyfuse3.EntryAttributes:
        """Attributes for a reply that hands the kernel one more reference to `node`."""
        attrs = self._attrs(node, st)
        node.lookups += 1
        return attrs

    def _copy_up(self, node: Node, data: bool = True) -> None:
        """Bring `node` (and its parents) to the upper layer; without `data` when the caller
        truncates it to nothing anyway (O_TRUNC, truncate to 0)."""
        self._writable()
        if node.layer == 0:
            return
        assert node.parent is not None and self.work_fd is not None
        if node.deleted:
            # No name leads to it: its copy gets none either, as on the kernel overlay.
            with self._opened(node) as src:
                orphan = copyup.copy_orphan(src, self.work_fd, self.config.xattr_permissions,
                                            data)
            node.close()
            node.fd = orphan
            st = os.fstat(orphan)
        else:
            self._copy_up(node.parent)
            path = node.path()
            st = copyup.copy_up(self.roots[node.layer], path, self.roots[0], path, self.work_fd,
                                self.config.xattr_permissions, data)
        native.fuse_forget_attr(node.ino)
        if node.is_dir:
            native.fuse_flag(node.ino, native.FUSE_CACHE_DIR, False)
            # The kernel keeps a lower directory's attributes for LONG_TIMEOUT, and a copy-up
            # for a change below it is none of the kernel's business: its nlink, size and ctime
            # are now the upper directory's.
            try:
                pyfuse3.invalidate_inode(node.ino, attr_only=True)
            except OSError as e:
                if e.errno != errno.ENOENT:  # the kernel no longer caches it
                    raise
        node.layers = (0, *node.layers) if node.is_dir and not node.deleted else (0,)
        if not node.deleted:
            self.inodes.register(node, 0, st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode):
            # Readers opened on the lower file must see what writers now change in the upper one.
            with self._opened(node, os.O_RDONLY) as new:
                for fd in node.handles:
                    os.dup2(new, fd)
                native.fuse_copied_up(node.ino, new)
        self._split_lower_links(node)

    def _split_lower_links(self, node: Node) -> None:
        """A copy-up breaks a lower hard link, as in the kernel overlay: the other names keep the
        lower file, so the kernel must look them up again."""
        assert node.parent is not None
        for pino, name in list(node.links):
            if (pino, name) != (node.parent.ino, node.name):
                node.links.discard((pino, name))
                pyfuse3.invalidate_entry_async(pino, os.fsencode(name), ignore_enoent=True)

    @contextmanager
    def _creating(self, parent: Node, name: str) -> Iterator[tuple[int, bool]]:
        """Get `parent` into the upper layer and clear a whiteout at `name`: its descriptor,
        and True if there was one (a directory made there must then hide the lower ones)."""
        self._copy_up(parent)
        with self._upper_dir(parent) as dir_fd:
            removed = False
            st = merge.stat_in(dir_fd, name)
            if st is not None and upperfmt.is_whiteout(st):
                os.unlink(name, dir_fd=dir_fd)
                removed = True
            if merge.has_fallback_whiteout(dir_fd, name):
                os.unlink(upperfmt.WHITEOUT_PREFIX + name, dir_fd=dir_fd)
                removed = True
            yield dir_fd, removed

    def _set_owner(self, dir_fd: int, name: str, ctx: pyfuse3.RequestContext, mode: int,
                   is_link: bool = False) -> None:
        """Give a new entry the caller's ids, as a local filesystem would."""
        if (ctx.uid, ctx.gid) == (self.uid, self.gid):
            return  # the real filesystem already did, set-group-ID directories included
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        gid = st.st_gid if stat.S_ISGID & os.fstat(dir_fd).st_mode else ctx.gid
        if (st.st_uid, st.st_gid) == (ctx.uid, gid):
            return
        try:
            os.chown(name, ctx.uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
            if self.config.xattr_permissions and not is_link:
                self._set_override(dir_fd, name, upperfmt.encode_override(ctx.uid, gid, mode))

    @staticmethod
    def _set_override(dir_fd: int, name: str, value: bytes) -> None:
        with beneath.opened(dir_fd, "/" + name) as fd:
            os.setxattr(beneath.proc(fd), upperfmt.OVERRIDE_XATTR, value)

    def _made(self, parent: Node, dir_fd: int, name: str) -> pyfuse3.EntryAttributes:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        layers = (0,)
        node = self._node(parent, name, merge.Found(layers, st))
        return self._entry(node, st)

    def _whiteout(self, parent: Node, name: str) -> None:
        with self._upper_dir(parent) as fd:
            upperfmt.make_whiteout(fd, name)

    @staticmethod
    def _set_opaque(dir_fd: int, name: str) -> None:
        with beneath.opened(dir_fd, "/" + name, beneath.DIR_PATH) as fd:
            upperfmt.set_opaque(beneath.proc(fd), follow_symlinks=True)

    @staticmethod
    def _clear_dir(dir_fd: int, name: str) -> None:
        """Remove the whiteouts and markers left in an upper directory that shows as empty."""
        with beneath.opened(dir_fd, "/" + name, os.O_RDONLY | os.O_DIRECTORY) as fd:
            with os.scandir(fd) as entries:
                names = [e.name for e in entries]
            for entry in names:
                os.unlink(entry, dir_fd=fd)

    # -- lookup and attributes -------------------------------------------------------------

    @_fuse_errors
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.inodes.get(parent_inode)
        found = self._resolve(parent, os.fsdecode(name))
        if found is None:
            # A negative entry the kernel may cache: PATH and library searches repeat them.
            e = pyfuse3.EntryAttributes()
            e.st_ino = 0
            e.entry_timeout = LONG_TIMEOUT
            return e
        node = self._node(parent, os.fsdecode(name), found)
        return self._entry(node, found.st)

    @_fuse_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @_fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode)
        if node.attrs is not None and node.layer > 0:
            return node.attrs
        return self._attrs(node, self._stat(node))

    @_fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode)
        changes = (fields.update_size or fields.update_mode or fields.update_uid
                   or fields.update_gid or fields.update_atime or fields.update_mtime)
        if changes:
            self._copy_up(node, data=not (fields.update_size and attr.st_size == 0))
        with self._opened(node) as fd:
            # Through the descriptor's /proc path: it reaches this very file, and a symlink
            # itself rather than its target.
            target = beneath.proc(fd)
            st = os.fstat(fd)
            is_link = stat.S_ISLNK(st.st_mode)
            if fields.update_size:
                if fh is not None and fh in self.files:
                    os.truncate(fh, attr.st_size)
                else:
                    os.truncate(target, attr.st_size)
            if fields.update_mode or fields.update_uid or fields.update_gid:
                self._set_perms(fd, st, attr, fields, is_link)
            if fields.update_atime or fields.update_mtime:
                atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
                mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
                os.utime(target, ns=(atime, mtime))
            return self._attrs(node, os.fstat(fd))

    def _set_perms(self, fd: int, st: os.stat_result, attr: pyfuse3.EntryAttributes,
                   fields: pyfuse3.SetattrFields, is_link: bool) -> None:
        target = beneath.proc(fd)
        uid = attr.st_uid if fields.update_uid else -1
        gid = attr.st_gid if fields.update_gid else -1
        if self.config.xattr_permissions and not is_link:
            # Single-id mode: one host id holds the files of every owner, so the owner and mode
            # live in the xattr, and the real file stays usable by the daemon.
            ov = self._override(fd, st)
            cur_uid, cur_gid = (ov.uid, ov.gid) if ov else (st.st_uid, st.st_gid)
            cur_mode = ov.mode if ov and ov.file_type else st.st_mode
            if ov and not ov.file_type:
                cur_mode = stat.S_IFMT(st.st_mode) | ov.perms
            mode = cur_mode
            if fields.update_mode:
                mode = stat.S_IFMT(cur_mode) | stat.S_IMODE(attr.st_mode)
            value = upperfmt.encode_override(cur_uid if uid < 0 else uid,
                                             cur_gid if gid < 0 else gid, mode,
                                             ov.rdev if ov else st.st_rdev)
            os.setxattr(target, upperfmt.OVERRIDE_XATTR, value)
            return
        if uid >= 0 or gid >= 0:
            os.chown(target, uid, gid)
        if fields.update_mode and not is_link:
            os.chmod(target, stat.S_IMODE(attr.st_mode))

    @_fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with self._opened(self.inodes.get(inode)) as fd:
            return os.fsencode(os.readlink("", dir_fd=fd))

    # -- making and removing names ---------------------------------------------------------

    @_fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        with self._creating(parent, fname) as (dir_fd, _):
            kind = stat.S_IFMT(mode)
            if kind in (stat.S_IFCHR, stat.S_IFBLK) and self.config.xattr_permissions:
                try:
                    os.mknod(fname, mode, rdev, dir_fd=dir_fd)
                except PermissionError:
                    os.close(os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                     stat.S_IMODE(mode) | 0o600, dir_fd=dir_fd))
                    self._set_override(dir_fd, fname,
                                       upperfmt.encode_override(ctx.uid, ctx.gid, mode, rdev))
                    return self._made(parent, dir_fd, fname)
            else:
                os.mknod(fname, mode, rdev, dir_fd=dir_fd)
            self._set_owner(dir_fd, fname, ctx, mode)
            return self._made(parent, dir_fd, fname)

    @_fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        with self._creating(parent, fname) as (dir_fd, over_whiteout):
            os.mkdir(fname, stat.S_IMODE(mode), dir_fd=dir_fd)
            if over_whiteout:
                self._set_opaque(dir_fd, fname)
            self._set_owner(dir_fd, fname, ctx, stat.S_IFDIR | stat.S_IMODE(mode))
            return self._made(parent, dir_fd, fname)

    @_fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        with self._creating(parent, fname) as (dir_fd, _):
            os.symlink(target, name, dir_fd=dir_fd)
            self._set_owner(dir_fd, fname, ctx, stat.S_IFLNK | 0o777, is_link=True)
            return self._made(parent, dir_fd, fname)

    @_fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode)
        parent, fname = self.inodes.get(new_parent_inode), os.fsdecode(new_name)
        self._copy_up(node)
        if node.deleted:
            raise _err(errno.ENOENT)  # as link(2) of a file with no name left
        with beneath.parent(self.roots[0], node.path()) as (src_dir, src_name), \
                self._creating(parent, fname) as (dir_fd, _):
            os.link(src_name, fname, src_dir_fd=src_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
            return self._made(parent, dir_fd, fname)

    @_fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        node, found = self._child(parent, fname)
        if found.is_dir:
            raise _err(errno.EISDIR)
        path = parent.child_path(fname)
        needs_whiteout = merge.has_lower(self.roots, parent.layers, path)
        self._copy_up(parent)
        kept = None
        if found.layers[0] == 0:
            last = found.st.st_nlink <= 1
            with self._upper_dir(parent) as dir_fd:
                kept = self._remove(dir_fd, fname, node, last, os.unlink)
        else:
            last = found.st.st_nlink <= 1 or node.links <= {(parent.ino, fname)}
        if needs_whiteout:
            self._whiteout(parent, fname)
        self.inodes.unlinked(node, parent, fname, last, kept)
        self._cookies.forget(parent.ino, fname)

    @_fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        node, found = self._child(parent, fname)
        if not found.is_dir:
            raise _err(errno.ENOTDIR)
        path = parent.child_path(fname)
        if merge.list_names(self.roots, found.layers, path):
            raise _err(errno.ENOTEMPTY)
        needs_whiteout = merge.has_lower(self.roots, parent.layers, path)
        self._copy_up(parent)
        kept = None
        if found.layers[0] == 0:
            with self._upper_dir(parent) as dir_fd:
                self._clear_dir(dir_fd, fname)
                kept = self._remove(dir_fd, fname, node, True, os.rmdir)
        if needs_whiteout:
            self._whiteout(parent, fname)
        self.inodes.unlinked(node, parent, fname, True, kept)
        self._cookies.forget(parent.ino, fname)
        self._cookies.forget_dir(node.ino)

    @_fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        self._writable()
        old_parent, old = self.inodes.get(parent_inode_old), os.fsdecode(name_old)
        new_parent, new = self.inodes.get(parent_inode_new), os.fsdecode(name_new)
        exchange = bool(flags & pyfuse3.RENAME_EXCHANGE)
        src_node, src = self._child(old_parent, old)
        dst = self._resolve(new_parent, new)
        dst_node = self._node(new_parent, new, dst) if dst is not None else None
        if dst is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise _err(errno.EEXIST)
        if exchange and dst is None:
            raise _err(errno.ENOENT)
        moving = [src] + ([dst] if exchange and dst is not None else [])
        if any(f.is_dir and any(layer > 0 for layer in f.layers) for f in moving):
            # Without redirect_dir the kernel overlay cannot move a lower directory either:
            # `mv` then falls back to copying.
            raise _err(errno.EXDEV)
        if dst is not None and not exchange:
            if dst.is_dir and not src.is_dir:
                raise _err(errno.EISDIR)
            if src.is_dir and not dst.is_dir:
                raise _err(errno.ENOTDIR)
            if dst.is_dir and merge.list_names(self.roots, dst.layers, new_parent.child_path(new)):
                raise _err(errno.ENOTEMPTY)
        old_path, new_path = old_parent.child_path(old), new_parent.child_path(new)
        old_lower = merge.has_lower(self.roots, old_parent.layers, old_path)
        new_lower = merge.has_lower(self.roots, new_parent.layers, new_path)
        self._copy_up(src_node)
        self._copy_up(new_parent)
        if exchange:
            assert dst_node is not None
            self._copy_up(dst_node)
            with self._upper_dir(old_parent) as old_dir, self._upper_dir(new_parent) as new_dir:
                native.renameat2(old, new, native.RENAME_EXCHANGE, old_dir, new_dir)
                if src.is_dir and new_lower:
                    self._set_opaque(new_dir, new)
                if dst_node.is_dir and old_lower:
                    self._set_opaque(old_dir, old)
            self.inodes.renamed(src_node, old_parent, old, new_parent, new)
            self.inodes.renamed(dst_node, new_parent, new, old_parent, old)
            return
        last = dst is not None and (dst.is_dir or dst.layers[0] > 0 or dst.st.st_nlink <= 1)
        kept = None
        with self._upper_dir(old_parent) as old_dir, \
                self._creating(new_parent, new) as (new_dir, over_whiteout):
            if dst is not None and dst.is_dir and dst.layers[0] == 0:
                self._clear_dir(new_dir, new)
            if dst_node is not None and dst_node is not src_node and last and dst.layers[0] == 0:
                kept = self._keep(new_dir, new, dst_node)
            try:
                os.rename(old, new, src_dir_fd=old_dir, dst_dir_fd=new_dir)
            except BaseException:
                if kept is not None:
                    os.close(kept)
                raise
            if src.is_dir and (new_lower or over_whiteout):
                self._set_opaque(new_dir, new)
        if old_lower:
            self._whiteout(old_parent, old)
        if dst_node is not None and dst_node is not src_node:
            self.inodes.unlinked(dst_node, new_parent, new, last, kept)
        self.inodes.renamed(src_node, old_parent, old, new_parent, new)
        self._cookies.forget(old_parent.ino, old)

    # -- files -----------------------------------------------------------------------------

    def _open_fd(self, node: Node, flags: int) -> int:
        flags &= _OPEN_FLAGS
        if node.deleted and node.layer == 0:
            if node.fd is None:
                raise _err(errno.ENOENT)
            kept = beneath.proc(node.fd)
            fd = _open_for_writeback(lambda f: os.open(kept, f), flags)
        else:
            root, path = self.roots[node.layer], node.path()
            fd = _open_for_writeback(lambda f: beneath.open_in(root, path, f), flags)
        node.handles.add(fd)
        self.files[fd] = node
        return fd

    @_fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.inodes.get(inode)
        writing = bool(flags & _WRITE_FLAGS)
        if writing:
            self._copy_up(node, data=not flags & os.O_TRUNC)
        fd = self._open_fd(node, flags)
        # Not direct_io, so mmap works; the page cache survives reopening a file nobody writes.
        return pyfuse3.FileInfo(fh=fd, keep_cache=not writing)

    @_fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        with self._creating(parent, fname) as (dir_fd, _):
            fd = _open_for_writeback(
                lambda f: os.open(fname, f | os.O_NOFOLLOW, stat.S_IMODE(mode), dir_fd=dir_fd),
                (flags & _OPEN_FLAGS) | os.O_CREAT | os.O_EXCL)
            try:
                self._set_owner(dir_fd, fname, ctx, mode)
                attrs = self._made(parent, dir_fd, fname)
            except BaseException:
                os.close(fd)
                raise
        node = self.inodes.get(attrs.st_ino)
        node.handles.add(fd)
        self.files[fd] = node
        native.fuse_flag(node.ino, native.FUSE_NO_CAPS, True)  # a new file has no capabilities
        return pyfuse3.FileInfo(fh=fd, keep_cache=False), attrs

    @_fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    @_fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    @_fuse_errors
    async def flush(self, fh: int) -> None:
        # Nothing to do at close: ENOSYS makes the kernel stop sending one per close(2).
        raise _err(errno.ENOSYS)

    @_fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        if self.config.fsync:
            # The low bits: the hooks mark the handles they opened in the high ones.
            (os.fdatasync if datasync else os.fsync)(fh & 0xFFFFFFFF)

    @_fuse_errors
    async def release(self, fh: int) -> None:
        node = self.files.pop(fh)
        node.handles.discard(fh)
        os.close(fh)
        self.inodes.forget(node.ino, 0)

    # -- directories -----------------------------------------------------------------------

    @_fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self.dirs[fh] = _DirHandle(self.inodes.get(inode), [], [])
        return fh

    def _lower_listing(self, node: Node) -> dict[str, merge.Found]:
        """The entries of a directory that only lower layers hold, which never change: a warm
        `ls -l` or `find` of an image's tree then touches no layer at all."""
        listing = self._lower_dirs.get(node.ino)
        if listing is None:
            listing = {}
            for name in merge.list_names(self.roots, node.layers, node.path()):
                found = merge.resolve(self.roots, node.layers, node.child_path(name))
                if found is not None:
                    listing[name] = found
            self._lower_dirs[node.ino] = listing
        return listing

    def _dir_handle(self, fh: int) -> _DirHandle:
        handle = self.dirs.get(fh)
        if handle is None and fh & native.FUSE_C_FH:
            # Opened by the FUSE hooks (a lower directory): the handle names the inode, and
            # every open of it shares this one, as they share its immutable listing.
            handle = self.dirs[fh] = _DirHandle(self.inodes.get(fh & ~native.FUSE_C_FH), [], [])
        return handle if handle is not None else self.dirs[fh]

    @_fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._dir_handle(fh)
        node = handle.node
        if start_id == 0:
            # A snapshot per pass; a rewind takes a fresh one.
            names = (list(self._lower_listing(node)) if node.layer > 0
                     else merge.list_names(self.roots, node.layers, node.path()))
            handle.names, handle.cookies = self._cookies.order(node.ino, names)
        names, cookies = handle.names, handle.cookies
        for i in range(bisect.bisect_right(cookies, start_id), len(names)):
            name = names[i]
            if i < 2:
                dot = node if i == 0 else (node.parent or node)
                if not pyfuse3.readdir_reply(token, os.fsencode(name),
                                             self._attrs(dot, self._stat(dot)), cookies[i]):
                    return
                continue
            # Any change in the directory first copies it up, so a directory still in the lower
            # layers still has the entries of its listing.
            found = (self._lower_dirs[node.ino].get(name) if node.layer > 0
                     else merge.resolve(self.roots, node.layers, node.child_path(name)))
            if found is None:
                continue  # removed since the listing
            child = self._node(node, name, found)
            if not pyfuse3.readdir_reply(token, os.fsencode(name),
                                         self._attrs(child, found.st), cookies[i]):
                return
            child.lookups += 1

    @_fuse_errors
    async def releasedir(self, fh: int) -> None:
        del self.dirs[fh]

    @_fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None

    @_fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        sv = os.statvfs(self.roots[0] if self.upper else self.roots[1])
        data = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                      "f_ffree", "f_favail", "f_namemax"):
            setattr(data, field, getattr(sv, field))
        return data

    # -- xattrs ----------------------------------------------------------------------------

    @staticmethod
    def _stored_xattr(name: bytes) -> str:
        try:
            return upperfmt.escape_xattr(os.fsdecode(name))
        except ValueError:
            # The overlay's own bookkeeping: neither visible nor writable through the mount.
            raise _err(errno.EOPNOTSUPP)

    @contextmanager
    def _xattr_target(self, node: Node) -> Iterator[str]:
        """The path for the xattr calls on `node`: its descriptor's, which a symlink's
        xattrs are read through too (see beneath.proc)."""
        with self._opened(node) as fd:
            yield beneath.proc(fd)

    @_fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        xname = self._stored_xattr(name)
        with self._xattr_target(self.inodes.get(inode)) as path:
            try:
                return os.getxattr(path, xname)
            except OSError as e:
                if e.errno == errno.ENODATA and xname == _CAPS_XATTR:
                    native.fuse_flag(inode, native.FUSE_NO_CAPS, True)
                raise

    @_fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        with self._xattr_target(self.inodes.get(inode)) as path:
            shown = (upperfmt.unescape_xattr(n) for n in os.listxattr(path))
            return [os.fsencode(n) for n in shown if n is not None]

    @_fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        xname = self._stored_xattr(name)
        node = self.inodes.get(inode)
        self._copy_up(node)
        if xname == _CAPS_XATTR:
            native.fuse_flag(inode, native.FUSE_NO_CAPS, False)
        with self._xattr_target(node) as path:
            os.setxattr(path, xname, value)

    @_fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        xname = self._stored_xattr(name)
        node = self.inodes.get(inode)
        with self._xattr_target(node) as path:
            os.getxattr(path, xname)  # ENODATA before any copy-up
        self._copy_up(node)
        with self._xattr_target(node) as path:
            os.removexattr(path, xname)
