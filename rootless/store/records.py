"""The values the store hands out."""
from __future__ import annotations

from rootless.values import valueclass


@valueclass
class ImageRecord:
    id: str  # the config digest, "sha256:..."
    manifest_digest: str
    created: float  # from the image config
    added: float  # when it entered this store
    tags: tuple[str, ...]  # full references, "docker.io/library/busybox:latest"
    chain_ids: tuple[str, ...]
    layer_blobs: tuple[str, ...]
    size: int  # uncompressed bytes of all layers

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@valueclass
class ContainerRecord:
    id: str
    name: str
    image_id: str
    image_name: str  # as the user gave it
    created: float
    status: str  # created, running, exited
    pid: int  # of the container's supervisor while it runs
    exit_code: int | None
    started: float
    finished: float
    spec: str  # JSON of the ContainerSpec
    # Who to check and signal while it runs. A pid alone can be reused once its process is gone:
    # the start time (clock ticks after boot, /proc/PID/stat field 22) makes it one process.
    pid_start: int = 0
    init_pid: int = 0  # the namespace init (root of the user namespace), the supervisor's child
    init_start: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]
