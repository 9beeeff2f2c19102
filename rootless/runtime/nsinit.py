"""What runs inside the container's namespaces: mounts, pivot_root, identity, exec.

Two processes run this code. `ns_init` is root of the container's user namespace in its own mount
namespace: it mounts the root file system and the volumes, unshares the pid/uts/ipc(/net)
namespaces and forks the container's pid 1, to which it forwards signals. `_pid1` finishes the
mounts that need the new pid namespace (/proc), builds /dev, pivots into the root, becomes the
requested user and execs the command. A failure before exec is written to `err_fd` as
"CODE:message" so the supervisor reports it with Docker's exit codes (125, 126, 127).

Everything is imported up front: after pivot_root the host's Python library is out of reach.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
from collections.abc import Iterator

import native
from rootless.errors import RlError, StartFailed, describe
from rootless.runtime import caps as capsmod
from rootless.runtime import handoff, mountfd, users
from rootless.runtime.spec import ContainerSpec
from rootless.userns.enter import read_all

_NOSUID_NODEV_NOEXEC = native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC
_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
              signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM)
# What Docker and podman hide and make read-only (podman's lists, a superset of Docker's),
# relative to the proc and sysfs mounts.
_MASKED = {"proc": ("acpi", "interrupts", "kcore", "keys", "latency_stats", "sched_debug", "scsi",
                    "timer_list", "timer_stats"),
           "sys": ("dev/block", "devices/virtual/powercap", "firmware", "fs/selinux")}
_READONLY = ("asound", "bus", "fs", "irq", "sys", "sysrq-trigger")


MOUNT_POINTS = "mountpoints"  # in the container's directory: see _remember_mount_points


def _mount_volumes(spec: ContainerSpec, root_fd: int, created: list[str]) -> None:
    for m in spec.mounts:
        if m.target.rstrip("/") == "/proc" or m.target.startswith("/proc/"):
            # pid 1 mounts the kernel's proc there: nothing of the host's may stand in for it.
            raise StartFailed(125, f"cannot mount on {m.target}: rl mounts the kernel's /proc there")
        if m.type == "tmpfs":
            flags = 0
            data = []
            for o in m.options:
                flag = {"ro": native.MS_RDONLY, "nosuid": native.MS_NOSUID, "nodev": native.MS_NODEV,
                        "noexec": native.MS_NOEXEC}.get(o)
                if flag:
                    flags |= flag
                elif o not in ("rw", "exec", "suid", "dev"):
                    data.append(o)
            if m.readonly:
                flags |= native.MS_RDONLY
            with _target(root_fd, m.target, True, created) as target:
                native.mount("tmpfs", mountfd.fd_path(target), "tmpfs", flags, ",".join(data) or None)
            continue
        with _target(root_fd, m.target, os.path.isdir(m.source), created) as target:
            try:
                mountfd.bind(m.source, target, m.readonly)
            except OSError as e:
                raise StartFailed(125, f"cannot mount {m.source} on {m.target}: {e.strerror}") from e


@contextlib.contextmanager
def _target(root_fd: int, target: str, is_dir: bool, created: list[str] | None = None) -> Iterator[int]:
    fd = mountfd.open_target(root_fd, target, is_dir, created)
    try:
        yield fd
    finally:
        os.close(fd)


def _bind_file(root_fd: int, source: str, target: str, created: list[str]) -> None:
    with _target(root_fd, target, False, created) as fd:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise StartFailed(125, f"cannot mount a file on {target}: it is a directory in the image")
        mountfd.bind(source, fd, False, recursive=False)


def ns_init(spec: ContainerSpec, cdir: str, rootfs: str, err_fd: int) -> int:
    """The namespace init: root of the container's user namespace, in a mount namespace of its
    own; returns the container's exit code (or the start's, 125-127, after report()ing why).

    The order is the design:
    1. the root file system (`mount_rootfs`: the kernel overlay, the FUSE overlay's daemon or the
       vfs copy) and every mount point in it, each target resolved once to a descriptor beneath
       the root (`mountfd`), so that a symlink the image or a shared volume swaps in cannot
       redirect a mount; the mount points rl made are remembered (they are not the container's
       changes);
    2. the new pid, uts, ipc (and for --network none, net) namespaces, unshared here so that the
       next fork is pid 1 of the container;
    3. the fork of pid 1 (`_pid1`) with the forwarded signals held across it: none sent during
       the fork is lost or reaches the wrong process;
    4. then this process only forwards signals to pid 1 and waits for it (and, on the FUSE
       overlay, watches the daemon: a container whose file system died is ended, not left to
       hang). It stays because only root of the user namespace may signal pid 1 there.
    """
    # A supervisor that dies takes its container with it, never leaving it running unwatched.
    native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Before pid 1 exists, a forwarded signal ends us, and with us the start (as Docker's would).
    release_signals()
    fuse = None
    try:
        native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
        fuse = mount_rootfs(spec, cdir, rootfs)
        created: list[str] = []
        root_fd = mountfd.open_root(rootfs)
        try:
            for d in ("proc", "dev", "sys"):  # mounted on by pid 1; made here to be remembered
                os.close(mountfd.real_dir(root_fd, d, created))
            _mount_volumes(spec, root_fd, created)
            for name in ("hostname", "hosts", "resolv.conf"):
                _bind_file(root_fd, os.path.join(cdir, name), f"/etc/{name}", created)
        finally:
            os.close(root_fd)
        if created:
            _remember_mount_points(cdir, created)
        flags = native.CLONE_NEWPID | native.CLONE_NEWUTS | native.CLONE_NEWIPC
        if spec.network == "none":
            flags |= native.CLONE_NEWNET
        native.unshare(flags)
    except (OSError, RlError) as e:
        if fuse is not None:
            fuse.unmount()
        return report_failure(err_fd, e)
    # Signals reach pid 1 through us: we are root of its user namespace, the supervisor is not.
    hold_signals()
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            # As the init of its pid namespace, pid 1 never gets a signal it has no handler for:
            # the --init keeps them pending until it waits for them, so none sent meanwhile is
            # dropped. A command that is pid 1 itself misses those sent before its trap, as with
            # Docker.
            if not spec.init:
                release_signals()
            code = _pid1(spec, rootfs, err_fd)
        finally:
            os._exit(code)
    forward_signals(pid)
    release_signals()
    os.close(err_fd)
    _write_pid1(cdir, pid)
    if fuse is None:
        return _exit_code(os.waitpid(pid, 0)[1])
    return _wait_with_daemon(pid, fuse, cdir)


def _exit_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _wait_with_daemon(pid: int, fuse, cdir: str) -> int:  # type: ignore[no-untyped-def]
    """Wait for pid 1 while watching the FUSE daemon: a container whose file system died must
    fail at once and say so, not hang or limp on with every access failing."""
    daemon_died = False
    while True:
        child, status = os.wait()
        if child == fuse.pid and not daemon_died:
            daemon_died = True
            forward_signal(pid, signal.SIGKILL)
            how = f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else \
                f"signal {os.WTERMSIG(status)}"
            try:
                os.write(2, f"rl: the FUSE overlay of this container stopped ({how}): its log is "
                            f"{fuse_log(cdir)}\n".encode())
            except OSError:
                pass
        elif child == pid:
            code = 125 if daemon_died else _exit_code(status)
            if not daemon_died:
                fuse.unmount()
            return code


def _remember_mount_points(cdir: str, created: list[str]) -> None:
    """The mount points rl made in the container's root: they are rl's, not the container's
    changes, so commit and build leave them out of the layer (Docker keeps them in an init layer).
    Kept across restarts, when they exist already and are not made again."""
    path = os.path.join(cdir, MOUNT_POINTS)
    try:
        with open(path, encoding="utf-8") as f:
            known = f.read().splitlines()
    except FileNotFoundError:
        known = []
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in dict.fromkeys(known + created)))
    os.rename(tmp, path)


def _write_pid1(cdir: str, pid: int) -> None:
    """The host pid of the container's pid 1: how exec, cp and the lifecycle commands find its
    namespaces. Written atomically, so a reader never sees half a number."""
    tmp = os.path.join(cdir, f".pid1.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, os.path.join(cdir, "pid1"))


def forward_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def hold_signals() -> None:
    """Keep the forwarded signals pending until release_signals. Called before forking a child
    they are to be forwarded to: one arriving between the fork and forward_signals would
    otherwise take its default action on us (a container whose ns init died of a SIGTERM meant
    for it was killed instead, 13 of 200 starts)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def release_signals() -> None:
    """Let the held signals through: in the parent once forward_signals is in place, in a child
    at its start (the mask is inherited across fork and exec)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def forward_signals(pid: int) -> dict[int, object]:
    """Send every forwarded signal on to pid from now on; returns the Python handlers it replaced,
    for restore_signals. The handler is C (native.forward_signal): a Python one runs only when the
    interpreter next checks, and a signal caught just before a blocking waitpid or read waited
    with it, leaving the container's trap unrun (1 signalled start in ~1,000 hung)."""
    previous = {s: signal.getsignal(s) for s in FORWARDED}
    for s in FORWARDED:
        native.forward_signal(s, pid)
    return {s: h for s, h in previous.items() if h is not None}


