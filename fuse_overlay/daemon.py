"""The foreground daemon: check the directories, mount, serve until a signal or an unmount.

This is the only module that imports trio and pyfuse3 (~330 ms together), and it runs in its
own process: pyfuse3 keeps one mount in module globals.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable

from fuse_overlay.options import Config

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class MountRefused(Exception):
    """The mount could not be made; the text is the one-line reason."""


def check_dirs(config: Config) -> str | None:
    """Refuse unusable directories before mounting; returns the copy-up scratch directory."""
    for d in config.lowerdirs:
        _need_dir("lowerdir", d)
    _need_dir("mountpoint", config.mountpoint)
    if config.upperdir is None or config.workdir is None:
        return None
    _need_dir("upperdir", config.upperdir)
    _need_dir("workdir", config.workdir)
    upper, work = os.path.realpath(config.upperdir), os.path.realpath(config.workdir)
    if os.path.commonpath([upper, work]) in (upper, work):
        # The copy-up scratch would show in the merged tree, or the upper in the scratch.
        raise MountRefused(f"upperdir {config.upperdir} and workdir {config.workdir} must not "
                         "contain one another")
    if os.stat(config.upperdir).st_dev != os.stat(config.workdir).st_dev:
        raise MountRefused(f"upperdir {config.upperdir} and workdir {config.workdir} must be on "
                         "the same filesystem")
    # Our own subdirectory: the kernel overlay keeps `work` and `index` in a workdir.
    scratch = os.path.join(os.path.abspath(config.workdir), "fuse-overlay")
    try:
        shutil.rmtree(scratch, ignore_errors=True)  # half copies of a crashed daemon
        os.makedirs(scratch, mode=0o700, exist_ok=True)
    except OSError as e:
        raise MountRefused(f"workdir {config.workdir}: {e.strerror}") from e
    if not os.access(config.upperdir, os.W_OK | os.X_OK):
        raise MountRefused(f"upperdir {config.upperdir} is not writable")
    return scratch


def _need_dir(what: str, path: str) -> None:
    try:
        if os.path.isdir(path):
            os.listdir(path)
            return
    except OSError as e:
        raise MountRefused(f"{what} {path}: {e.strerror}") from e
    raise MountRefused(f"{what} {path} is not a directory")


def _enable_hooks() -> None:
    import native

    try:
        native.fuse_hooks_enable()
    except OSError as e:
        # The overlay still works: SEEK_DATA/SEEK_HOLE see one extent, fallocate fails.
        print(f"fuse-overlay: no lseek/fallocate/copy_file_range handlers: {e.strerror}",
              file=sys.stderr)


def fuse_options(config: Config) -> set[str]:
    opts = {"default_permissions", "fsname=fuse-overlay", "subtype=fuse-overlay"}
    # Inside a user namespace the daemon is root there, and the container's other users must
    # reach the mount; on the host allow_other needs user_allow_other in /etc/fuse.conf.
    if config.allow_other or os.geteuid() == 0:
        opts.add("allow_other")
    if os.geteuid() == 0:
        # libfuse mounts nosuid unless told: setuid and file capabilities must work in a
        # container, as on the kernel overlay (fusermount3 refuses it to a host user).
        opts.add("suid")
    if config.read_only:
        opts.add("ro")
    opts.update(config.fuse_options)
    return opts


def _init_capturing_stderr(ops: object, mountpoint: str, opts: set[str]) -> None:
    """pyfuse3.init, with what libfuse and fusermount3 print turned into the error message."""
    import pyfuse3

    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    try:
        pyfuse3.init(ops, mountpoint, opts)
        failure = None
    except RuntimeError as e:
        failure = str(e)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.set_blocking(read, False)
    try:
        said = os.read(read, 65536).decode(errors="replace")
    except BlockingIOError:
        said = ""
    os.close(read)
    if failure is not None:
        lines = [line.strip() for line in said.splitlines() if line.strip()]
        raise MountRefused(f"mounting {mountpoint} failed: {lines[-1] if lines else failure}")


def serve(config: Config, report: Callable[[str | None], None]) -> int:
    """Mount and serve; calls `report(None)` once the mount is live or `report(message)` when it
    cannot be made (then returns 1)."""
    try:
        scratch = check_dirs(config)
        os.umask(0)  # modes come from the caller, already masked by the kernel
        _enable_hooks()
        import pyfuse3
        import trio

        from fuse_overlay.ops import Overlay

        if config.debug:
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        ops = Overlay(config, scratch)
        _init_capturing_stderr(ops, config.mountpoint, fuse_options(config))
    except MountRefused as e:
        report(str(e))
        return 1
    except OSError as e:
        report(f"{e.filename or config.mountpoint}: {e.strerror}")
        return 1
    # A stop asked for between the report and the start of the loop must not kill us with the
    # mount left behind: note it until trio takes the signals over.
    early: list[int] = []
    for signum in _STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: early.append(signum))
    report(None)
    try:
        stopped_by_signal = trio.run(_main, pyfuse3, early)
    except BaseException:
        # A dead daemon must not leave a mount whose every access fails with ENOTCONN.
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=stopped_by_signal)
    ops.close()
    return 0


async def _main(pyfuse3: object, early: list[int]) -> bool:
    """Serve until unmounted (False) or told to stop by a signal (True)."""
    import trio

    by_signal = False

    async def watch() -> None:
        nonlocal by_signal
        with trio.open_signal_receiver(*_STOP_SIGNALS) as signals:
            if not early:
                async for _ in signals:
                    break
            by_signal = True
            pyfuse3.terminate()  # type: ignore[attr-defined]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        try:
            await pyfuse3.main()  # type: ignore[attr-defined]
        except OSError as e:
            # ENODEV: the connection was aborted (fusectl); like an unmount.
            if e.errno not in (errno.ENODEV, errno.EBADF):
                raise
        nursery.cancel_scope.cancel()
    return by_signal
