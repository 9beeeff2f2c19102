"""`rl push`: an image's blobs, then its manifest, to a registry.

The manifest sent is the one the store holds, byte for byte, so the pushed image has the digest
`rl images --digests` shows and a pull gives back the same image id. Blobs the registry already
has in the repository are skipped (HEAD); one it has in another repository this image is also
named in is mounted from there without sending its bytes.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rootless.errors import UsageError
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
UPLOADERS = 4  # blobs sent at once, as pull fetches them (Docker sends up to 5)
# zlib's level 2: the debian image's 128 MB layer gzips to 52.4 MB (podman's pgzip: 51.4 MB; zlib's
# default 6: 49.1 MB) at the speed of level 1, so a gzip push takes less time than podman's.
GZIP_LEVEL = 2


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
    """Push with uncompressed layers compressed (then the manifest pushed is a new one, and the
    pushed image's digest differs from the stored one's), or as stored (compression None).
    Blobs go several at a
    time, each compressed (when asked) just before it is sent; the manifest goes last."""
    # Held throughout: a garbage collection must not remove the blobs while they are sent.
    with store.adding():
        image = store.resolve(name)
        ref = _target(image.id, name, dest)
        manifest_bytes = store.manifest_bytes(image)
        manifest = oci.Manifest.parse(manifest_bytes, f"the stored manifest of {image.short_id}")
        # Other repositories of the same registry that this image was pulled from or pushed to.
        sources = sorted({r.path for r in map(parse, image.tags)
                          if r.domain == ref.domain and r.path != ref.path})
        paths = {d.digest: store.blobs.referenced(d.digest, d.size, image.short_id)[0]
                 for d in [*manifest.layers, manifest.config]}
        plain = {d.digest for d in manifest.layers if oci.layer_compression(d.media_type) == "none"}
        if compression is None or not plain:
            compression = None
        elif compression == "zstd" and manifest.media_type == oci.MT_DOCKER_MANIFEST:
            manifest = manifest.as_oci()  # Docker's format has no media type for zstd layers
        layer_type = (oci.MT_DOCKER_LAYER if manifest.media_type == oci.MT_DOCKER_MANIFEST
                      else oci.OCI_LAYER_FOR.get(compression or "none", oci.MT_OCI_LAYER))
        store.scratch.dir  # noqa: B018 - made here, not raced for by the threads
        with Registry(ref.domain, tls_verify) as reg:
            scope = reg.push_scope(ref.path, sources[:1])
            say(f"The push refers to repository [{ref.repository}]")

            def send(desc: oci.Descriptor) -> tuple[oci.Descriptor, str]:
                path = paths[desc.digest]
                if compression is not None and desc.digest in plain:
                    path = store.scratch.new_path("push")
                    digest, size = _compress_file(paths[desc.digest], path, compression)
                    desc = oci.Descriptor(layer_type, digest, size, desc.annotations)
                return desc, _send_blob(reg, ref, scope, sources[:1], desc, path, say)

            blobs = {d.digest: d for d in [*manifest.layers, manifest.config]}
            with ThreadPoolExecutor(max_workers=min(UPLOADERS, len(blobs))) as pool:
                futures = {digest: pool.submit(send, d) for digest, d in blobs.items()}
                try:
                    sent = {digest: f.result() for digest, f in futures.items()}
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
            if compression is not None:
                manifest = oci.Manifest(manifest.media_type, manifest.config,
                                        tuple(sent[d.digest][0] for d in manifest.layers))
                manifest_bytes = manifest.to_bytes()
            tag = ref.tag or "latest"
            digest = reg.put_manifest(ref.path, tag, manifest_bytes, manifest.media_type, scope)
    say(f"{tag}: digest: {digest} size: {len(manifest_bytes)}")
    done = [(d.digest, how) for d, how in sent.values()]
    return PushResult(ref, digest, len(manifest_bytes), *(tuple(d for d, how in done if how == kind)
                                                          for kind in ("uploaded", "mounted", "skipped")))


def _send_blob(reg: Registry, ref: Reference, scope: str, mount_from: list[str], desc: oci.Descriptor,
               path: Path, say: Callable[[str], None]) -> str:
    """Make the registry have one blob; how: "skipped" (it had it), "mounted" or "uploaded"."""
    short = desc.digest.removeprefix("sha256:")[:12]
    if reg.has_blob(ref.path, desc.digest, desc.size, scope):
        say(f"{short}: Layer already exists")
        return "skipped"
    session = None
    for src in mount_from:
        session = reg.start_upload(ref.path, scope, desc.digest, mount_from=src)
        if session is None:
            say(f"{short}: Mounted from {src}")
            return "mounted"
    # A refused mount opened an upload session: use it rather than open another.
    session = session or reg.start_upload(ref.path, scope)
    assert session is not None
    if desc.size > CHUNKED_ABOVE:
        reg.upload_blob_chunked(ref.path, scope, session, desc.digest, path, desc.size, CHUNK_SIZE)
    else:
        reg.upload_blob(ref.path, scope, session, desc.digest, path, desc.size)
    say(f"{short}: Pushed")
    return "uploaded"


def _compress_file(src: Path, dest: Path, compression: str) -> tuple[str, int]:
    from rootless.image.derive import HashingWriter

    with open(src, "rb") as f, open(dest, "wb") as out:
        h = HashingWriter(out)
        if compression == "gzip":
            from rootless.image.compression import gzip_parallel

            gzip_parallel(f, h, GZIP_LEVEL, len(os.sched_getaffinity(0)))
        else:
            import zstandard

            with zstandard.ZstdCompressor(level=3).stream_writer(h, closefd=False) as z:  # type: ignore[arg-type]
                shutil.copyfileobj(f, z, COPY_CHUNK)
        size = out.tell()
    return h.digest, size
