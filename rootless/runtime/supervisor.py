"""Detached containers: the supervisor process that outlives `rl`, and how other commands find,
signal and wait for a container whichever process supervises it.

`rl run -d` forks twice (the CLI is single-threaded, so forking is safe) and the grandchild calls
setsid: it belongs to no terminal and no process group of the caller, and its parent is gone, so
it survives both. It starts the container with `launch.start`, copies its output into the log,
waits for its exit and records it. The CLI waits on a pipe until the command was exec'd or failed.

A record that says running names its supervisor by pid and start time. When that process is gone
(killed with -9), the record is stale: `refresh` finds out, kills what is left and marks it exited.
"""
from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

from rootless import killpoint
from rootless.errors import ContainerNotFound, RlError, StartFailed
from rootless.runtime import launch
from rootless.runtime.nsinit import parse_report
from rootless.runtime.spec import ContainerSpec
from rootless.store.records import ContainerRecord
from rootless.store.store import Store
from rootless.userns.idmap import IdMapping

KILLED = 128 + signal.SIGKILL  # what a container whose supervisor vanished is said to have exited with


def launch_detached(store: Store, rec: ContainerRecord, spec: ContainerSpec, cdir: Path) -> None:
    """Start the container under a detached supervisor; returns once its command runs, raises an
    RlError with Docker's exit code (125, 126, 127) when it could not start."""
    mapping = store.mapping
    report_r, report_w = os.pipe()
    with store.detached():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 125
            report = _Report(report_w)
            try:
                os.close(report_r)
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
                code = _supervise(store.root, mapping, rec, spec, cdir, report)
            except BaseException as e:  # noqa: BLE001 - the CLI must hear of it, not a closed pipe
                report.send(f"125:the container's supervisor failed: {type(e).__name__}: {e}")
            finally:
                # os._exit: the CLI's store connection and temp dirs are its own to close, not ours.
                os._exit(code)
    killpoint.reached("detach-forked")
    os.close(report_w)
    os.waitpid(pid, 0)
    # One line, not EOF: the container's processes inherit the pipe's write end and keep it open.
    # A supervisor that dies takes them along (parent-death signals), so EOF still comes then.
    chunks = []
    while (chunk := os.read(report_r, 4096)) and not chunk.endswith(b"\n"):
        chunks.append(chunk)
    chunks.append(chunk)
    os.close(report_r)
    text = b"".join(chunks).decode(errors="replace").rstrip("\n")
    if text == "ok":
        return
    raise parse_report(text) or StartFailed(125, "the container's supervisor died before the command started")


