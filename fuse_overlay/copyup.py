"""Copy-up: a lower entry becomes an upper one with the same data, mode, owner, times and xattrs.

The copy is built in the work directory and renamed into place, so a crash never leaves a half
copied file in the upper directory.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat

from fuse_overlay import upperfmt

FICLONE = 0x40049409
_counter = itertools.count()
# A copy keeps the owner override (the real owner of the file in single-id mode) and the escaped
# xattrs of a nested overlay, but not our own markers of the lower directory it came from.
_KEEP_PRIVATE = (upperfmt.OVERRIDE_XATTR,)
_CLONE_REFUSED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                  errno.EPERM, errno.EBADF)


def temp_name(workdir: str) -> str:
    return f"{workdir}/copyup-{os.getpid()}-{next(_counter)}"


def copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy `size` bytes, sharing extents where the filesystem can (FICLONE) and keeping holes."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return
    except OSError as e:
        if e.errno not in _CLONE_REFUSED:
            raise
    pos = 0
    while pos < size:
        try:
            data = os.lseek(src_fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            break  # only a hole is left
        hole = os.lseek(src_fd, data, os.SEEK_HOLE)
        _copy_range(src_fd, dst_fd, data, min(hole, size) - data)
        pos = hole
    os.ftruncate(dst_fd, size)


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    end = offset + count
    while offset < end:
        try:
            n = os.copy_file_range(src_fd, dst_fd, end - offset, offset, offset)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = _copy_range_by_read(src_fd, dst_fd, offset, end - offset)
        if n == 0:
            return  # the source shrank under us
        offset += n


def _copy_range_by_read(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    chunk = os.pread(src_fd, min(count, 1 << 20), offset)
    if chunk:
        os.pwrite(dst_fd, chunk, offset)
    return len(chunk)


def copy_xattrs(src: str, dst: str | int, is_link: bool) -> bool:
    """Copy the xattrs we can read and write; True when an owner override came along."""
    follow = not is_link
    try:
        names = os.listxattr(src, follow_symlinks=follow)
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
            value = os.getxattr(src, name, follow_symlinks=follow)
            if isinstance(dst, int):
                os.setxattr(dst, name, value)
            else:
                os.setxattr(dst, name, value, follow_symlinks=follow)
        except OSError as e:
            # security.* and trusted.* need privileges we may lack; user.* must come along.
            if name.startswith("user.") or e.errno not in (errno.EPERM, errno.EACCES,
                                                           errno.ENOTSUP, errno.ENODATA):
                raise
            continue
        override = override or name == upperfmt.OVERRIDE_XATTR
    return override


def copy_up(src: str, dst: str, workdir: str, xattr_permissions: bool,
            data: bool = True) -> os.stat_result:
    """Copy the entry at `src` to `dst` (which must not exist); returns the lstat of `dst`.

    For a directory only the directory itself is copied, its entries stay in the lower layer.
    Without `data` a regular file's copy is empty: it is about to be truncated.
    """
    st = os.lstat(src)
    tmp = temp_name(workdir)
    mode = stat.S_IMODE(st.st_mode)
    kind = stat.S_IFMT(st.st_mode)
    try:
        if kind == stat.S_IFREG:
            _copy_regular(src, tmp, st, data)
        elif kind == stat.S_IFDIR:
            os.mkdir(tmp, 0o700)
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(src), tmp)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK) and xattr_permissions:
            # Device nodes need privilege: keep the device in the owner override instead.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        else:
            os.mknod(tmp, kind | 0o600, st.st_rdev)
        is_link = kind == stat.S_IFLNK
        has_override = copy_xattrs(src, tmp, is_link)
        owned = _chown(tmp, st.st_uid, st.st_gid, is_link)
        if not is_link:
            os.chmod(tmp, mode)
        if xattr_permissions and not is_link and not has_override and (
                not owned or kind in (stat.S_IFCHR, stat.S_IFBLK)):
            value = upperfmt.encode_override(st.st_uid, st.st_gid, st.st_mode, st.st_rdev)
            os.setxattr(tmp, upperfmt.OVERRIDE_XATTR, value)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        parent = os.path.dirname(dst)
        pst = os.lstat(parent)
        os.rename(tmp, dst)
    except BaseException:
        _remove(tmp)
        raise
    # A copy-up adds no name to the merged directory: its times stay, as on the kernel overlay.
    os.utime(parent, ns=(pst.st_atime_ns, pst.st_mtime_ns))
    return os.lstat(dst)


def _copy_regular(src: str, tmp: str, st: os.stat_result, data: bool) -> None:
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        dst_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if data:
                copy_data(src_fd, dst_fd, st.st_size)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def _chown(path: str, uid: int, gid: int, is_link: bool) -> bool:
    """Give the copy the owner of the original; False when that needs privileges we lack."""
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return True
    try:
        os.chown(path, uid, gid, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EINVAL):
            return False
        raise
    return True


def _remove(path: str) -> None:
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass
