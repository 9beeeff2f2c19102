"""`rl exec`: a command in a running container, and joining a container's namespaces.

The process that joins is a fresh fork of the single-threaded `rl`: setns into a user namespace
fails in a threaded process. It joins the user namespace first (that gives it the capabilities
the other joins need), then mnt, uts, ipc, net and pid. A pid namespace applies only to
children, so it forks once more: that grandchild becomes the user and execs the command, while
the joined child waits for it and forwards signals (it is root of the container's user
namespace; `rl` is not).

With -t the command gets a terminal as `rl run -t` gives pid 1 (see rootless.runtime.pty): the
grandchild opens it from the container's devpts, being in its mount namespace, and sends the
master back over the socket pair that is its stdio until then.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import native
from rootless.errors import RlError, describe
from rootless.runtime import handoff, nsinit, users
from rootless.runtime.launch import wait_exit
from rootless.runtime.spec import ContainerSpec
from rootless.store.records import ContainerRecord
from rootless.store.store import Store
from rootless.values import valueclass

# The order matters: the user namespace first, whose capabilities allow the other joins.
_NAMESPACES = (("user", native.CLONE_NEWUSER), ("mnt", native.CLONE_NEWNS), ("uts", native.CLONE_NEWUTS),
               ("ipc", native.CLONE_NEWIPC), ("net", native.CLONE_NEWNET), ("pid", native.CLONE_NEWPID))
ALL_NAMESPACES = tuple(name for name, _ in _NAMESPACES)


@valueclass
class Container:
    """A container as the runtime finds it: its record, spec, directory and, while it runs, the
    host pids of its namespace init and of its pid 1 (0 when it is not running).

    The namespace init is in the container's user, uts, ipc and net namespaces, and its
    `pid_for_children` is the container's pid namespace. The mount namespace with the container's
    root is pid 1's own: pid 1 made it to pivot_root without moving the namespace init's root.
    """

    rec: ContainerRecord
    spec: ContainerSpec
    cdir: Path
    ns_pid: int
    pid1: int = 0

    @property
    def running(self) -> bool:
        return self.ns_pid > 0


@valueclass
class ExecOptions:
    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    preserve_fds: int = 0  # the caller's descriptors 3..3+N-1 go to the command


def find_container(store: Store, ref: str) -> Container:
    from rootless.runtime.create import containers_dir

    rec = store.container(ref)
    cdir = containers_dir(store) / rec.id
    ns_pid = _live_ns_pid(rec, cdir)
    pid1 = int((cdir / "pid1").read_text()) if ns_pid else 0
    return Container(rec, ContainerSpec.from_json(rec.spec), cdir, ns_pid, pid1)


def _live_ns_pid(rec: ContainerRecord, cdir: Path) -> int:
    """The namespace init's host pid if the container runs, else 0. The pid 1 file outlives the
    container, so its parent must also be in another user namespace than ours (not a recycled pid)."""
    if rec.status != "running":
        return 0
    try:
        pid1 = int((cdir / "pid1").read_text())
        with open(f"/proc/{pid1}/status") as f:
            ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        if os.stat(f"/proc/{ppid}/ns/user").st_ino == os.stat("/proc/self/ns/user").st_ino:
            return 0
    except (OSError, ValueError, StopIteration):
        return 0
    return ppid


def running_container(store: Store, ref: str) -> Container:
    c = find_container(store, ref)
    if not c.running:
        raise RlError(f"container {ref} is not running")
    return c


def join_namespaces(ns_pid: int, kinds: tuple[str, ...], mnt_pid: int) -> None:
    """setns into those of the namespace init's namespaces (user, mnt, uts, ipc, net, pid) that
    differ from ours. The pid namespace applies to the children forked after.

    Joining one we are already in is skipped: with --network host the container's net namespace
    is the host's, which a user namespace's root may not enter. All are opened before the first
    join, while /proc still shows the host's view.
    """
    fds: list[tuple[int, int]] = []
    try:
        for name, flag in _NAMESPACES:
            if name not in kinds:
                continue
            owner = mnt_pid if name == "mnt" else ns_pid
            path = f"/proc/{owner}/ns/{'pid_for_children' if name == 'pid' else name}"
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag))
        for fd, flag in fds:
            native.setns(fd, flag)
    finally:
        for fd, _ in fds:
            os.close(fd)


def exec_in(c: Container, opts: ExecOptions) -> int:
    """Run opts.command in the running container c; the command's exit code (0 at once with -d)."""
    from rootless.runtime import options

    env = options.build_env(c.spec.env, opts.env_files, opts.env, os.environ, hostname=c.spec.hostname,
                            tty=opts.tty)
    ours = theirs = None
    if opts.tty:
        from rootless.runtime import pty

        ours, theirs = pty.socket_pair()
    err_r, err_w = os.pipe()
    nsinit.hold_signals()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 125
        try:
            nsinit.release_signals()
            os.close(err_r)
            terminal = None
            if ours is not None and theirs is not None:
                ours.close()
                terminal = theirs.fileno()
            code = _joined_child(c, opts, env, err_w, terminal)
        except (FileNotFoundError, ProcessLookupError):
            nsinit.report(err_w, 125, f"container {c.rec.name} is not running")  # it exited meanwhile
        except BaseException as e:  # noqa: BLE001 - the parent reads the reason from the pipe
            nsinit.report(err_w, 125, f"cannot join container {c.rec.name}: {describe(e)}")
        finally:
            os._exit(code)
    os.close(err_w)
    if theirs is not None:
        theirs.close()
    previous = nsinit.forward_signals(pid)
    nsinit.release_signals()
    try:
        failed = nsinit.read_report(err_r)
        if opts.detach and failed is None:
            return 0
        if ours is not None:
            if failed is None:
                pty.relay(pty.receive_master(ours), None, opts.interactive, echo=True)
            ours.close()
        code = wait_exit(pid)
    finally:
        nsinit.restore_signals(previous)
    if failed is not None:
        raise failed
    return code