def restore_signals(previous: dict[int, object]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)  # type: ignore[arg-type]


def mount_rootfs(spec: ContainerSpec, cdir: str, rootfs: str):  # type: ignore[no-untyped-def]
    """Mount the container's root at rootfs; for fuse-overlay, returns the daemon's MountHandle."""
    if spec.driver == "fuse-overlay":
        import fuse_overlay  # only this driver needs it (and its subprocess import)

        log = fuse_log(cdir)
        try:
            return fuse_overlay.mount(list(reversed(spec.layers)), f"{cdir}/upper", f"{cdir}/work", rootfs,
                                      ["xattr_permissions=2"] if spec.single_id else [], stderr_path=log)
        except fuse_overlay.FuseOverlayError as e:
            raise StartFailed(125, f"cannot mount the FUSE overlay: {e} (its log is {log})") from e
    if spec.driver == "overlay":
        lower = ":".join(reversed(spec.layers))
        data = f"lowerdir={lower},upperdir={cdir}/upper,workdir={cdir}/work,userxattr"
        try:
            try:
                native.mount("overlay", rootfs, "overlay", 0, data + ",volatile" if spec.volatile else data)
            except OSError as e:
                if not spec.volatile or e.errno != errno.EINVAL:
                    raise
                native.mount("overlay", rootfs, "overlay", 0, data)  # a kernel before 5.10
        except OSError as e:
            raise StartFailed(125, f"cannot mount the kernel overlay ({e.strerror}): try "
                                  "--storage-driver vfs") from e
    else:
        native.mount(rootfs, rootfs, None, native.MS_BIND | native.MS_REC)
    return None


