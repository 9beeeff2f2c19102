"""What a process of rl sheds before it becomes a container's command, and how it reads the
container's files: nothing of the host may go through to the container.

rl's processes that enter a container (pid 1, the joining process of `rl exec`) are forks of the
CLI, which holds the host's descriptors: its own (the store's database, a build's context) and
whatever the shell left open. One of them is a way out: `/proc/self/fd/N/..` names the host's
directory from inside (runc's CVE-2024-21626, through a working directory, a command path or
/etc/passwd). So every descriptor above 2 is closed, not just marked close-on-exec, before rl
resolves any path the container controls; only those passed on purpose (`--preserve-fds N`:
3..3+N-1, as podman) and the pipe that reports the start stay.

These processes run the host's Python, with the host's environment in their memory: while one is
dumpable, a process of the container with the same ids (and CAP_SYS_PTRACE for the capability
check) can open its /proc/PID/environ, exe, cwd and fd (runc's CVE-2019-5736 went through exe).
So they are not dumpable until they exec; the exec makes the command dumpable again.
"""
from __future__ import annotations

import errno
import gc
import os
import stat

import native
from rootless.errors import StartFailed, UsageError

# /etc/passwd and /etc/group larger than this are an attack (a sparse file), not a user database.
ACCOUNT_FILE_LIMIT = 16 << 20
_FIRST = 3  # stdin, stdout and stderr always go through


def check_preserved(count: int) -> None:
    """`--preserve-fds N` passes the caller's descriptors 3..3+N-1: each must be open now, before
    rl opens anything that could take a number in that range (podman refuses the same way)."""
    for fd in range(_FIRST, _FIRST + count):
        try:
            os.fstat(fd)
        except OSError:
            raise UsageError(f"--preserve-fds {count} passes descriptors {_FIRST} to {_FIRST + count - 1}, "
                             f"but descriptor {fd} is not open")


def shed_host_descriptors(preserve: int, keep: int) -> None:
    """Close every descriptor above 2 but the `preserve` ones from 3, which the command inherits,
    and `keep` (the report pipe, close-on-exec), which must be above them."""
    # A finalizer of one of the CLI's objects would close whatever file reuses its number now.
    gc.disable()
    first = _FIRST + preserve
    for low, high in ((first, keep - 1), (max(first, keep + 1), 0xFFFFFFFF)):
        if low <= high:
            try:
                native.close_range(low, high)
            except OSError:  # before Linux 5.9
                os.closerange(low, min(high + 1, os.sysconf("SC_OPEN_MAX")))
    for fd in range(_FIRST, first):
        os.set_inheritable(fd, True)


def not_dumpable() -> None:
    """Keep the container's processes out of ours through /proc until we exec (see above)."""
    native.prctl(native.PR_SET_DUMPABLE, 0)


def forget_host_environment() -> None:
    """Zero the environment rl was started with, which /proc/PID/environ shows, in a process that
    stays rl's Python inside the container (--init's pid 1) and must stay dumpable."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    start, end = int(fields[47]), int(fields[48])  # env_start and env_end (fields 50 and 51)
    native.zero_memory(start, end - start)


def enter_workdir(path: str, code: int, create: bool) -> None:
    """chdir to the command's working directory (made first when `create`), which must be inside
    the container: getcwd fails when it is not reachable from our root."""
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        os.chdir(path)
    except OSError as e:
        raise StartFailed(code, f"cannot use the working directory {path}: {e.strerror}") from e
    try:
        os.getcwd()
    except FileNotFoundError:
        raise StartFailed(code, f"cannot use the working directory {path}: it is outside the container")


def read_account_file(path: str) -> str | None:
    """The text of the container's /etc/passwd or /etc/group, None when there is none. Read as
    hostile: no magic link (/proc/self/fd/N) on the way, not a symlink itself, not a FIFO or
    device (a FIFO would hang us, /dev/zero fill our memory), at most ACCOUNT_FILE_LIMIT bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            fd = native.openat2(native.AT_FDCWD, path, flags, native.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
            fd = os.open(path, flags)  # before Linux 5.6; the descriptors are closed already
    except FileNotFoundError:
        return None
    except OSError as e:
        what = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise StartFailed(125, f"cannot read {path} in the container: {what}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StartFailed(125, f"cannot read {path} in the container: it is not a regular file")
        data = _read_at_most(fd, ACCOUNT_FILE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > ACCOUNT_FILE_LIMIT:
        raise StartFailed(125, f"cannot read {path} in the container: it is larger than "
                              f"{ACCOUNT_FILE_LIMIT >> 20} MiB")
    return data.decode("utf-8", errors="replace")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
