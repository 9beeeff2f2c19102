"""`rl pull`: an image from a registry into the store, as `rl load` brings one from an archive.

The manifest is stored as received, so the image keeps the registry's manifest digest; layer
blobs keep their compressed digests. Blobs the store has are not fetched again; the others are
downloaded concurrently into the blob store, each committed only once its digest checks out.
The image is recorded only after every layer is unpacked: a failure anywhere leaves no image
(the blobs it did fetch belong to no image until a later pull uses them, or a gc removes them).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from rootless.errors import ArchiveError, UsageError
from rootless.image import oci
from rootless.image.reference import Reference, parse
from rootless.registry.client import FetchedManifest, Registry
from rootless.registry.errors import RegistryError
from rootless.store.records import ImageRecord
from rootless.store.store import IngestedLayer, LayerSource, Store
from rootless.values import valueclass

MAX_CONFIG = 8 << 20
MAX_NESTING = 4  # indexes within indexes
DOWNLOADERS = 4  # concurrent layer downloads: enough to fill a link, few enough to be polite
MT_DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                     "application/vnd.docker.distribution.manifest.v1+prettyjws")


@valueclass
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@valueclass
class PullResult:
    image: ImageRecord
    reference: Reference
    digest: str  # of what the reference named: the index when it was one
    downloaded: tuple[str, ...]  # layer digests fetched
    reused: tuple[str, ...]  # layer digests the store already had


def parse_platform(value: str | None) -> Platform:
    if not value:
        return Platform(*oci.host_platform())
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {value!r}: use OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
    return Platform(*parts)


def _pick(data: bytes, want: Platform, where: str) -> oci.Descriptor:
    try:
        doc = json.loads(data)
        entries = doc["manifests"]
        children = [(oci.Descriptor.from_json(d, where), d.get("platform") or {}) for d in entries]
    except (ValueError, KeyError, TypeError, AttributeError, ArchiveError):
        raise RegistryError(f"{where} is not a valid image index") from None
    matches = [(d, p) for d, p in children
               if d.media_type in oci.MANIFEST_TYPES + oci.INDEX_TYPES
               and p.get("os") == want.os and p.get("architecture") == want.architecture]
    if want.variant is not None:
        matches = [(d, p) for d, p in matches if p.get("variant") == want.variant]
    if not matches:
        have = sorted({"/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                       for _, p in children if isinstance(p, dict) and p.get("os")})
        raise RegistryError(f"{where} has no image for {want} (it has {', '.join(have) or 'none'}): "
                            "choose one with --platform")
    # Without a variant asked for, an entry without one is the plain form of the architecture.
    matches.sort(key=lambda m: m[1].get("variant") is not None)
    return matches[0][0]


def resolve_manifest(reg: Registry, ref: Reference, want: Platform) -> tuple[FetchedManifest, str]:
    """The image manifest a reference leads to (through indexes by platform), and the digest of
    what the reference itself named."""
    repo = ref.path
    fetched = reg.get_manifest(repo, ref.digest or ref.tag or "latest")
    top_digest = fetched.digest
    for _ in range(MAX_NESTING):
        if fetched.media_type in oci.MANIFEST_TYPES:
            return fetched, top_digest
        if fetched.media_type in MT_DOCKER_SCHEMA1:
            raise RegistryError(f"{ref.familiar()} is a Docker schema 1 image, which rl does not support")
        if fetched.media_type not in oci.INDEX_TYPES:
            raise RegistryError(f"{ref.familiar()} is not an image: its manifest has media type "
                                f"{fetched.media_type!r}")
        child = _pick(fetched.data, want, f"the image index of {ref.familiar()}")
        fetched = reg.get_manifest(repo, child.digest)
        if len(fetched.data) != child.size:
            raise RegistryError(f"the manifest {child.digest} of {ref.familiar()} is {len(fetched.data)} "
                                f"bytes, its index says {child.size}")
    raise RegistryError(f"the image indexes of {ref.familiar()} nest more than {MAX_NESTING} deep")


ProgressFn = Callable[[str, int, int], None]  # (blob digest, bytes received, blob size)


def pull(store: Store, name: str, platform: str | None = None, tls_verify: bool = True,
         say: Callable[[str], None] = lambda _: None, progress: ProgressFn | None = None) -> PullResult:
    ref = parse(name)
    want = parse_platform(platform)
    with Registry(ref.domain, tls_verify) as reg:
        say(f"{ref.tag or ref.digest}: Pulling from {ref.path}")
        fetched, top_digest = resolve_manifest(reg, ref, want)
        try:
            manifest = oci.Manifest.parse(fetched.data, f"the manifest of {ref.familiar()}")
        except ArchiveError as e:
            raise RegistryError(str(e)) from None
        if manifest.config.media_type not in (oci.MT_OCI_CONFIG, oci.MT_DOCKER_CONFIG):
            raise RegistryError(f"{ref.familiar()} is not a container image: its config has media type "
                                f"{manifest.config.media_type!r}")
        for layer in manifest.layers:
            if layer.media_type not in oci.LAYER_COMPRESSION:
                raise RegistryError(f"{ref.familiar()} has a layer of unsupported media type {layer.media_type!r}")
        with store.adding():
            config = _config(store, reg, ref, manifest.config)
            diff_ids = oci.diff_ids(oci.parse_config(config, f"the image config of {ref.familiar()}"))
            layers, fetched_layers, reused = _layers(store, reg, ref, manifest.layers, diff_ids, say, progress)
            # Named by its tag only: a name@digest reference finds it by its manifest digest.
            image = store.commit_image(config, layers, [ref.with_tag(ref.tag)] if ref.tag else [], fetched.data)
    say(f"Digest: {top_digest}")
    return PullResult(image, ref, top_digest, fetched_layers, reused)


def _config(store: Store, reg: Registry, ref: Reference, desc: oci.Descriptor) -> bytes:
    if store.blobs.has(desc.digest):
        return store.blobs.read(desc.digest)
    if desc.size > MAX_CONFIG:
        raise RegistryError(f"the image config of {ref.familiar()} is {desc.size} bytes: too large")
    return reg.get_blob_bytes(ref.path, desc.digest, MAX_CONFIG, "the image config")


def _layers(store: Store, reg: Registry, ref: Reference, descs: Sequence[oci.Descriptor], diff_ids: list[str],
            say: Callable[[str], None], progress: ProgressFn | None
            ) -> tuple[list[IngestedLayer], tuple[str, ...], tuple[str, ...]]:
    """Download the layer blobs the store lacks (each distinct blob once) straight into the blob
    store, each committed as soon as its digest checks out: ingest reads it in place rather than
    copying it, and a pull interrupted later does not fetch it again. Each layer is unpacked as
    soon as it and those below it are in, while the ones above still download."""
    if len(diff_ids) != len(descs):
        raise RegistryError(f"the image config of {ref.familiar()} lists {len(diff_ids)} layers but its "
                            f"manifest has {len(descs)}")
    todo: dict[str, oci.Descriptor] = {}
    reused: list[str] = []
    for d in descs:
        if store.blobs.has(d.digest):
            if d.digest not in reused:
                reused.append(d.digest)
                say(f"{_short(d.digest)}: Already exists")
        else:
            todo.setdefault(d.digest, d)

    def fetch(d: oci.Descriptor) -> None:
        reg.download_blob(ref.path, d, lambda: store.blobs.writer(store.scratch.new_path("pull")),
                          None if progress is None else lambda n: progress(d.digest, n, d.size))
        say(f"{_short(d.digest)}: Download complete")

    sources = [LayerSource(None, d.digest, d.media_type) for d in descs]
    with ThreadPoolExecutor(max_workers=max(1, min(DOWNLOADERS, len(todo)))) as pool:
        downloads = {digest: pool.submit(fetch, d) for digest, d in todo.items()}
        try:
            for i, d in enumerate(descs):
                if d.digest in downloads:
                    downloads[d.digest].result()
                    # The layers below are in already: this unpacks layer i only.
                    store.ingest_layers(sources[:i + 1], diff_ids[:i + 1])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    # Every layer is in: this only gathers their records (and unpacks any whose blob was there).
    return store.ingest_layers(sources, diff_ids), tuple(todo), tuple(reused)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]

