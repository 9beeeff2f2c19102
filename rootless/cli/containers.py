"""Container commands: run, ps, rm."""
from __future__ import annotations

import argparse
import json
import sys

from rootless.cli.common import for_each_container, open_store
from rootless.errors import ContainerNotFound, RlError, UsageError
from rootless.registry.policy import check_policy


def _run_options(args: argparse.Namespace) -> "RunOptions":  # noqa: F821
    from rootless.runtime.create import RunOptions

    if args.publish:
        raise UsageError("-p/--publish needs the private network mode, which comes in a later version of "
                         "rl: use --network host and connect to the port on the host")
    for flag in ("memory", "cpus", "pids_limit"):
        if getattr(args, flag):
            from rootless.host.probe import cgroups

            detail = cgroups().detail
            raise UsageError(f"--{flag.replace('_', '-')} needs cgroup v2 delegation, which this host does not "
                             f"give: {detail}")
    no_new_privs = False
    seccomp = ""
    for opt in args.security_opt:
        if opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            no_new_privs = True
        elif opt.startswith(("seccomp=", "seccomp:")) and opt[8:]:
            seccomp = opt[8:]
        elif opt not in ("no-new-privileges:false", "no-new-privileges=false"):
            raise UsageError(f"--security-opt {opt} is not supported: only no-new-privileges and "
                             "seccomp=unconfined|PROFILE.json")
    return RunOptions(
        image=args.image, command=tuple(args.command), name=args.name, entrypoint=args.entrypoint,
        env=tuple(args.env), env_files=tuple(args.env_file), workdir=args.workdir, user=args.user,
        hostname=args.hostname, volumes=tuple(args.volume), mounts=tuple(args.mount), tmpfs=tuple(args.tmpfs),
        network=args.network, read_only=args.read_only, init=args.init, group_add=tuple(args.group_add),
        cap_add=tuple(args.cap_add), cap_drop=tuple(args.cap_drop), no_new_privs=no_new_privs, seccomp=seccomp,
        tty=args.tty,
        interactive=args.interactive, auto_remove=args.rm, stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout, storage_driver=args.storage_driver, userns=args.userns,
        pull=check_policy(args.pull),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from rootless.runtime.create import create_container
    from rootless.runtime.handoff import check_preserved
    from rootless.runtime.launch import remove_container, run_foreground
    from rootless.values import replace

    check_preserved(args.preserve_fds)
    opts = _run_options(args)
    with open_store(args) as store:
        _warn_single_id_once(store)
        rec, spec, cdir = create_container(store, opts)
        spec = replace(spec, preserve_fds=args.preserve_fds)  # for this start only, not the record
        if args.detach:
            from rootless.runtime.supervisor import launch_detached

            launch_detached(store, rec, spec, cdir)
            print(rec.id)
            return 0
        try:
            return run_foreground(store, rec, spec, cdir)
        finally:
            if spec.auto_remove:
                remove_container(store, rec, anonymous_volumes=True)


def _warn_single_id_once(store) -> None:  # type: ignore[no-untyped-def]
    """Said once per store: what single-id mode takes away, so nobody finds out by surprise."""
    marker = store.root / ".single-id-warned"
    if store.mapping.mode != "single" or marker.exists():
        return
    sys.stderr.write(f"Warning: {store.mapping.reason}. Containers run in single-id mode: only uid 0 "
                     "exists inside, so -u with another user, setuid programs and chown to other ids fail "
                     "('rl info' says more; this is said once).\n")
    marker.touch()


def _status_text(rec) -> str:  # type: ignore[no-untyped-def]
    from rootless.cli.output import human_age

    if rec.status == "running":
        return f"Up {human_age(rec.started).removesuffix(' ago')}"
    if rec.status == "exited":
        return f"Exited ({rec.exit_code}) {human_age(rec.finished)}"
    return rec.status.capitalize()


def cmd_ps(args: argparse.Namespace) -> int:
    from rootless.cli.output import docker_time, human_age, listing
    from rootless.image.reference import parse
    from rootless.runtime.spec import ContainerSpec
    from rootless.runtime.supervisor import refresh

    with open_store(args) as store:
        recs = []
        for r in store.containers():
            try:
                r = refresh(store, r)
            except ContainerNotFound:
                continue  # removed (--rm) while we looked
            if (args.all or r.status == "running") and not ContainerSpec.from_json(r.spec).build_step:
                recs.append(r)
        store.tidy()
    recs.reverse()
    if args.quiet:
        sys.stdout.write("".join((r.id if args.no_trunc else r.short_id) + "\n" for r in recs))
        return 0
    rows = []
    for r in recs:
        spec = ContainerSpec.from_json(r.spec)
        try:
            image = parse(r.image_name).familiar()
        except RlError:
            image = r.image_name
        command = " ".join(spec.args)
        if not args.no_trunc and len(command) > 20:
            command = command[:19] + "…"
        rows.append({
            "ID": r.id if args.no_trunc else r.short_id, "Image": image,
            # Quoted as Go's strconv.Quote quotes it: the ellipsis stays a character.
            "Command": json.dumps(command, ensure_ascii=False),
            "CreatedAt": docker_time(r.created), "RunningFor": human_age(r.created), "Ports": "",
            "Status": _status_text(r), "State": r.status, "Names": r.name, "ExitCode": r.exit_code,
        })
    listing(args.format, rows, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
            [[row[k] for k in ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")] for row in rows])
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from rootless.runtime.launch import remove_container
    from rootless.runtime.supervisor import kill

    def remove(store, rec, ref: str) -> None:  # type: ignore[no-untyped-def]
        if rec.status == "running":
            if not args.force:
                raise RlError(f"container {rec.name} is running: stop it first or use -f")
            kill(store, rec)
            try:
                rec = store.container(rec.id)
            except ContainerNotFound:
                print(ref)  # it was --rm: its supervisor removed it
                return
        remove_container(store, rec, anonymous_volumes=args.volumes)
        print(ref)

    return for_each_container(args, remove)
