"""A new image from an image (or nothing) plus at most one layer: what `rl commit` and each step
of `rl build` make. Its config keeps the base's, with the new `config` section, the new layer's
DiffID and one more history entry (`empty_layer` when there is no layer)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from rootless.image import oci
from rootless.image.reference import Reference
from rootless.store.records import ImageRecord
from rootless.store.store import LayerSource, Store
from rootless.store.unpack import LayerInput


class HashingWriter:
    """A file that digests what is written to it: a layer's DiffID comes out of writing its tar,
    with no second read of it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._h.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


def scratch_config() -> dict[str, Any]:
    """The config of `FROM scratch`: no layers, the host's platform."""
    os_name, arch = oci.host_platform()
    return {"architecture": arch, "os": os_name, "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
            "history": []}


def derive(store: Store, base: ImageRecord | None, base_config: dict[str, Any], section: dict[str, Any],
           history: dict[str, Any], created: str, layer: tuple[Path, str] | None = None,
           tags: Sequence[Reference] = ()) -> ImageRecord:
    """Record the image; `layer` is (an uncompressed tar, its DiffID). Call inside store.adding()."""
    diff_ids = oci.diff_ids(base_config)
    sources: list[LayerSource] = []
    if base is not None:
        manifest = store.manifest(base)
        sources = [LayerSource(None, d.digest, d.media_type) for d in manifest.layers]
    entry = {"created": created, **history}
    if layer is not None:
        path, diff_id = layer
        diff_ids = [*diff_ids, diff_id]
        sources.append(LayerSource(LayerInput(os.fspath(path))))
    else:
        entry["empty_layer"] = True
    layers = store.ingest_layers(sources, diff_ids)
    config = {**base_config, "created": created, "config": section,
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [*(base_config.get("history") or []), entry]}
    return store.commit_image(oci.canonical_json(config), layers, tags)
