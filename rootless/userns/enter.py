"""Run a function inside a new user namespace whose ids map as the IdMapping says.

The namespace is entered in a forked child: unshare(CLONE_NEWUSER) fails in a threaded process,
and rl forks before any thread starts. The parent writes the maps (newuidmap/newgidmap must be
run by a process outside the namespace); the child waits for them on a pipe.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import native
from rootless.errors import IdMapError, RlError
from rootless.userns.idmap import IdMapping

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


def write_maps(pid: int, mapping: IdMapping) -> None:
    """Map the ids of the user namespace that process `pid` is in (called from outside it)."""
    if mapping.mode == "single":
        u, g = mapping.uids[0], mapping.gids[0]
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
            with open(f"/proc/{pid}/uid_map", "w") as f:
                f.write(f"{u.inside} {u.outside} {u.count}\n")
            with open(f"/proc/{pid}/gid_map", "w") as f:
                f.write(f"{g.inside} {g.outside} {g.count}\n")
        except OSError as e:
            raise IdMapError(f"cannot write the id map of the user namespace: {e.strerror}") from e
        return
    # Both helpers run at once: each is a setuid exec of a few milliseconds on the start path.
    running = []
    for tool, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
        args = [tool, str(pid)]
        for r in ranges:
            args += [str(r.inside), str(r.outside), str(r.count)]
        try:
            running.append((tool, *_spawn(args)))
        except IdMapError:
            for _, child, err_r in running:
                os.close(err_r)
                os.waitpid(child, 0)
            raise
    failures = []
    for tool, child, err_r in running:
        err = read_all(err_r).decode(errors="replace")
        os.close(err_r)
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failures.append(f"{tool} failed: {(err.strip().splitlines() or ['failed'])[-1]}")
    if failures:
        raise IdMapError(f"{failures[0]} (check /etc/subuid and /etc/subgid)")


def _spawn(args: list[str]) -> tuple[int, int]:
    """Start a helper whose stdout and stderr go to a pipe: (its pid, the pipe's read end).
    posix_spawn, because `subprocess` costs ~5 ms to import on every container start."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawnp(args[0], args, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1),
            (os.POSIX_SPAWN_DUP2, w, 2),
        ])
    except OSError as e:
        os.close(r)
        raise IdMapError(f"cannot run {args[0]}: {e.strerror} (install the 'uidmap' package)") from e
    finally:
        os.close(w)
    return pid, r


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def spawn_in_userns(mapping: IdMapping, child: Callable[[], int], extra_flags: int = 0) -> int:
    """Fork a child that enters a new user namespace (plus extra_flags), waits until the parent has
    mapped its ids, then runs child() and exits with its return value. Returns the child's pid.

    A failure of the child before child() runs is reported as exit status 125 with a message on
    stderr; a failure to map the ids kills the child and raises here.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 125
        try:
            os.close(ready_r)
            os.close(go_w)
            try:
                native.unshare(native.CLONE_NEWUSER | extra_flags)
            except OSError as e:
                os.write(2, f"Error: cannot create a user namespace: {e.strerror} (is "
                            "user.max_user_namespaces 0?)\n".encode())
                os._exit(125)
            os.write(ready_w, b"1")
            os.close(ready_w)
            if os.read(go_r, 1) != b"1":
                os._exit(125)
            os.close(go_r)
            if os.getuid() != 0 and mapping.host_uid(0) is not None:
                # keep-id maps the user to itself: become the namespace's root, as with the
                # default mapping, so files made here (and by a FUSE daemon) are root's.
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            code = child()
        except BaseException as e:  # noqa: BLE001 - a failure here must never be silent
            try:
                os.write(2, f"Error: internal error inside the container's namespaces: {type(e).__name__}: {e}\n"
                         .encode(errors="replace"))
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) == b"1":
            write_maps(pid, mapping)
            os.write(go_w, b"1")
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    return pid


def run_in_userns(mapping: IdMapping, fn: Callable[..., T], *args: Any, extra_flags: int = 0) -> T:
    """Call fn(*args) as root of a fresh user namespace and return its (picklable) result.

    An RlError raised by fn is raised again here with its class and message.
    """
    import pickle
    import traceback

    res_r, res_w = os.pipe()
    parent = os.getpid()

    def child() -> int:
        os.close(res_r)
        # A helper outliving a killed rl would hold the store's locks, maybe waiting on a FIFO
        # (a pull's unpacker) that nothing will ever write to.
        native.prctl(native.PR_SET_PDEATHSIG, 9)  # SIGKILL; `signal` costs an import on the start path
        if os.getppid() != parent:
            return 1
        status = 0
        try:
            payload: tuple[str, Any] = ("ok", fn(*args))
        except RlError as e:
            payload = ("rlerror", (type(e), str(e)))
        except BaseException as e:  # noqa: BLE001 - everything must reach the parent
            payload = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            status = 1
        try:
            data = pickle.dumps(payload)
        except Exception as e:  # noqa: BLE001
            data = pickle.dumps(("error", f"result not picklable: {e}"))
        view = memoryview(data)
        while view:
            n = os.write(res_w, view)
            view = view[n:]
        return status

    try:
        pid = spawn_in_userns(mapping, child, extra_flags)
    finally:
        os.close(res_w)
    try:
        data = read_all(res_r)
    finally:
        os.close(res_r)
        _, wstatus = os.waitpid(pid, 0)
    if not data:
        raise RlError(f"the user namespace helper died ({_status_text(wstatus)})")
    kind, value = pickle.loads(data)
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if kind == "rlerror":
        cls, msg = value
        err = cls.__new__(cls)
        Exception.__init__(err, msg)
        raise err
    raise RlError(f"internal error in the user namespace helper: {value.splitlines()[0]}") from RuntimeError(value)


def _status_text(wstatus: int) -> str:
    if os.WIFSIGNALED(wstatus):
        return f"killed by signal {os.WTERMSIG(wstatus)}"
    return f"exit status {os.waitstatus_to_exitcode(wstatus)}"
