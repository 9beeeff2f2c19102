"""Starting a container and being its supervisor until it exits (like conmon, in-process).

The supervisor stays in the host's namespaces. It forks the namespace child (before any thread
exists), maps its ids, forwards signals to it, and turns the way it ended into the exit code.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import native
from rootless import killpoint
from rootless.errors import StartFailed, StoreFull
from rootless.runtime.nsinit import FORWARDED, forward_signals, hold_signals, read_report, release_signals, restore_signals
from rootless.runtime.spec import ContainerSpec
from rootless.store.records import ContainerRecord
from rootless.store.store import Store
from rootless.userns.enter import spawn_in_userns
from rootless.userns.idmap import IdMapping
from rootless.userns.keepid import for_container


class Started:
    """A running container's namespace child and the pipe that says whether its command started."""

    def __init__(self, pid: int, err_r: int) -> None:
        self.pid = pid
        self.err_r = err_r

    def start_error(self) -> StartFailed | None:
        """Blocks until the command was exec'd (None) or failed to start."""
        return read_report(self.err_r)


def start(mapping: IdMapping, spec: ContainerSpec, cdir: Path, stdin_fd: int | None,
          stdout_fd: int | None = None, stderr_fd: int | None = None) -> Started:
    """Fork the namespace child; stdio not given is ours."""
    from rootless.runtime import nsinit

    err_r, err_w = os.pipe()
    rootfs = str(cdir / "merged")

    def child() -> int:
        os.close(err_r)
        for fd, target in ((stdin_fd, 0), (stdout_fd, 1), (stderr_fd, 2)):
            if fd is not None:
                os.dup2(fd, target)
        return nsinit.ns_init(spec, str(cdir), rootfs, err_w)

    try:
        pid = spawn_in_userns(for_container(mapping, spec.userns), child, native.CLONE_NEWNS)
    finally:
        os.close(err_w)
    return Started(pid, err_r)


def wait_exit(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 125
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def start_ticks(pid: int) -> int:
    """When process pid started (clock ticks after boot), 0 if it is gone or a zombie: with the pid,
    it names one process, never another that reuses the number."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return 0
    return 0 if fields[0] in (b"Z", b"X") else int(fields[19])


def running(store: Store, rec: ContainerRecord, started: Started, at: float) -> None:
    """Record that we supervise the container now, and how to reach it."""
    me = os.getpid()
    store.update_container(rec.id, status="running", pid=me, pid_start=start_ticks(me), init_pid=started.pid,
                           init_start=start_ticks(started.pid), started=at, finished=0.0, exit_code=None)


def run_foreground(store: Store, rec: ContainerRecord, spec: ContainerSpec, cdir: Path, echo: bool = True) -> int:
    """`rl run` without -d, `rl start -a`: the container's stdio is ours; our exit code is the
    command's. With --rm its stdout and stderr are our own fds (nothing in between, nothing kept);
    otherwise they are pipes we copy to ours (unless not `echo`: `rl build -q`) and into the log,
    for `rl logs` after. With -t they are its own terminal, which we relay."""
    stdin_fd = None
    devnull = -1
    if not spec.stdin and not spec.tty:
        devnull = os.open(os.devnull, os.O_RDONLY)
        stdin_fd = devnull
    log = None
    if not spec.auto_remove:
        from rootless.runtime.logs import log_path

        log = log_path(cdir)
    pipes = None if spec.auto_remove or spec.tty else (os.pipe(), os.pipe())
    at = time.time()
    hold_signals()
    try:
        if spec.tty:
            from rootless.runtime import pty

            ours, theirs = pty.socket_pair()
            started = start(store.mapping, spec, cdir, theirs.fileno(), theirs.fileno(), theirs.fileno())
            theirs.close()
        elif pipes is None:
            started = start(store.mapping, spec, cdir, stdin_fd)
        else:
            started = start(store.mapping, spec, cdir, stdin_fd, pipes[0][1], pipes[1][1])
            os.close(pipes[0][1])
            os.close(pipes[1][1])
        if devnull >= 0:
            os.close(devnull)
    except BaseException:
        release_signals()
        raise
    previous = forward_signals(started.pid)
    release_signals()
    running(store, rec, started, at)
    killpoint.reached("run-started")
    try:
        failed = started.start_error()
        if spec.tty:
            if failed is None:
                pty.relay(pty.receive_master(ours), log, spec.stdin, echo=True)
            ours.close()
        elif pipes is not None and log is not None:
            from rootless.runtime.logs import pump

            pump(log, pipes[0][0], pipes[1][0], echo=echo)
        code = wait_exit(started.pid)
    finally:
        restore_signals(previous)
    if failed is not None:
        code = failed.exit_code
    store.update_container(rec.id, status="exited", pid=owner_after_exit(spec), exit_code=code, finished=time.time())
    killpoint.reached("run-exited")
    if failed is not None:
        raise failed
    return code


def owner_after_exit(spec: ContainerSpec) -> int:
    """The pid an exited record names: ours while we are still to remove it (--rm, a build
    step), so that if we are killed first the next rl command does; else none."""
    return os.getpid() if spec.goes_with_its_rl else 0


def remove_container(store: Store, rec: ContainerRecord, anonymous_volumes: bool) -> None:
    """The record and the directory; with anonymous_volumes (`run --rm`, `rm -v`, as Docker)
    also the anonymous volumes no other container uses. Named volumes always stay."""
    from rootless.runtime.create import containers_dir

    cdir = containers_dir(store) / rec.id
    with store.adding():  # a directory without its record is a leftover to the collector
        try:
            store.remove_container(rec.id)
        except StoreFull:
            # What filled the disk is most likely the container's own writable layer, and SQLite
            # needs room to write even a deletion.
            store.remove_trees([cdir])
            store.remove_container(rec.id)
        killpoint.reached("remove-record")
        store.remove_trees([cdir])
    if anonymous_volumes:
        from rootless.runtime.volumes import remove_anonymous

        remove_anonymous(store, ContainerSpec.from_json(rec.spec).mounts)
