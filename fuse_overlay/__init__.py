"""A FUSE overlay filesystem with the on-disk format of the kernel overlay and fuse-overlayfs.

`mount()` starts the daemon (`python -m fuse_overlay -f`) as its own process and returns once
the mount is live. Importing this package stays cheap: trio and pyfuse3 load in the daemon only,
and subprocess only when mounting (`fuse_overlay.upperfmt` is on every container's start path).
"""
from __future__ import annotations

import os
import sys

# typing itself costs ~10 ms to import: the names below serve the annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Sequence

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How the daemon's log starts the line of a request that failed with anything but an OSError: a
# bug of ours (the request gets EIO), which the tests look for.
HANDLER_BUG = "fuse-overlay: bug in "


class FuseOverlayError(Exception):
    """Base of the errors of this package."""


class MountFailed(FuseOverlayError):
    """The daemon could not mount (bad directories, /dev/fuse unusable...)."""


class MountHandle:
    """A running daemon serving one mount."""

    def __init__(self, process: subprocess.Popen[bytes], mountpoint: str) -> None:
        self._process = process
        self.mountpoint = mountpoint

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait(self, timeout: float | None = None) -> int:
        """The daemon's exit status, once it has exited."""
        return self._process.wait(timeout)

    def unmount(self, timeout: float = 10.0) -> int:
        """Ask the daemon to unmount and exit; kill it and detach the mount if it does not."""
        import signal
        import subprocess

        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                return self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        _detach(self.mountpoint)
        return self._process.returncode


def _detach(mountpoint: str) -> None:
    """Drop a mount whose daemon is gone (a no-op when it is already unmounted)."""
    import native

    try:
        native.umount2(mountpoint, native.MNT_DETACH)
        return
    except OSError:
        pass
    import subprocess

    subprocess.run(["fusermount3", "-u", "-z", "-q", mountpoint], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM (a clean unmount) when the process that asked for the
    mount dies. Inside a container's mount namespace nothing else would ever stop it: the daemon
    itself keeps that namespace, and so its mount, alive."""
    import signal

    import native

    native.prctl(native.PR_SET_PDEATHSIG, signal.SIGTERM)


def _escape(path: str) -> str:
    if "," in path or ":" in path:
        raise MountFailed(f"directory names with ',' or ':' cannot be passed to the overlay: {path}")
    return path


def mount(lowerdirs: Sequence[str], upperdir: str, workdir: str, mountpoint: str,
          options: Sequence[str] = (), stderr_path: str | None = None,
          timeout: float = 30.0) -> MountHandle:
    """Start a daemon serving the overlay at `mountpoint`; returns once the mount is live."""
    import subprocess

    opts = [
        "lowerdir=" + ":".join(_escape(d) for d in lowerdirs),
        "upperdir=" + _escape(upperdir),
        "workdir=" + _escape(workdir),
        *options,
    ]
    read, write = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "fuse_overlay", "-f", "--ready-fd", str(write),
            "-o", ",".join(opts), mountpoint]
    stderr = open(stderr_path, "ab") if stderr_path else None  # noqa: SIM115 - the child holds it
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=stderr, pass_fds=(write,), env=env,
                                   start_new_session=True,
                                   # The namespace child that mounts is single-threaded.
                                   preexec_fn=_die_with_parent)  # noqa: PLW1509
    finally:
        os.close(write)
        if stderr is not None:
            stderr.close()
    try:
        answer = _read_answer(read, timeout)
    finally:
        os.close(read)
    if answer == "ok":
        return MountHandle(process, mountpoint)
    if answer is None:
        process.kill()
        process.wait()
        _detach(mountpoint)
        raise MountFailed(f"fuse-overlay did not mount {mountpoint} within {timeout:g} s")
    process.wait()
    message = answer.removeprefix("error: ") or (
        f"fuse-overlay exited with status {process.returncode} before mounting {mountpoint}")
    raise MountFailed(message)


def _read_answer(fd: int, timeout: float) -> str | None:
    """What the daemon wrote to its ready fd before closing it; None on timeout."""
    import select
    import time

    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return data.decode(errors="replace").strip()
        data += chunk