def fuse_log(cdir: str) -> str:
    """Where the FUSE overlay daemon of a container writes its errors."""
    return os.path.join(cdir, "fuse-overlay.log")


def report(fd: int, code: int, message: str) -> None:
    """Tell the waiting supervisor why the command did not start, as "CODE:message"."""
    try:
        os.write(fd, f"{code}:{message}".encode(errors="replace"))
    except OSError:
        pass


def report_failure(fd: int, e: OSError | RlError) -> int:
    """report() an exception with its exit code (125 unless it is a StartFailed's); returns it."""
    code = e.exit_code if isinstance(e, StartFailed) else 125
    report(fd, code, describe(e))
    return code


def parse_report(text: str) -> StartFailed | None:
    """What report() wrote; None for nothing (the pipe closed on exec: the command started)."""
    if not text:
        return None
    code, _, msg = text.partition(":")
    return StartFailed(int(code) if code.isdigit() else 125, msg)


def read_report(fd: int) -> StartFailed | None:
    """Blocks until the command was exec'd (None) or failed to start; closes fd."""
    try:
        return parse_report(read_all(fd).decode(errors="replace"))
    finally:
        os.close(fd)


def _pid1(spec: ContainerSpec, rootfs: str, err_fd: int) -> int:
    """The container's pid 1, up to the exec of its command (or rl's --init, which stays pid 1).

    Descriptors of the host are shed and the process made non-dumpable first, before anything of
    the container is resolved (CVE-2024-21626, and /proc/PID of a process the container may
    reach). Then /proc, /dev and /sys of the new pid namespace, pivot_root into the root, the
    user resolved from the container's own /etc/passwd (hostile input: read, never executed),
    the working directory, credentials and capabilities (`become`), seccomp last before exec.
    Returns only on failure, with the code report()ed to the supervisor."""
    try:
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        handoff.not_dumpable()
        handoff.shed_host_descriptors(spec.preserve_fds, err_fd)
        if spec.tty:
            # Loaded now, from the host's library: after pivot_root it is out of reach. Only
            # this use needs them, and socket's import costs every other start ~1.5 ms.
            __import__("socket")
            __import__("termios")
        # A mount namespace of our own: pivot_root moves the root of every process of the
        # namespace it runs in, and the namespace init must keep the host's view (it writes the
        # pid 1 file into the container's directory after this fork).
        native.unshare(native.CLONE_NEWNS)
        os.setsid()
        _mount_proc_dev_sys(spec, rootfs)
        native.sethostname(spec.hostname)
        if spec.network == "none":
            native.link_up("lo")
        if spec.readonly_rootfs:
            mountfd.remount_ro(rootfs)
        os.chdir(rootfs)
        native.pivot_root(".", ".")
        native.umount2(".", native.MNT_DETACH)
        os.chdir("/")
        if spec.passwd_entry and not spec.readonly_rootfs:
            _add_keep_id_entries(spec)
        user = users.resolve_user(spec.user, read_text("/etc/passwd"), read_text("/etc/group"), spec.group_add)
        env = list(spec.env)
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")
        handoff.enter_workdir(spec.cwd, 125, create=True)
        become(spec, user)
        # Changing credentials cleared the parent-death signal: set it again. rl's --init never
        # execs, and the container's owner opens its /proc/PID/ns (rl exec): it becomes dumpable,
        # without the host's environment; any other pid 1 stays not dumpable until its exec.
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if spec.init:
            handoff.forget_host_environment()
            native.prctl(native.PR_SET_DUMPABLE, 1)
        if spec.tty:
            take_terminal()
        if spec.init:
            return _tiny_init(spec, env, err_fd)
        exec_command(spec.args, env, err_fd)
    except (OSError, RlError) as e:
        return report_failure(err_fd, e)
    return 125


