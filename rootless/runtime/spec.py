"""What a container is made of, fully resolved: the record every runtime step reads."""
from __future__ import annotations

import json

from rootless.values import asdict, field, valueclass


@valueclass
class Mount:
    type: str  # bind, tmpfs (volumes are binds of their _data directory by now)
    source: str
    target: str
    readonly: bool = False
    options: tuple[str, ...] = ()
    volume: str = ""  # the volume's name when the bind is of a volume: what `rl volume rm` checks
    anonymous: bool = False  # a volume made for this container (`-v /path`): removed with it under --rm


@valueclass
class ContainerSpec:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str  # as given ("", "name", "uid:gid"...): resolved inside, against the image's files
    hostname: str
    layers: tuple[str, ...]  # unpacked layer dirs, lowest first
    driver: str  # overlay, fuse-overlay or vfs
    network: str = "host"  # host or none
    mounts: tuple[Mount, ...] = ()
    group_add: tuple[str, ...] = ()
    caps: tuple[int, ...] = ()
    no_new_privs: bool = False
    seccomp: str = ""  # the BPF program (hex) the container runs under, "" for none: see runtime/seccomp.py
    readonly_rootfs: bool = False
    init: bool = False
    tty: bool = False
    stdin: bool = False
    auto_remove: bool = False
    # A build's RUN step: never listed, and removed like --rm when its rl is gone.
    build_step: bool = False
    # Its writable layer goes with it (--rm, a build's RUN step): on the kernel overlay it is mounted
    # volatile, so fsync inside skips the disk, as podman does for --rm.
    volatile: bool = False
    stop_signal: int = 15
    stop_timeout: int = 10
    single_id: bool = False
    userns: str = ""  # "" (root inside is the user) or "keep-id"
    # keep-id: lines added to the container's /etc/passwd and /etc/group when they lack the ids
    passwd_entry: str = ""
    group_entry: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # --preserve-fds N: the descriptors 3..3+N-1 of the `rl run` that starts it. Never in the
    # record: `rl start` later holds other files at those numbers.
    preserve_fds: int = 0

    @property
    def goes_with_its_rl(self) -> bool:
        """--rm and build steps: removed once the rl that runs them is done, or gone (killed with
        -9, as conmon cleans up for podman)."""
        return self.auto_remove or self.build_step

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> "ContainerSpec":
        d = json.loads(text)
        d["mounts"] = tuple(Mount(**{**m, "options": tuple(m["options"])}) for m in d["mounts"])
        for k in ("args", "env", "layers", "group_add", "caps"):
            d[k] = tuple(d[k])
        return ContainerSpec(**d)
