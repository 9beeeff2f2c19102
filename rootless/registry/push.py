"""`rl push`: an image's blobs, then its manifest, to a registry.

The manifest sent is the one the store holds, byte for byte, so the pushed image has the digest
`rl images --digests` shows and a pull gives back the same image id. Blobs the registry already
has in the repository are skipped (HEAD); one it has in another repository this image is also
named in is mounted from there without sending its bytes.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rootless.errors import StoreError, UsageError
from rootless.image import oci
from rootless.image.reference import Reference, looks_like_id, parse
from rootless.registry.client import Registry
from rootless.store.store import Store
from rootless.values import valueclass

# One request for most blobs; PATCHes of CHUNK_SIZE for big ones, so a proxy's request size limit
# (Cloudflare's is 100 MB) does not stop them.
CHUNKED_ABOVE = 256 << 20
CHUNK_SIZE = 64 << 20
COPY_CHUNK = 1 << 20


@valueclass
class PushResult:
    reference: Reference
    digest: str
    size: int  # of the manifest
    uploaded: tuple[str, ...]
    mounted: tuple[str, ...]
    skipped: tuple[str, ...]


def _target(image_id: str, name: str, dest: str | None) -> Reference:
    if dest is None:
        if looks_like_id(name) and image_id.removeprefix("sha256:").startswith(name.removeprefix("sha256:")):
            raise UsageError(f"give a destination to push the image {name} to, e.g. "
                             "rl push IMAGE localhost:5000/NAME:TAG")
        dest = name
    ref = parse(dest)
    if ref.digest is not None:
        raise UsageError(f"cannot push to {dest}: a destination names a tag, not a digest")
    return ref


def push(store: Store, name: str, dest: str | None = None, tls_verify: bool = True,
         say: Callable[[str], None] = lambda _: None, compression: str | None = None) -> PushResult:
    """Push as stored, or with uncompressed layers compressed (then the manifest pushed is a new
    one, and the pushed image's digest differs from the stored one's)."""
    # Held throughout: a garbage collection must not remove the blobs while they are sent.
    with store.adding():
        image = store.resolve(name)
        ref = _target(image.id, name, dest)
        manifest_bytes = store.manifest_bytes(image)
        manifest = oci.Manifest.parse(manifest_bytes, f"the stored manifest of {image.short_id}")
        # Other repositories of the same registry that this image was pulled from or pushed to.
        sources = sorted({r.path for r in map(parse, image.tags)
                          if r.domain == ref.domain and r.path != ref.path})
        paths = {d.digest: _blob_path(store, d, image.short_id) for d in [*manifest.layers, manifest.config]}
        if compression is not None:
            manifest, manifest_bytes, paths = _compress(store, manifest, manifest_bytes, paths, compression)
        blobs = [*manifest.layers, manifest.config]
        uploaded: list[str] = []
        mounted: list[str] = []
        skipped: list[str] = []
        with Registry(ref.domain, tls_verify) as reg:
            scope = reg.push_scope(ref.path, sources[:1])
            say(f"The push refers to repository [{ref.repository}]")
            for desc in blobs:
                if desc.digest in uploaded + mounted + skipped:
                    continue
                path = paths[desc.digest]
                short = desc.digest.removeprefix("sha256:")[:12]
                if reg.has_blob(ref.path, desc.digest, scope):
                    skipped.append(desc.digest)
                    say(f"{short}: Layer already exists")
                    continue
                session = None
                for src in sources[:1]:
                    session = reg.start_upload(ref.path, scope, desc.digest, mount_from=src)
                    if session is None:
                        mounted.append(desc.digest)
                        say(f"{short}: Mounted from {src}")
                if desc.digest in mounted:
                    continue
                # A refused mount opened an upload session: use it rather than open another.
                session = session or reg.start_upload(ref.path, scope)
                assert session is not None
                if desc.size > CHUNKED_ABOVE:
                    reg.upload_blob_chunked(ref.path, scope, session, desc.digest, path, desc.size, CHUNK_SIZE)
                else:
                    reg.upload_blob(ref.path, scope, session, desc.digest, path, desc.size)
                uploaded.append(desc.digest)
                say(f"{short}: Pushed")
            tag = ref.tag or "latest"
            digest = reg.put_manifest(ref.path, tag, manifest_bytes, manifest.media_type, scope)
    say(f"{tag}: digest: {digest} size: {len(manifest_bytes)}")
    return PushResult(ref, digest, len(manifest_bytes), tuple(uploaded), tuple(mounted), tuple(skipped))


def _blob_path(store: Store, desc: oci.Descriptor, image: str) -> Path:
    path = store.blobs.path(desc.digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreError(f"blob {desc.digest} of image {image} is missing from the store (remove the image "
                         "and load or pull it again)") from None
    if size != desc.size:
        raise StoreError(f"blob {desc.digest} of image {image} is {size} bytes, its manifest says {desc.size}")
    return path


class _Hashing:
    """A file writer that digests what goes through it."""

    def __init__(self, f: BinaryIO) -> None:
        import hashlib

        self._f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._f.flush()


def _compress_file(src: Path, dest: Path, compression: str) -> tuple[str, int]:
    with open(src, "rb") as f, open(dest, "wb") as out:
        h = _Hashing(out)
        if compression == "gzip":
            import gzip

            # mtime 0 and no name: the same layer compresses to the same bytes, hence digest, each time.
            with gzip.GzipFile(filename="", fileobj=h, mode="wb", compresslevel=6, mtime=0) as z:  # type: ignore[arg-type]
                shutil.copyfileobj(f, z, COPY_CHUNK)
        else:
            import zstandard

            with zstandard.ZstdCompressor(level=3).stream_writer(h, closefd=False) as z:  # type: ignore[arg-type]
                shutil.copyfileobj(f, z, COPY_CHUNK)
    return "sha256:" + h.hash.hexdigest(), h.size


def _compress(store: Store, manifest: oci.Manifest, manifest_bytes: bytes, paths: dict[str, Path],
              compression: str) -> tuple[oci.Manifest, bytes, dict[str, Path]]:
    """The manifest and blobs to push with every uncompressed layer compressed."""
    if not any(oci.layer_compression(d.media_type) == "none" for d in manifest.layers):
        return manifest, manifest_bytes, paths
    if compression == "zstd" and manifest.media_type == oci.MT_DOCKER_MANIFEST:
        manifest = manifest.as_oci()  # Docker's format has no media type for zstd layers
    docker = manifest.media_type == oci.MT_DOCKER_MANIFEST
    paths = dict(paths)
    done: dict[str, oci.Descriptor] = {}
    layers: list[oci.Descriptor] = []
    for d in manifest.layers:
        if oci.layer_compression(d.media_type) != "none":
            layers.append(d)
            continue
        if d.digest not in done:
            out = store.scratch.new_path("push")
            digest, size = _compress_file(paths[d.digest], out, compression)
            paths[digest] = out
            media_type = oci.MT_DOCKER_LAYER if docker else oci.OCI_LAYER_FOR[compression]
            done[d.digest] = oci.Descriptor(media_type, digest, size, d.annotations)
        layers.append(done[d.digest])
    new = oci.Manifest(manifest.media_type, manifest.config, tuple(layers))
    return new, new.to_bytes(), paths
