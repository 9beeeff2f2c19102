"""Copy-up: a lower entry becomes an upper one with the same data, mode, owner, times and xattrs.

The copy is built in the work directory and renamed into place, so a crash never leaves a half
copied file in the upper directory.
"""
from __future__ import annotations

import errno
import itertools
import os
import stat

import native
from fuse_overlay import beneath, upperfmt

_counter = itertools.count()
# A copy keeps the owner override (the real owner of the file in single-id mode) and the escaped
# xattrs of a nested overlay, but not our own markers of the lower directory it came from.
_KEEP_PRIVATE = (upperfmt.OVERRIDE_XATTR,)
_CLONE_REFUSED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                  errno.EPERM, errno.EBADF)


def temp_name() -> str:
    return f"copyup-{os.getpid()}-{next(_counter)}"


def copy_data(src_fd: int, dst_fd: int, size: int) -> int:
    """Copy `size` bytes, sharing extents where the filesystem can (FICLONE) and keeping holes;
    returns how many bytes of data it copied (the holes not counted)."""
    try:
        native.ficlone(dst_fd, src_fd)
        return size
    except OSError as e:
        if e.errno not in _CLONE_REFUSED:
            raise
    pos = copied = 0
    while pos < size:
        try:
            data = os.lseek(src_fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            break  # only a hole is left
        hole = os.lseek(src_fd, data, os.SEEK_HOLE)
        copied += _copy_range(src_fd, dst_fd, data, min(hole, size) - data)
        pos = hole
    os.ftruncate(dst_fd, size)
    return copied


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    """Copy in the kernel, without a trip through Python, where the file systems allow it."""
    start, end = offset, offset + count
    while offset < end:
        try:
            n = os.copy_file_range(src_fd, dst_fd, end - offset, offset, offset)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = _copy_range_by_read(src_fd, dst_fd, offset, end - offset)
        if n == 0:
            break  # the source shrank under us
        offset += n
    return offset - start


def _copy_range_by_read(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    chunk = os.pread(src_fd, min(count, 1 << 20), offset)
    if chunk:
        os.pwrite(dst_fd, chunk, offset)
    return len(chunk)


def copy_xattrs(src: str, dst: str) -> bool:
    """Copy the xattrs we can read and write from one /proc/self/fd path to another (see
    `fuse_overlay.beneath.proc`); True when an owner override came along."""
    try:
        names = os.listxattr(src)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    override = False
    for name in names:
        if (name.startswith(upperfmt.PRIVATE_XATTR_PREFIXES) and name not in _KEEP_PRIVATE
                and not name.startswith(upperfmt.ESCAPED_XATTR_PREFIX)):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as e:
            # security.* and trusted.* need privileges we may lack; user.* must come along.
            if name.startswith("user.") or e.errno not in (errno.EPERM, errno.EACCES,
                                                           errno.ENOTSUP, errno.ENODATA):
                raise
            continue
        override = override or name == upperfmt.OVERRIDE_XATTR
    return override


def copy_up(src_root: int, src_path: str, dst_root: int, dst_path: str, work_fd: int,
            xattr_permissions: bool, data: bool = True) -> os.stat_result:
    """Copy the entry at `src_path` below `src_root` to `dst_path` below `dst_root` (which must
    not exist, in a directory that does); returns the lstat of the copy. Both are walked through
    `fuse_overlay.beneath`; the copy is made in the work directory `work_fd`.

    For a directory only the directory itself is copied, its entries stay in the lower layer.
    Without `data` a regular file's copy is empty: it is about to be truncated.
    """
    with beneath.opened(src_root, src_path) as src:
        st = os.fstat(src)
        tmp = temp_name()
        try:
            _make_copy(src, st, tmp, work_fd, xattr_permissions, data)
            with beneath.parent(dst_root, dst_path) as (parent, name):
                pst = os.fstat(parent)
                os.rename(tmp, name, src_dir_fd=work_fd, dst_dir_fd=parent)
                # A copy-up adds no name to the merged directory: its times stay, as on the
                # kernel overlay.
                os.utime(beneath.proc(parent), ns=(pst.st_atime_ns, pst.st_mtime_ns))
                return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except BaseException:
            _remove(work_fd, tmp)
            raise


def copy_orphan(src: int, work_fd: int, xattr_permissions: bool, data: bool = True) -> int:
    """A copy, with no name, of `src` (an O_PATH descriptor of an entry whose last name is
    gone): an O_PATH descriptor of it, made in the work directory `work_fd`."""
    tmp = temp_name()
    try:
        _make_copy(src, os.fstat(src), tmp, work_fd, xattr_permissions, data)
        return os.open(tmp, beneath.ANY_PATH, dir_fd=work_fd)
    finally:
        _remove(work_fd, tmp)


def _make_copy(src: int, st: os.stat_result, tmp: str, work_fd: int, xattr_permissions: bool,
               data: bool) -> None:
    """The copy of `src` (an O_PATH descriptor) as `tmp` in the work directory."""
    mode = stat.S_IMODE(st.st_mode)
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        _copy_regular(src, tmp, work_fd, st, data)
    elif kind == stat.S_IFDIR:
        os.mkdir(tmp, 0o700, dir_fd=work_fd)
    elif kind == stat.S_IFLNK:
        os.symlink(os.readlink("", dir_fd=src), tmp, dir_fd=work_fd)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK) and xattr_permissions:
        # Device nodes need privilege: keep the device in the owner override instead.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                         dir_fd=work_fd))
    else:
        os.mknod(tmp, kind | 0o600, st.st_rdev, dir_fd=work_fd)
    is_link = kind == stat.S_IFLNK
    with beneath.opened(work_fd, tmp) as copy:
        has_override = copy_xattrs(beneath.proc(src), beneath.proc(copy))
        owned = _chown(work_fd, tmp, st.st_uid, st.st_gid)
        if not is_link:
            os.chmod(beneath.proc(copy), mode)
        if xattr_permissions and not is_link and not has_override and (
                not owned or kind in (stat.S_IFCHR, stat.S_IFBLK)):
            value = upperfmt.encode_override(st.st_uid, st.st_gid, st.st_mode, st.st_rdev)
            os.setxattr(beneath.proc(copy), upperfmt.OVERRIDE_XATTR, value)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=work_fd, follow_symlinks=False)


def _copy_regular(src: int, tmp: str, work_fd: int, st: os.stat_result, data: bool) -> None:
    dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                     dir_fd=work_fd)
    try:
        if data:
            src_fd = os.open(beneath.proc(src), os.O_RDONLY | os.O_CLOEXEC)
            try:
                copy_data(src_fd, dst_fd, st.st_size)
            finally:
                os.close(src_fd)
    finally:
        os.close(dst_fd)


def _chown(dir_fd: int, name: str, uid: int, gid: int) -> bool:
    """Give the copy the owner of the original; False when that needs privileges we lack."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return True
    try:
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EINVAL):
            return False
        raise
    return True


def _remove(dir_fd: int, name: str) -> None:
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