def _joined_child(c: Container, opts: ExecOptions, env: list[str], err_w: int, terminal: int | None) -> int:
    """terminal: with -t, our end of the socket pair, which becomes our stdio until the command
    takes its terminal."""
    handoff.not_dumpable()  # and so is the child that enters the container's pid namespace
    if opts.detach:
        # Outlives `rl exec`: its own session, no terminal, stdio to /dev/null.
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    else:
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if terminal is not None:
            for fd in (0, 1, 2):
                os.dup2(terminal, fd)
        elif not opts.interactive:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
    join_namespaces(c.ns_pid, ALL_NAMESPACES, c.pid1)
    nsinit.hold_signals()
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            nsinit.release_signals()
            code = _command(c.spec, opts, env, err_w)
        finally:
            os._exit(code)
    nsinit.forward_signals(pid)
    nsinit.release_signals()
    os.close(err_w)
    return wait_exit(pid)


def _command(spec: ContainerSpec, opts: ExecOptions, env: list[str], err_w: int) -> int:
    """In every namespace of the container, its root as ours: become the user and exec."""
    try:
        handoff.shed_host_descriptors(opts.preserve_fds, err_w)
        if opts.tty:
            # Its own session, so that the terminal can become its controlling one.
            os.setsid()
        user = users.resolve_user(opts.user if opts.user is not None else spec.user,
                                  nsinit.read_text("/etc/passwd"), nsinit.read_text("/etc/group"), spec.group_add)
        if not any(e.startswith("HOME=") for e in env):
            env = [*env, f"HOME={user.home}"]
        cwd = opts.workdir or spec.cwd
        handoff.enter_workdir(cwd, 126, create=False)
        nsinit.become(spec, user)
        if not opts.detach:
            # Changing credentials cleared the parent-death signal: set it again for the new user.
            native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if opts.tty:
            # Opened as the user, as pid 1 does, so the terminal is theirs.
            nsinit.take_terminal()
        nsinit.exec_command(opts.command, env, err_w)
    except (OSError, RlError) as e:
        return nsinit.report_failure(err_w, e)
    return 125
