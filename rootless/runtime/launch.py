"""Starting a container and being its supervisor until it exits (like conmon, in-process).

The supervisor stays in the host's namespaces. It forks the namespace child (before any thread
exists), maps its ids, forwards signals to it, and turns the way it ended into the exit code.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import native
from rootless.runtime.spec import ContainerSpec
from rootless.store.records import ContainerRecord
from rootless.store.store import Store
from rootless.userns.enter import spawn_in_userns

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)


class Started:
    """A running container's namespace child and the pipe that says whether its command started."""

    def __init__(self, pid: int, err_r: int) -> None:
        self.pid = pid
        self.err_r = err_r

    def start_error(self) -> tuple[int, str] | None:
        """Blocks until the command was exec'd (None) or failed to start ((code, message))."""
        chunks = []
        while True:
            b = os.read(self.err_r, 4096)
            if not b:
                break
            chunks.append(b)
        os.close(self.err_r)
        text = b"".join(chunks).decode(errors="replace")
        if not text:
            return None
        code, _, msg = text.partition(":")
        return (int(code) if code.isdigit() else 125), msg


def start(store: Store, spec: ContainerSpec, cdir: Path, stdin_fd: int | None) -> Started:
    from rootless.runtime import nsinit

    err_r, err_w = os.pipe()
    rootfs = str(cdir / "merged")

    def child() -> int:
        os.close(err_r)
        if stdin_fd is not None:
            os.dup2(stdin_fd, 0)
        return nsinit.ns_init(spec, str(cdir), rootfs, err_w)

    try:
        pid = spawn_in_userns(store.mapping, child, native.CLONE_NEWNS)
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


def run_foreground(store: Store, rec: ContainerRecord, spec: ContainerSpec, cdir: Path) -> int:
    """`rl run` without -d: the container's stdio is ours; our exit code is the command's."""
    stdin_fd = None
    devnull = -1
    if not spec.stdin:
        devnull = os.open(os.devnull, os.O_RDONLY)
        stdin_fd = devnull
    started = start(store, spec, cdir, stdin_fd)
    if devnull >= 0:
        os.close(devnull)
    previous = {s: signal.signal(s, lambda sig, _f: _forward(started.pid, sig)) for s in FORWARDED}
    store.update_container(rec.id, status="running", pid=os.getpid(), started=time.time())
    try:
        failed = started.start_error()
        code = wait_exit(started.pid)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if failed is not None:
        code = failed[0]
    store.update_container(rec.id, status="exited", pid=0, exit_code=code, finished=time.time())
    if failed is not None:
        from rootless.errors import RlError

        err = RlError(failed[1])
        err.exit_code = failed[0]
        raise err
    return code


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def remove_container(store: Store, rec: ContainerRecord) -> None:
    from rootless.runtime.create import containers_dir

    store.remove_container(rec.id)
    store.remove_trees([containers_dir(store) / rec.id])
