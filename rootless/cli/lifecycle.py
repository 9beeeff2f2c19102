"""Container lifecycle commands: logs, stop, kill, start, restart, wait, and inspect of a container."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from rootless.cli.common import for_each_container, open_store
from rootless.errors import RlError, UsageError
from rootless.runtime.create import containers_dir
from rootless.runtime.spec import ContainerSpec, Mount
from rootless.runtime.supervisor import refresh
from rootless.store.records import ContainerRecord
from rootless.store.store import Store

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Any


def cmd_logs(args: argparse.Namespace) -> int:
    from rootless.runtime.logs import log_path, read_records, tail
    from rootless.runtime.supervisor import alive, wait_gone

    if args.since:
        raise UsageError("--since is not supported yet: use --tail")
    if args.tail == "all":
        count = None
    elif args.tail.lstrip("-").isdigit():
        count = int(args.tail)
    else:
        raise UsageError(f"--tail {args.tail!r}: give a number of lines or 'all'")
    with open_store(args) as store:
        rec = refresh(store, store.container(args.container))
        path = log_path(containers_dir(store) / rec.id)
    printer = _LogPrinter(args.timestamps)
    records, offset = read_records(path)
    printer.write(tail(records, count))
    if args.follow:
        # Until its supervisor, the last writer of the log, is gone; then what it wrote last.
        while alive(rec.pid, rec.pid_start):
            wait_gone(rec, 0.2)
            records, offset = read_records(path, offset)
            printer.write(records)
        printer.write(read_records(path, offset)[0])
    return 0


class _LogPrinter:
    """Each stream to its own fd; -t stamps the start of each line (a line cut into partial records
    is stamped once)."""

    def __init__(self, timestamps: bool) -> None:
        self.timestamps = timestamps
        self.at_line_start = {"stdout": True, "stderr": True}

    def write(self, records: Iterable[Any]) -> None:
        outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
        for r in records:
            out = outs.get(r.stream, sys.stdout.buffer)
            if self.timestamps and self.at_line_start.get(r.stream, True):
                out.write(r.time.encode() + b" ")
            out.write(r.output())
            self.at_line_start[r.stream] = not r.partial
        sys.stdout.buffer.flush()
        sys.stderr.buffer.flush()


def cmd_stop(args: argparse.Namespace) -> int:
    from rootless.runtime.supervisor import stop

    def action(store: Store, rec: ContainerRecord, ref: str) -> None:
        if rec.status == "running":
            spec = ContainerSpec.from_json(rec.spec)
            stop(store, rec, args.time if args.time is not None else spec.stop_timeout)
        print(ref)

    return for_each_container(args, action)


def cmd_kill(args: argparse.Namespace) -> int:
    from rootless.runtime.options import parse_signal
    from rootless.runtime.supervisor import send_signal

    sig = parse_signal(args.signal)

    def action(store: Store, rec: ContainerRecord, ref: str) -> None:
        if rec.status != "running":
            raise RlError(f"container {rec.name} is not running")
        send_signal(store, rec, sig)
        print(ref)

    return for_each_container(args, action)


def cmd_wait(args: argparse.Namespace) -> int:
    from rootless.runtime.supervisor import wait_exited

    def action(store: Store, rec: ContainerRecord, ref: str) -> None:
        print(wait_exited(store, rec).exit_code, flush=True)

    return for_each_container(args, action)


def _start_detached(store: Store, rec: ContainerRecord) -> None:
    from rootless.runtime.supervisor import launch_detached

    cdir = containers_dir(store) / rec.id
    launch_detached(store, rec, ContainerSpec.from_json(rec.spec), cdir)


def cmd_start(args: argparse.Namespace) -> int:
    if args.attach:
        if len(args.containers) != 1:
            raise UsageError("-a attaches to one container: name just one")
        return _start_attached(args)
    if args.interactive:
        raise UsageError("-i needs -a: stdin goes to an attached container")

    def action(store: Store, rec: ContainerRecord, ref: str) -> None:
        if rec.status != "running":  # starting a running container is a no-op, as in Docker
            _start_detached(store, rec)
        print(ref)

    return for_each_container(args, action)


def _start_attached(args: argparse.Namespace) -> int:
    from rootless.runtime.launch import run_foreground
    from rootless.values import replace

    with open_store(args) as store:
        rec = refresh(store, store.container(args.containers[0]))
        if rec.status == "running":
            raise RlError(f"container {rec.name} is already running: use 'rl logs -f' to follow it")
        spec = replace(ContainerSpec.from_json(rec.spec), stdin=args.interactive)
        return run_foreground(store, rec, spec, containers_dir(store) / rec.id)


def cmd_restart(args: argparse.Namespace) -> int:
    from rootless.runtime.supervisor import stop

    def action(store: Store, rec: ContainerRecord, ref: str) -> None:
        if rec.status == "running":
            spec = ContainerSpec.from_json(rec.spec)
            stop(store, rec, args.time if args.time is not None else spec.stop_timeout)
            rec = store.container(rec.id)
        _start_detached(store, rec)
        print(ref)

    return for_each_container(args, action)


def _iso(ts: float) -> str:
    from rootless.image.oci import rfc3339

    return rfc3339(ts) if ts > 0 else "0001-01-01T00:00:00Z"


def inspect_container(store: Store, rec: ContainerRecord) -> dict[str, Any]:
    from rootless.runtime.logs import log_path
    from rootless.runtime.supervisor import pid1_of

    rec = refresh(store, rec)
    spec = ContainerSpec.from_json(rec.spec)
    cdir = containers_dir(store) / rec.id
    is_running = rec.status == "running"
    graph: dict[str, str] = {"MergedDir": str(cdir / "merged")}
    if spec.driver != "vfs":
        graph.update(LowerDir=":".join(reversed(spec.layers)), UpperDir=str(cdir / "upper"),
                     WorkDir=str(cdir / "work"))
    return {
        "Id": rec.id,
        "Created": _iso(rec.created),
        "Path": spec.args[0],
        "Args": list(spec.args[1:]),
        "State": {
            "Status": rec.status,
            "Running": is_running,
            "Paused": False,
            "Pid": pid1_of(store, rec) if is_running else 0,
            "ExitCode": rec.exit_code if rec.exit_code is not None else 0,
            "StartedAt": _iso(rec.started),
            "FinishedAt": _iso(rec.finished),
        },
        "Image": rec.image_id,
        "Name": rec.name,
        "LogPath": str(log_path(cdir)),
        "Config": {
            "Hostname": spec.hostname,
            "User": spec.user,
            "Tty": spec.tty,
            "OpenStdin": spec.stdin,
            "Env": list(spec.env),
            "Cmd": list(spec.args),
            "Image": rec.image_name,
            "WorkingDir": spec.cwd,
            "Labels": spec.labels,
            "StopSignal": _signal_name(spec.stop_signal),
            "StopTimeout": spec.stop_timeout,
        },
        "HostConfig": {
            "AutoRemove": spec.auto_remove,
            "ReadonlyRootfs": spec.readonly_rootfs,
            "NetworkMode": spec.network,
            "Init": spec.init,
            "GroupAdd": list(spec.group_add),
        },
        "Mounts": [_mount(m) for m in spec.mounts],
        "GraphDriver": {"Name": spec.driver, "Data": graph},
    }


def _mount(m: Mount) -> dict[str, Any]:
    """Docker's entry: a volume by its name (its directory is the bind rl makes of it)."""
    if m.volume:
        return {"Type": "volume", "Name": m.volume, "Source": m.source, "Destination": m.target, "Driver": "local",
                "RW": not m.readonly, "Options": list(m.options)}
    return {"Type": m.type, "Source": m.source, "Destination": m.target, "RW": not m.readonly,
            "Options": list(m.options)}


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
