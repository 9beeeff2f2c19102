"""`rl import`: a root filesystem (tarball, directory or stdin) as a one-layer image."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from rootless.errors import RlError, UsageError
from rootless.image import oci
from rootless.image.changes import apply_change
from rootless.image.reference import Reference
from rootless.store.records import ImageRecord
from rootless.store.store import LayerSource, Store
from rootless.store.unpack import LayerInput


def _tar_directory(src: str, out: str, owners: str) -> None:
    from rootless.image.tarwrite import write_tar

    with open(out, "wb") as f:
        # Inside the namespace stat() already shows container ids; in single-id mode the user's own
        # files are root's and any other owner is nobody, as a container would see them.
        uid = os.getuid()
        if owners == "real":
            write_tar(src, f, owners="real", overlay_upper=False)
        else:
            write_tar(src, f, owners="xattr", overlay_upper=False,
                      uid_map=lambda u: 0 if u == uid else 65534, gid_map=lambda g: 0 if g == os.getgid() else 65534)


def import_rootfs(store: Store, source: str, ref: Reference | None, changes: list[str] | None = None,
                  message: str | None = None) -> ImageRecord:
    config_section: dict = {}  # type: ignore[type-arg]
    for c in changes or []:
        apply_change(config_section, c)
    with store.adding():
        if source == "-":
            inp = LayerInput("/dev/stdin")
        else:
            p = Path(source)
            if p.is_dir():
                tar = store.scratch.new_path("import")
                store.in_userns(_tar_directory, str(p), str(tar), store.owners)
                inp = LayerInput(str(tar))
            elif p.is_file():
                inp = LayerInput(str(p))
            elif p.exists():
                raise UsageError(f"{source} is neither a file nor a directory")
            else:
                raise RlError(f"{source}: no such file or directory")
        (layer,) = store.ingest_layers([LayerSource(inp)], None)
        now = datetime.now(timezone.utc).timestamp()
        os_name, arch = oci.host_platform()
        config = {
            "created": oci.rfc3339(now),
            "architecture": arch,
            "os": os_name,
            "config": config_section,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": oci.rfc3339(now),
                         "created_by": f"rl import {source}",
                         **({"comment": message} if message else {})}],
        }
        return store.commit_image(oci.canonical_json(config), [layer], [ref] if ref else [])