def _add_keep_id_entries(spec: ContainerSpec) -> None:
    """keep-id names the user inside as podman does: its passwd and group lines are added to the
    container's files (in its upper layer) when the image has no entry with those ids."""
    for path, line in (("/etc/passwd", spec.passwd_entry), ("/etc/group", spec.group_entry)):
        wanted = line.split(":")[2]
        text = read_text(path)
        if text is None or any(ln.split(":")[2:3] == [wanted] for ln in text.splitlines()):
            continue
        with open(path, "a", encoding="utf-8") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + line)


def take_terminal() -> None:
    """-t: open a pty of our own devpts (so `tty` names /dev/pts/0), send its master to the
    supervisor over the socket that is our stdio until now, after setting the window size it sent
    first, and make the slave our stdio and controlling terminal (we are a session leader)."""
    import socket  # loaded by _pid1 before pivot_root (or by rl exec's pty module)
    import termios

    sock = socket.socket(fileno=os.dup(0))
    size = sock.recv(8)
    master, slave = os.openpty()
    if len(size) == 8:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    socket.send_fds(sock, [b"t"], [master])
    sock.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def read_text(path: str) -> str | None:
    return handoff.read_account_file(path)


def become(spec: ContainerSpec, user: users.ResolvedUser) -> None:
    if spec.single_id and spec.group_add:
        raise StartFailed(125, "--group-add needs a subordinate id range (single-id mode: see 'rl info')")
    if spec.no_new_privs:
        native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
    if spec.seccomp:
        _install_seccomp(spec.seccomp)
    try:
        # Groups from /etc/group are skipped in single-id mode, as runc does where setgroups is denied.
        # The primary group is listed as a supplementary one too, as Docker and podman do.
        groups = None if spec.single_id else tuple(dict.fromkeys((user.gid, *user.groups)))
        capsmod.apply_caps(frozenset(spec.caps), uid=user.uid, gid=user.gid, groups=groups)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise StartFailed(125, f"user {user.uid}:{user.gid} is not mapped in this container: "
                                  + ("without a subordinate id range only root (0) exists inside"
                                     if spec.single_id else "it is outside the subordinate id range")) from e
        raise


def _install_seccomp(program: str) -> None:
    """Loaded while we still hold CAP_SYS_ADMIN in the user namespace, as runc does without
    no_new_privs: after the capabilities are dropped the kernel refuses a filter unless
    no_new_privs is set, which would disarm the image's setuid programs. What runs between here
    and exec (capset, setgroups, setres[ug]id, prctl, exec) is on every usable profile's list."""
    try:
        native.seccomp_install(bytes.fromhex(program))
    except OSError as e:
        raise StartFailed(125, f"cannot load the seccomp filter: {e.strerror}") from e


