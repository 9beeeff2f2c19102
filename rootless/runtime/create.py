"""From an image and `rl run` options to a container record, its spec and its directory."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from rootless import killpoint
from rootless.errors import NameInUse, RlError, UsageError
from rootless.registry import policy
from rootless.runtime.names import random_name
from rootless.runtime.spec import ContainerSpec, Mount
from rootless.store.records import ContainerRecord
from rootless.store.store import Store
from rootless.values import valueclass

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@valueclass
class RunOptions:
    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    entrypoint: str | None = None
    env: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    volumes: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    network: str = "host"
    read_only: bool = False
    init: bool = False
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privs: bool = False
    seccomp: str = ""  # --security-opt seccomp=: unconfined or a profile's path; "" for rl's default
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    volatile: bool = False  # the writable layer is thrown away at exit even without auto_remove
    build_step: bool = False
    stop_signal: str | None = None
    stop_timeout: int | None = None
    storage_driver: str | None = None
    userns: str = ""
    pull: str = "missing"  # missing, always or never


def containers_dir(store: Store) -> Path:
    return store.root / "containers"


def _command(config: dict, opts: RunOptions) -> tuple[str, ...]:  # type: ignore[type-arg]
    """Docker's rules: --entrypoint replaces the image's and drops its Cmd; a command replaces Cmd."""
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entry = list(config.get("Entrypoint") or [])
        cmd = list(opts.command) or list(config.get("Cmd") or [])
    args = tuple(entry + cmd)
    if not args:
        raise UsageError("no command given and the image has neither Entrypoint nor Cmd")
    return args


def _resolve_mounts(store: Store, opts: RunOptions, layers: list[Path], image_volumes: Iterable[str],
                    out: list[Mount]) -> tuple[Mount, ...]:
    """The container's mounts, each appended to `out` once made (volumes are made here)."""
    from rootless.runtime import options

    # -v creates a missing host directory, --mount refuses it: Docker's difference, kept.
    specs = ([(options.parse_volume(v), True) for v in opts.volumes]
             + [(options.parse_mount(m), False) for m in opts.mounts]
             + [(options.parse_tmpfs(t), False) for t in opts.tmpfs])
    # Checked before anything is made: a refused command must not leave volumes behind.
    targets = [m.target for m, _ in specs]
    dup = {t for t in targets if targets.count(t) > 1}
    if dup:
        raise UsageError(f"duplicate mount point: {sorted(dup)[0]}")
    # The image's VOLUMEs the user mounts nothing on get anonymous volumes, as Docker's do.
    for path in sorted(image_volumes):
        spec = options.image_volume(path)
        if spec.target not in targets:
            targets.append(spec.target)
            specs.append((spec, False))
    # Parents first, as Docker orders them, so that an image's /data does not hide a -v on /data/sub.
    specs.sort(key=lambda s: s[0].target.count("/"))
    for m, create_missing in specs:
        if m.type == "tmpfs":
            out.append(Mount("tmpfs", "tmpfs", m.target, m.readonly, m.options))
        elif m.type == "bind":
            assert m.source is not None
            src = os.path.abspath(m.source)
            if not os.path.exists(src):
                if not create_missing:
                    raise RlError(f"bind source path does not exist: {src}")
                os.makedirs(src, exist_ok=True)
            out.append(Mount("bind", src, m.target, m.readonly, m.options))
        else:
            from rootless.runtime.volumes import mount_volume

            out.append(mount_volume(store, m, layers))
    return tuple(out)


def _say(line: str) -> None:
    import sys

    sys.stderr.write(line + "\n")


def _free_name(store: Store, cid: str) -> str:
    for retry in range(1, 11):
        name = random_name(retry)
        if not store.container_name_taken(name):
            return name
    return f"{random_name()}_{cid[:12]}"


def _hosts(hostname: str, network: str) -> str:
    if network == "host":
        try:
            base = Path("/etc/hosts").read_text()
        except OSError:
            base = "127.0.0.1\tlocalhost\n"
        return base.rstrip("\n") + f"\n127.0.1.1\t{hostname}\n"
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"


def create_container(store: Store, opts: RunOptions) -> tuple[ContainerRecord, ContainerSpec, Path]:
    # The store lock is held shared until the record exists: a prune running meanwhile would take
    # the new directory and volumes, which nothing references yet, for a crash's leftovers.
    with store.adding():
        made: list[Mount] = []
        try:
            return _create(store, opts, made)
        except BaseException:
            from rootless.runtime.volumes import remove_anonymous

            remove_anonymous(store, made)
            raise


