"""Small files rl remembers in the runtime directory (see paths.open_runtime_dir): probe results,
compiled seccomp filters. They are read as untrusted input, only through a descriptor of that
directory: a link, a FIFO or an oversized file is no cached value, and the caller checks the
content. They are written under a fresh name (O_EXCL|O_NOFOLLOW) and renamed into place, so a
reader never sees half a file and a planted symlink is never written through."""
from __future__ import annotations

import os
import stat


def read(dir_fd: int, name: str, max_size: int) -> bytes | None:
    """The file's bytes, or None when it is missing or not a regular file of at most max_size."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_size:
            return None
        return os.read(fd, max_size + 1)[:max_size]
    except OSError:
        return None
    finally:
        os.close(fd)


def write(dir_fd: int, name: str, data: bytes) -> None:
    """Best effort: a cache that cannot be written is computed again next time."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        pass