def exec_command(args: tuple[str, ...], env: list[str], err_fd: int) -> None:
    envd = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    # Python ignores these; an ignored signal stays ignored across exec (`yes | head` would spin).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(args[0], list(args), envd)
    except FileNotFoundError:
        where = "" if "/" in args[0] else " in $PATH"
        raise StartFailed(127, f"{args[0]}: executable file not found{where}")
    except PermissionError:
        raise StartFailed(126, f"{args[0]}: permission denied")
    except OSError as e:
        if e.errno in (errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR):
            raise StartFailed(126, f"{args[0]}: {e.strerror}") from e
        raise StartFailed(127 if e.errno == errno.ENOENT else 126, f"{args[0]}: {e.strerror}") from e


def _tiny_init(spec: ContainerSpec, env: list[str], err_fd: int) -> int:
    """--init: pid 1 forwards signals to the command and reaps every orphan, as tini does."""
    # valid_signals(), not range(1, NSIG): glibc keeps 32 and 33 for itself, and naming them
    # makes Python warn on stderr.
    watched = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    # Blocked before the fork, so a SIGCHLD of a command that dies at once is not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            exec_command(spec.args, env, err_fd)
        except StartFailed as e:
            os._exit(report_failure(err_fd, e))
        os._exit(125)
    os.close(err_fd)
    while True:
        sig = signal.sigwait(watched)
        if sig != signal.SIGCHLD:
            forward_signal(pid, sig)
            continue
        while True:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 125
            if child == 0:
                break
            if child == pid:
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _mount_proc_dev_sys(spec: ContainerSpec, rootfs: str) -> None:
    root_fd = mountfd.open_root(rootfs)
    try:
        for name in ("proc", "dev", "sys"):
            point = mountfd.real_dir(root_fd, name)
            try:
                _MOUNT_KERNEL_FS[name](spec, point)
            finally:
                os.close(point)
            # Opened again by name from the root: now it is the file system just mounted there.
            top = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
            try:
                _mask(name, top)
            finally:
                os.close(top)
    finally:
        os.close(root_fd)
    dev = os.path.join(rootfs, "dev")  # our tmpfs: nothing of the container's is in it yet
    for n in _DEV_NODES:
        p = os.path.join(dev, n)
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        native.mount(f"/dev/{n}", p, None, native.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore")):
        os.symlink(target, os.path.join(dev, name))
    for d in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, d), 0o755)
    pts_opts = "newinstance,ptmxmode=0666,mode=0620" + ("" if spec.single_id else ",gid=5")
    native.mount("devpts", os.path.join(dev, "pts"), "devpts", native.MS_NOSUID | native.MS_NOEXEC, pts_opts)
    native.mount("shm", os.path.join(dev, "shm"), "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    native.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", _NOSUID_NODEV_NOEXEC)


def _mount_proc(spec: ContainerSpec, fd: int) -> None:
    native.mount("proc", mountfd.fd_path(fd), "proc", _NOSUID_NODEV_NOEXEC)


def _mount_dev(spec: ContainerSpec, fd: int) -> None:
    native.mount("tmpfs", mountfd.fd_path(fd), "tmpfs", native.MS_NOSUID, "mode=755,size=65536k")


def _mount_sys(spec: ContainerSpec, fd: int) -> None:
    if spec.network == "none":  # a network namespace of ours: the kernel lets us mount a sysfs
        native.mount("sysfs", mountfd.fd_path(fd), "sysfs", _NOSUID_NODEV_NOEXEC | native.MS_RDONLY)
    else:
        # The host's, read-only all the way down: the cgroup trees mounted under it included.
        mountfd.bind("/sys", fd, readonly=True)


_MOUNT_KERNEL_FS = {"proc": _mount_proc, "dev": _mount_dev, "sys": _mount_sys}


def _mask(name: str, top: int) -> None:
    """Hide and make read-only what Docker does, found beneath the kernel's own mount (top)."""
    for rel in _MASKED.get(name, ()):
        fd = mountfd.open_beneath(top, rel)
        if fd is None:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                native.mount("tmpfs", mountfd.fd_path(fd), "tmpfs", native.MS_RDONLY | _NOSUID_NODEV_NOEXEC, "size=0")
            else:
                mountfd.bind("/dev/null", fd, True, recursive=False)
        finally:
            os.close(fd)
    if name != "proc":
        return
    for rel in _READONLY:
        fd = mountfd.open_beneath(top, rel)
        if fd is None:
            continue
        try:
            mountfd.bind(fd, fd, readonly=True)
        finally:
            os.close(fd)

