"""The FUSE request handlers: the overlay semantics on top of merge (lookup rules), inodes (the
kernel's view) and copyup.

Handlers run on the trio thread and call the real filesystem synchronously: every syscall here is
on the layers, never on our own mount, so nothing can wait on us.
"""
from __future__ import annotations

import bisect
import errno
import functools
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3

import native
from fuse_overlay import copyup, merge, upperfmt
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
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None
        except Exception as e:  # noqa: BLE001 - a request must never take the daemon down
            print(f"fuse-overlay: {fn.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
            raise pyfuse3.FUSEError(errno.EIO) from None
    return wrapper  # type: ignore[return-value]


def _err(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


def _open_for_writeback(path: str, flags: int, mode: int) -> int:
    """open(2) as the writeback cache needs it: the kernel reads pages of files opened for
    writing only, and it places appends itself."""
    flags = (flags & ~(os.O_APPEND | os.O_NOCTTY)) | os.O_CLOEXEC
    if flags & os.O_ACCMODE == os.O_WRONLY:
        try:
            return os.open(path, (flags & ~os.O_ACCMODE) | os.O_RDWR, mode)
        except PermissionError:
            pass  # a write-only file of ours (mode 0200) on the host: no page reads then
    return os.open(path, flags, mode)


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
        # roots[0] is the upper layer; a read-only overlay has none, and layer 0 is never used.
        self.roots: list[str] = [os.path.abspath(config.upperdir or "/nonexistent")]
        self.roots += [os.path.abspath(d) for d in config.lowerdirs]
        self.workdir = workdir
        root_layers = tuple(range(0 if self.upper else 1, len(self.roots)))
        self.inodes = Inodes(self._merge_root(root_layers))
        native.fuse_flag(self.inodes.root.ino, native.FUSE_CACHE_DIR, self.inodes.root.layer > 0)
        self.files: dict[int, Node] = {}
        self.dirs: dict[int, _DirHandle] = {}
        self._lower_dirs: dict[int, dict[str, merge.Found]] = {}
        self._cookies = _Cookies()
        # Far above any file descriptor: file handles are the descriptors themselves.
        self._next_dir_fh = 1 << 40
        self.uid, self.gid = os.geteuid(), os.getegid()

    def _merge_root(self, layers: tuple[int, ...]) -> tuple[int, ...]:
        for i, layer in enumerate(layers):
            if len(layers) > 1 and merge.dir_is_opaque(self.roots[layer]):
                return layers[: i + 1]
        return layers

    # -- helpers ---------------------------------------------------------------------------

    def _real(self, node: Node) -> str:
        return self.roots[node.layer] + node.path()

    def _upper(self, path: str) -> str:
        return self.roots[0] + path

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
        return os.lstat(self._real(node))

    def _override(self, path: str, st: os.stat_result) -> upperfmt.OverrideStat | None:
        if stat.S_ISLNK(st.st_mode):
            return None
        try:
            return upperfmt.decode_override(os.getxattr(path, upperfmt.OVERRIDE_XATTR))
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
            ov = self._override(self._real(node), st)
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
            if stat.S_ISREG(st.st_mode):
                native.fuse_lower_path(node.ino, self._real(node))
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
        assert node.parent is not None and self.workdir is not None
        self._copy_up(node.parent)
        path = node.path()
        st = copyup.copy_up(self.roots[node.layer] + path, self._upper(path), self.workdir,
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
        node.layers = (0, *node.layers) if node.is_dir else (0,)
        self.inodes.register(node, 0, st.st_dev, st.st_ino)
        for fd in node.handles:
            # Readers opened on the lower file must see what writers now change in the upper one.
            new = os.open(self._upper(path), os.O_RDONLY | os.O_CLOEXEC)
            os.dup2(new, fd)
            os.close(new)
        if not node.is_dir:
            native.fuse_copied_up(node.ino, self._upper(path))
        self._split_lower_links(node)

    def _split_lower_links(self, node: Node) -> None:
        """A copy-up breaks a lower hard link, as in the kernel overlay: the other names keep the
        lower file, so the kernel must look them up again."""
        assert node.parent is not None
        for pino, name in list(node.links):
            if (pino, name) != (node.parent.ino, node.name):
                node.links.discard((pino, name))
                pyfuse3.invalidate_entry_async(pino, os.fsencode(name), ignore_enoent=True)

    def _prepare_create(self, parent: Node, name: str) -> bool:
        """Get `parent` into the upper layer and clear a whiteout at `name`; True if there was
        one (a directory made there must then hide the lower ones)."""
        self._copy_up(parent)
        path = self._upper(parent.child_path(name))
        removed = False
        st = merge.lstat_or_none(path)
        if st is not None and upperfmt.is_whiteout(st):
            os.unlink(path)
            removed = True
        if merge.has_fallback_whiteout(self._upper(parent.path()), name):
            os.unlink(self._upper(parent.path()) + "/" + upperfmt.WHITEOUT_PREFIX + name)
            removed = True
        return removed

    def _set_owner(self, path: str, ctx: pyfuse3.RequestContext, mode: int,
                   is_link: bool = False) -> None:
        """Give a new entry the caller's ids, as a local filesystem would."""
        if (ctx.uid, ctx.gid) == (self.uid, self.gid):
            return  # the real filesystem already did, set-group-ID directories included
        st = os.lstat(path)
        gid = st.st_gid if stat.S_ISGID & os.stat(os.path.dirname(path)).st_mode else ctx.gid
        if (st.st_uid, st.st_gid) == (ctx.uid, gid):
            return
        try:
            os.chown(path, ctx.uid, gid, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
            if self.config.xattr_permissions and not is_link:
                os.setxattr(path, upperfmt.OVERRIDE_XATTR,
                            upperfmt.encode_override(ctx.uid, gid, mode))

    def _made(self, parent: Node, name: str) -> pyfuse3.EntryAttributes:
        path = parent.child_path(name)
        st = os.lstat(self._upper(path))
        layers = (0,)
        node = self._node(parent, name, merge.Found(layers, st))
        return self._entry(node, st)

    def _whiteout(self, parent: Node, name: str) -> None:
        fd = os.open(self._upper(parent.path()) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            upperfmt.make_whiteout(fd, name)
        finally:
            os.close(fd)

    def _clear_dir(self, path: str) -> None:
        """Remove the whiteouts and markers left in an upper directory that shows as empty."""
        with os.scandir(path) as entries:
            names = [e.name for e in entries]
        for name in names:
            os.unlink(path + "/" + name)

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
        if changes and not node.deleted:
            self._copy_up(node, data=not (fields.update_size and attr.st_size == 0))
        target: str | int = self._real(node)
        if node.deleted or (fh is not None and fh in self.files):
            target = fh if fh is not None and fh in self.files else next(iter(node.handles))
        st = self._stat(node)
        is_link = stat.S_ISLNK(st.st_mode)
        if fields.update_size:
            os.truncate(target, attr.st_size)
        if fields.update_mode or fields.update_uid or fields.update_gid:
            self._set_perms(node, target, st, attr, fields, is_link)
        if fields.update_atime or fields.update_mtime:
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            if isinstance(target, int):
                os.utime(target, ns=(atime, mtime))
            else:
                os.utime(target, ns=(atime, mtime), follow_symlinks=False)
        return self._attrs(node, self._stat(node))

    def _set_perms(self, node: Node, target: str | int, st: os.stat_result,
                   attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                   is_link: bool) -> None:
        uid = attr.st_uid if fields.update_uid else -1
        gid = attr.st_gid if fields.update_gid else -1
        if self.config.xattr_permissions and not is_link:
            # Single-id mode: one host id holds the files of every owner, so the owner and mode
            # live in the xattr, and the real file stays usable by the daemon.
            ov = self._override(self._real(node), st) if isinstance(target, str) else None
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
            if isinstance(target, int):
                os.chown(target, uid, gid)
            else:
                os.chown(target, uid, gid, follow_symlinks=False)
        if fields.update_mode and not is_link:
            os.chmod(target, stat.S_IMODE(attr.st_mode))

    @_fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(os.readlink(self._real(self.inodes.get(inode))))

    # -- making and removing names ---------------------------------------------------------

    @_fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        self._prepare_create(parent, fname)
        path = self._upper(parent.child_path(fname))
        kind = stat.S_IFMT(mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK) and self.config.xattr_permissions:
            try:
                os.mknod(path, mode, rdev)
            except PermissionError:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 stat.S_IMODE(mode) | 0o600))
                os.setxattr(path, upperfmt.OVERRIDE_XATTR,
                            upperfmt.encode_override(ctx.uid, ctx.gid, mode, rdev))
                return self._made(parent, fname)
        else:
            os.mknod(path, mode, rdev)
        self._set_owner(path, ctx, mode)
        return self._made(parent, fname)

    @_fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        over_whiteout = self._prepare_create(parent, fname)
        path = self._upper(parent.child_path(fname))
        os.mkdir(path, stat.S_IMODE(mode))
        if over_whiteout:
            upperfmt.set_opaque(path)
        self._set_owner(path, ctx, stat.S_IFDIR | stat.S_IMODE(mode))
        return self._made(parent, fname)

    @_fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, fname = self.inodes.get(parent_inode), os.fsdecode(name)
        self._writable()
        self._prepare_create(parent, fname)
        path = self._upper(parent.child_path(fname))
        os.symlink(target, os.fsencode(path))
        self._set_owner(path, ctx, stat.S_IFLNK | 0o777, is_link=True)
        return self._made(parent, fname)

    @_fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.get(inode)
        parent, fname = self.inodes.get(new_parent_inode), os.fsdecode(new_name)
        self._copy_up(node)
        self._prepare_create(parent, fname)
        os.link(self._real(node), self._upper(parent.child_path(fname)), follow_symlinks=False)
        return self._made(parent, fname)

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
        if found.layers[0] == 0:
            os.unlink(self._upper(path))
            last = found.st.st_nlink <= 1
        else:
            last = found.st.st_nlink <= 1 or node.links <= {(parent.ino, fname)}
        if needs_whiteout:
            self._whiteout(parent, fname)
        self.inodes.unlinked(node, parent, fname, last)
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
        if found.layers[0] == 0:
            self._clear_dir(self._upper(path))
            os.rmdir(self._upper(path))
        if needs_whiteout:
            self._whiteout(parent, fname)
        self.inodes.unlinked(node, parent, fname, True)
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
            native.renameat2(self._upper(old_path), self._upper(new_path), native.RENAME_EXCHANGE)
            if src.is_dir and new_lower:
                upperfmt.set_opaque(self._upper(new_path))
            if dst_node.is_dir and old_lower:
                upperfmt.set_opaque(self._upper(old_path))
            self.inodes.renamed(src_node, old_parent, old, new_parent, new)
            self.inodes.renamed(dst_node, new_parent, new, old_parent, old)
            return
        over_whiteout = False
        if dst is None:
            over_whiteout = self._prepare_create(new_parent, new)
        elif dst.is_dir and dst.layers[0] == 0:
            self._clear_dir(self._upper(new_path))
        last = dst is not None and (dst.is_dir or dst.layers[0] > 0 or dst.st.st_nlink <= 1)
        os.rename(self._upper(old_path), self._upper(new_path))
        if src.is_dir and (new_lower or over_whiteout):
            upperfmt.set_opaque(self._upper(new_path))
        if old_lower:
            self._whiteout(old_parent, old)
        if dst_node is not None and dst_node is not src_node:
            self.inodes.unlinked(dst_node, new_parent, new, last)
        self.inodes.renamed(src_node, old_parent, old, new_parent, new)
        self._cookies.forget(old_parent.ino, old)

    # -- files -----------------------------------------------------------------------------

    def _open_fd(self, node: Node, flags: int) -> int:
        fd = _open_for_writeback(self._real(node), flags & ~(os.O_CREAT | os.O_EXCL), 0)
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
        self._prepare_create(parent, fname)
        path = self._upper(parent.child_path(fname))
        fd = _open_for_writeback(path, flags | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode))
        try:
            self._set_owner(path, ctx, mode)
            attrs = self._made(parent, fname)
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
            raise _err(errno.EOPNOTSUPP) from None

    def _xattr_target(self, node: Node) -> tuple[str, bool]:
        return self._real(node), not stat.S_ISLNK(self._stat(node).st_mode)

    @_fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        xname = self._stored_xattr(name)
        path, follow = self._xattr_target(self.inodes.get(inode))
        try:
            return os.getxattr(path, xname, follow_symlinks=follow)
        except OSError as e:
            if e.errno == errno.ENODATA and xname == _CAPS_XATTR:
                native.fuse_flag(inode, native.FUSE_NO_CAPS, True)
            raise

    @_fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        path, follow = self._xattr_target(self.inodes.get(inode))
        shown = (upperfmt.unescape_xattr(n) for n in os.listxattr(path, follow_symlinks=follow))
        return [os.fsencode(n) for n in shown if n is not None]

    @_fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        xname = self._stored_xattr(name)
        node = self.inodes.get(inode)
        self._copy_up(node)
        path, follow = self._xattr_target(node)
        if xname == _CAPS_XATTR:
            native.fuse_flag(inode, native.FUSE_NO_CAPS, False)
        os.setxattr(path, xname, value, follow_symlinks=follow)

    @_fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        xname = self._stored_xattr(name)
        node = self.inodes.get(inode)
        path, follow = self._xattr_target(node)
        os.getxattr(path, xname, follow_symlinks=follow)  # ENODATA before any copy-up
        self._copy_up(node)
        path, follow = self._xattr_target(node)
        os.removexattr(path, xname, follow_symlinks=follow)