class _Report:
    """The one line the waiting CLI gets: "ok", or "CODE:message"; later ones go nowhere (the fd
    number may belong to another file by then)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, text: str) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, text.replace("\n", " ").encode(errors="replace") + b"\n")
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def _supervise(root: Path, mapping: IdMapping, rec: ContainerRecord, spec: ContainerSpec, cdir: Path,
               report: _Report) -> int:
    """The supervisor of a detached container: the process that outlives `rl run -d`.

    It drops every descriptor of its caller first (a `$(rl run -d ...)` would otherwise wait for
    the container's end), starts the namespace init (`launch.start`), records the running
    container, answers the waiting rl through `report` ("ok", or the code and line of a start
    that failed), then copies the container's output into its log until pid 1 exits, records
    the exit code, and removes a --rm container. The store is opened only after the namespace
    init is forked, so that no SQLite connection crosses a fork (`Store.detached`). If this
    process dies, the container keeps running; the next rl command finds the supervisor gone
    (`owner_gone`) and records what it can."""
    from rootless.runtime.logs import log_path, pump

    os.chdir("/")
    # Keep nothing of the caller's: a pipe it reads to EOF (`$(rl run -d ...)`) or a lock it holds
    # would stay open as long as the container runs.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3 + spec.preserve_fds, report.fd)
    os.closerange(report.fd + 1, os.sysconf("SC_OPEN_MAX"))
    if spec.goes_with_its_rl and not _take_over(root, mapping, rec):
        report.send("125:the container was removed before it started (its rl was killed)")
        return 0
    at = time.time()
    if spec.tty:
        from rootless.runtime import pty

        ours, theirs = pty.socket_pair()
        started = launch.start(mapping, spec, cdir, theirs.fileno(), theirs.fileno(), theirs.fileno())
        theirs.close()
    else:
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        started = launch.start(mapping, spec, cdir, 0, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
    store = Store(root, mapping)  # opened after the fork of ns init, which need not hold it
    launch.running(store, rec, started, at)
    killpoint.reached("supervisor-started")
    failed = started.start_error()
    if failed is None:
        report.send("ok")
    if spec.tty:
        if failed is None:
            pty.relay(pty.receive_master(ours), log_path(cdir), stdin=False, echo=False)
        ours.close()
    else:
        pump(log_path(cdir), out_r, err_r, echo=False)
    code = launch.wait_exit(started.pid)
    if failed is not None:
        code = failed.exit_code
    store.update_container(rec.id, status="exited", pid=launch.owner_after_exit(spec), exit_code=code,
                           finished=time.time())
    killpoint.reached("run-exited")
    if spec.auto_remove:
        launch.remove_container(store, rec, anonymous_volumes=True)
    store.close()
    if failed is not None:
        # Reported after the removal, so that `rl run -d --rm` leaves nothing once it returns.
        report.send(f"{failed.exit_code}:{failed}")
    return 0


def _take_over(root: Path, mapping: IdMapping, rec: ContainerRecord) -> bool:
    """Name ourselves in a --rm container's record instead of the rl that created it, which may
    be killed from now on; False if it was killed already and the container reaped."""
    me = os.getpid()
    with Store(root, mapping) as store:  # closed before ns init forks: it need not hold it
        return store.claim_container(rec, me, launch.start_ticks(me))


def alive(pid: int, ticks: int) -> bool:
    return pid > 0 and ticks > 0 and launch.start_ticks(pid) == ticks


def owner_gone(rec: ContainerRecord) -> bool:
    """The process the record names is gone: a supervisor that died without recording the exit,
    or the rl of a container that goes with it (only those name one while created or exited)."""
    return rec.pid != 0 and not alive(rec.pid, rec.pid_start)


def refresh(store: Store, rec: ContainerRecord) -> ContainerRecord:
    """The record as it really is: a running one whose supervisor is gone is marked exited, after
    killing whatever of the container is left, or removed if it goes with its rl. Raises
    ContainerNotFound if it was removed (--rm, a build step)."""
    if not owner_gone(rec):
        return rec
    _kill_leftovers(store, rec)
    # Only if nobody changed it meanwhile: a supervisor that just finished has written the real code.
    if ContainerSpec.from_json(rec.spec).goes_with_its_rl:
        if store.remove_container_if_unchanged(rec):
            launch.remove_container(store, rec, anonymous_volumes=True)
        raise ContainerNotFound(rec.id)
    store.mark_exited_if_unchanged(rec, KILLED)
    return store.container(rec.id)


def reap(store: Store) -> None:
    """Bring every record up to date and tidy the store, so that what killed rl processes left
    goes now: before a command that counts containers as users of images (rmi, prune, build,
    system check --repair)."""
    for rec in store.containers():
        try:
            refresh(store, rec)
        except ContainerNotFound:
            pass
    store.tidy()


def _kill_leftovers(store: Store, rec: ContainerRecord) -> None:
    """Parent-death signals normally took the container down with its supervisor; this covers a
    namespace init or pid 1 that outlived it anyway."""
    if alive(rec.init_pid, rec.init_start):
        _kill(rec.init_pid, signal.SIGKILL)
    pid1 = pid1_of(store, rec)
    if pid1:
        _kill(pid1, signal.SIGKILL)


def pid1_of(store: Store, rec: ContainerRecord) -> int:
    """Pid 1 of the container as ns init recorded it, if that process is still the one: in another
    pid namespace than ours and started after its ns init."""
    from rootless.runtime.create import containers_dir

    try:
        pid = int((containers_dir(store) / rec.id / "pid1").read_text())
        theirs = os.readlink(f"/proc/{pid}/ns/pid")
    except (OSError, ValueError):
        return 0
    if theirs == os.readlink("/proc/self/ns/pid") or launch.start_ticks(pid) < rec.init_start:
        return 0
    return pid


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def send_signal(store: Store, rec: ContainerRecord, sig: int) -> None:
    """Deliver sig to the container's pid 1. Its processes may run as subordinate ids, so the
    signals ns init forwards go through it; SIGKILL cannot be forwarded, so it kills ns init, whose
    death kills pid 1 (parent-death signal) and with it the whole pid namespace."""
    if not alive(rec.pid, rec.pid_start) or not alive(rec.init_pid, rec.init_start):
        raise RlError(f"container {rec.name} is not running")
    if sig in launch.FORWARDED or sig == signal.SIGKILL:
        _kill(rec.init_pid, sig)
        return
    pid1 = pid1_of(store, rec)
    if not pid1:
        raise RlError(f"container {rec.name} is not running")
    try:
        os.kill(pid1, sig)
    except OSError as e:
        raise RlError(f"cannot send signal {sig} to container {rec.name}: {e.strerror}") from e


def wait_gone(rec: ContainerRecord, timeout: float | None) -> bool:
    """Block until the container's supervisor has exited (it has recorded the exit by then);
    False if it still runs after timeout seconds."""
    try:
        pidfd = os.pidfd_open(rec.pid)
    except OSError:
        return True
    try:
        # Checked after opening: the pidfd is then surely of the recorded process.
        if not alive(rec.pid, rec.pid_start):
            return True
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
    finally:
        os.close(pidfd)


def wait_exited(store: Store, rec: ContainerRecord) -> ContainerRecord:
    """The record once the container has exited (ContainerNotFound if --rm removed it)."""
    wait_gone(rec, None)
    return refresh(store, store.container(rec.id))


def stop(store: Store, rec: ContainerRecord, timeout: float) -> None:
    """The stop signal, then SIGKILL after timeout seconds; returns once it has exited."""
    try:
        send_signal(store, rec, ContainerSpec.from_json(rec.spec).stop_signal)
    except RlError:
        pass  # it exited meanwhile
    if not wait_gone(rec, timeout):
        kill(store, rec)
    _settle(store, rec)


def kill(store: Store, rec: ContainerRecord) -> None:
    """SIGKILL; returns once it has exited."""
    try:
        send_signal(store, rec, signal.SIGKILL)
    except RlError:
        pass  # it exited meanwhile
    _settle(store, rec)


def _settle(store: Store, rec: ContainerRecord) -> None:
    try:
        wait_exited(store, rec)
    except ContainerNotFound:
        pass  # --rm: its supervisor removed it