def _create(store: Store, opts: RunOptions, mounts: list[Mount]) -> tuple[ContainerRecord, ContainerSpec, Path]:
    """Everything a container is, decided before any process starts: its spec (the image's config
    merged with the options, as `docker create` does), its record and its directory.

    Every choice is made and checked here, in the rl process, so that a bad option fails with one
    line and exit 125 before anything exists; the processes that start the container later only
    carry the spec out. The spec is frozen JSON in the record: a restart, `rl exec` and a
    supervisor that outlives this rl all read the same one. The container's directory (hostname,
    hosts, resolv.conf, the root file system) is filled before the record is added, and a
    failure on the way removes it: no record names a half-made container. A container that goes with its rl (--rm, a build step) names this rl as its owner until its
    supervisor takes over, so that the next command reaps it if this rl is killed first."""
    from rootless.runtime import caps, options, seccomp
    from rootless.runtime.storage import choose_driver, keep_id_layers, prepare_rootfs
    from rootless.userns import keepid

    if opts.network not in ("host", "none"):
        raise UsageError(f"--network {opts.network} is not supported yet: use host or none")
    if opts.name is not None and (not opts.name or opts.name[0] in "_.-" or set(opts.name) - _NAME_CHARS):
        raise UsageError(f"invalid container name {opts.name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    image = policy.resolve(store, opts.image, opts.pull, _say)
    config = store.config(image).get("config") or {}
    layers = store.layer_paths(image)
    cid = os.urandom(32).hex()
    hostname = opts.hostname or cid[:12]
    env = options.build_env(config.get("Env") or [], opts.env_files, opts.env, os.environ,
                            hostname=hostname, tty=opts.tty)
    stop_signal = options.parse_signal(opts.stop_signal or config.get("StopSignal") or "SIGTERM")
    userns = keepid.check_mode(opts.userns)
    driver = choose_driver(store, opts.storage_driver, userns)
    user = opts.user if opts.user is not None else (config.get("User") or "")
    kept_caps = caps.resolve_caps(opts.cap_add, opts.cap_drop)
    seccomp_filter = seccomp.filter_for(opts.seccomp, kept_caps)
    passwd_entry = group_entry = ""
    if userns == "keep-id":
        uid, gid = os.getuid(), os.getgid()
        user = opts.user if opts.user is not None else f"{uid}:{gid}"
        passwd_entry, group_entry = keepid.passwd_lines(uid, gid)
        layers = keep_id_layers(store, layers)
    spec = ContainerSpec(
        args=_command(config, opts),
        env=tuple(env),
        cwd=opts.workdir or config.get("WorkingDir") or "/",
        user=user,
        hostname=hostname,
        layers=tuple(str(p) for p in layers),
        driver=driver.name,
        network=opts.network,
        # A RUN of a build writes into the image's VOLUMEs, as BuildKit's do.
        mounts=_resolve_mounts(store, opts, layers, () if opts.build_step else (config.get("Volumes") or {}),
                               mounts),
        group_add=opts.group_add,
        caps=tuple(sorted(kept_caps)),
        no_new_privs=opts.no_new_privs,
        seccomp=seccomp_filter,
        readonly_rootfs=opts.read_only,
        init=opts.init,
        tty=opts.tty,
        stdin=opts.interactive,
        auto_remove=opts.auto_remove,
        build_step=opts.build_step,
        volatile=opts.auto_remove or opts.volatile,
        stop_signal=stop_signal,
        stop_timeout=opts.stop_timeout if opts.stop_timeout is not None else 10,
        single_id=store.mapping.mode == "single",
        userns=userns,
        passwd_entry=passwd_entry,
        group_entry=group_entry,
    )
    if not spec.cwd.startswith("/"):
        raise UsageError(f"the working directory must be absolute: {spec.cwd}")
    name = opts.name or random_name()
    if store.container_name_taken(name):
        if opts.name:
            raise NameInUse(name)
        name = _free_name(store, cid)
    # A container that goes with its rl (--rm, a build step) names that rl as its owner until a
    # supervisor takes over: if rl is killed before, the next command finds the owner gone.
    owner, owner_start = 0, 0
    if spec.goes_with_its_rl:
        from rootless.runtime.launch import start_ticks

        owner = os.getpid()
        owner_start = start_ticks(owner)

    def record(name: str) -> ContainerRecord:
        return ContainerRecord(cid, name, image.id, opts.image, time.time(), "created", owner, None, 0.0, 0.0,
                               spec.to_json(), owner_start)

    rec = record(name)
    cdir = containers_dir(store) / cid
    cdir.parent.mkdir(exist_ok=True, mode=0o700)
    cdir.mkdir(mode=0o700)
    killpoint.reached("create-dir")
    try:
        (cdir / "hostname").write_text(hostname + "\n")
        (cdir / "hosts").write_text(_hosts(hostname, opts.network))
        try:
            with open("/etc/resolv.conf", "rb") as f:
                resolv = f.read()
        except OSError:
            resolv = b""
        (cdir / "resolv.conf").write_bytes(resolv)
        prepare_rootfs(store, driver.name, layers, cdir, keep_id=userns == "keep-id")
        try:
            store.add_container(rec)
        except NameInUse:
            if opts.name:
                raise
            # Another rl picked the same name meanwhile.
            rec = record(_free_name(store, cid))
            store.add_container(rec)
        killpoint.reached("create-record")
    except BaseException:
        store.remove_trees([cdir])
        raise
    return rec, spec, cdir
