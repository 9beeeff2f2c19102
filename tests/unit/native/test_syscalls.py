"""native: the syscalls Python 3.11 lacks, exercised for real inside user namespaces."""
from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path

import pytest

import native
from rootless.errors import RlError
from rootless.userns.enter import run_in_userns
from rootless.userns.idmap import detect_mapping


def _in_ns(fn, *args, flags: int = 0):  # type: ignore[no-untyped-def]
    return run_in_userns(detect_mapping(), fn, *args, extra_flags=flags)


def _mount_tmpfs(target: str) -> tuple[bool, int]:
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    native.mount("tmpfs", target, "tmpfs", 0, "size=1m,mode=0755")
    Path(target, "inside").write_text("x")
    seen = os.path.exists(os.path.join(target, "inside"))
    native.umount2(target, 0)
    return seen, len(os.listdir(target))


def test_mount_and_umount_in_own_mount_namespace(tmp_path: Path) -> None:
    seen, after = _in_ns(_mount_tmpfs, str(tmp_path), flags=native.CLONE_NEWNS)
    assert seen and after == 0
    assert list(tmp_path.iterdir()) == []  # the host never saw the mount


def _errno_of(fn, *args) -> int:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def test_errors_carry_errno_and_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(OSError) as info:
        native.mount("tmpfs", missing, "tmpfs")
    assert info.value.errno in (errno.EPERM, errno.ENOENT)
    assert info.value.filename in (missing, "tmpfs")
    assert _errno_of(native.umount2, missing) in (errno.EPERM, errno.ENOENT, errno.EINVAL)
    assert _errno_of(native.setns, 9999, 0) == errno.EBADF
    assert _errno_of(native.unshare, -1) == errno.EINVAL


def _pivot(root: str) -> list[str]:
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    native.mount(root, root, None, native.MS_BIND | native.MS_REC)
    os.makedirs(os.path.join(root, "old"), exist_ok=True)
    Path(root, "marker").write_text("new root")
    os.chdir(root)
    native.pivot_root(".", "old")
    os.chdir("/")
    native.umount2("/old", native.MNT_DETACH)
    return sorted(os.listdir("/"))


def test_pivot_root_makes_a_directory_the_root(tmp_path: Path) -> None:
    names = _in_ns(_pivot, str(tmp_path), flags=native.CLONE_NEWNS)
    assert names == ["marker", "old"]


def _pivot_not_mountpoint(root: str) -> int:
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    os.makedirs(os.path.join(root, "old"), exist_ok=True)
    return _errno_of(native.pivot_root, root, os.path.join(root, "old"))


def test_pivot_root_refuses_a_directory_that_is_not_a_mount(tmp_path: Path) -> None:
    assert _in_ns(_pivot_not_mountpoint, str(tmp_path), flags=native.CLONE_NEWNS) == errno.EINVAL


def _join_uts(pid: int) -> str:
    fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
    native.setns(fd, native.CLONE_NEWUTS)
    return os.uname().nodename


def _sleeper_with_hostname(r: int, w: int) -> None:
    import socket

    native.unshare(native.CLONE_NEWUTS)
    socket.sethostname("rl-probe")
    os.write(w, b"1")
    os.read(r, 1)


def test_setns_joins_another_process_namespace() -> None:
    """A process in one user namespace sets a hostname in its own uts namespace; a child of the
    same namespace joins it with setns and sees the name."""

    def scenario() -> str:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _sleeper_with_hostname(r2, w1)
            finally:
                os._exit(0)
        os.read(r1, 1)
        try:
            return _join_uts(pid)
        finally:
            os.write(w2, b"1")
            os.waitpid(pid, 0)

    assert _in_ns(scenario) == "rl-probe"


def test_unshare_user_namespace_makes_us_root_inside() -> None:
    assert _in_ns(os.getuid) == 0


def test_prctl_no_new_privs() -> None:
    def set_and_read() -> str:
        native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
        return [line for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("NoNewPrivs")][0]

    assert _in_ns(set_and_read).split()[-1] == "1"


def test_whiteout_device_is_created_unprivileged(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        native.mknod_whiteout(fd, "gone")
    finally:
        os.close(fd)
    st = os.lstat(tmp_path / "gone")
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert (st.st_mode & 0o170000) == 0o020000


def test_failure_in_namespace_is_reported_not_hidden() -> None:
    def boom() -> None:
        raise RlError("told you")

    with pytest.raises(RlError, match="told you"):
        _in_ns(boom)



def _forward_through_a_blocked_read() -> str:
    """Runs in a single-threaded child of the test process, so the signal the forwarder sends
    back cannot land on a thread some earlier test left running in pytest (its default action
    would end the whole session)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # inherited by the fork
    data_r, data_w = os.pipe()
    ready_r, ready_w = os.pipe()
    idle_r, _idle_w = os.pipe()
    forwarder = os.fork()
    if forwarder == 0:
        native.forward_signal(signal.SIGUSR1, os.getppid())

        def catcher() -> None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
            os.write(ready_w, b"r")
            os.read(idle_r, 1)

        threading.Thread(target=catcher, daemon=True).start()
        os._exit(0 if os.read(data_r, 1) == b"d" else 1)
    if os.read(ready_r, 1) != b"r":
        return "the forwarder never got ready"
    os.kill(forwarder, signal.SIGUSR1)
    got = signal.sigtimedwait({signal.SIGUSR1}, 20)
    os.write(data_w, b"d")
    if os.waitpid(forwarder, 0)[1] != 0:
        return "the forwarder's read did not resume"
    if got is None:
        return "the signal was not sent on within 20 s"
    if got.si_pid != forwarder:
        return f"the signal came from {got.si_pid}, not from the forwarder {forwarder}"
    return "ok"


def test_forward_signal_sends_it_on_while_python_cannot_run_its_handlers() -> None:
    """The forwarder's main thread blocks in a read with the signal masked, so the signal lands
    on another thread and a Python handler would wait for the read to return (as one caught just
    before a blocking waitpid did): the C forwarder sends it on at once, and the read carries on."""
    verdict_r, verdict_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            verdict = _forward_through_a_blocked_read()
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails
            verdict = f"{type(e).__name__}: {e}"
        os.write(verdict_w, verdict.encode())
        os._exit(0)
    os.close(verdict_w)
    with os.fdopen(verdict_r, "rb") as f:
        verdict = f.read().decode()
    os.waitpid(child, 0)
    assert verdict == "ok"
