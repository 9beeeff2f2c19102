"""`rl pull`: an image from a registry into the store, as `rl load` brings one from an archive.

The manifest is stored as received, so the image keeps the registry's manifest digest; layer
blobs keep their compressed digests. Blobs the store has are not fetched again; the others are
downloaded concurrently, each unpacked while it streams in and committed (blob and tree) only
once its digest checks out.
The image is recorded only after every layer is unpacked: a failure anywhere leaves no image
(the blobs it did fetch belong to no image until a later pull uses them, or a gc removes them).
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Self

from rootless.errors import (
    ArchiveError, AuthError, NotFoundError, RegistryError, RegistryUnreachable, UsageError,
)
from rootless.image import oci
from rootless.image.reference import Reference, parse
from rootless.registry import conf
from rootless.registry.client import Registry
from rootless.store.blobs import DIGEST_RE
from rootless.store.records import ImageRecord
from rootless.store.store import IngestedLayer, LayerSource, Store
from rootless.store.unpack import LayerInput
from rootless.values import valueclass

MAX_CONFIG = 8 << 20
DOWNLOADERS = 4  # concurrent layer downloads: enough to fill a link, few enough to be polite
PIPE_SIZE = 1 << 20  # the most an unprivileged process may ask for (fs.pipe-max-size)
CHUNK = 1 << 20


@valueclass
class PullResult:
    image: ImageRecord
    reference: Reference
    digest: str  # of what the reference named: the index when it was one
    downloaded: tuple[str, ...]  # layer digests fetched
    reused: tuple[str, ...]  # layer digests the store already had


def parse_platform(value: str | None) -> oci.Platform:
    if not value:
        return oci.this_platform()
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {value!r}: use OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
    return oci.Platform(*parts)


def resolve_manifest(reg: Registry, ref: Reference, want: oci.Platform) -> tuple[bytes, str]:
    """The image manifest a reference leads to (through indexes by platform), and the digest of
    what the reference itself named."""
    top = reg.get_manifest(ref.path, ref.digest or ref.tag or "latest")

    def fetch(desc: oci.Descriptor) -> bytes:
        if desc.digest == top.digest and desc.size == len(top.data):
            return top.data
        if not DIGEST_RE.match(desc.digest):
            # Anything else would be fetched as a tag, unverified: an index pinned by digest
            # would not pin what it leads to.
            raise RegistryError(f"the image index of {ref.familiar()} names {desc.digest!r}, not a sha256 digest")
        data = reg.get_manifest(ref.path, desc.digest).data
        if len(data) != desc.size:
            raise RegistryError(f"the manifest {desc.digest} of {ref.familiar()} is {len(data)} "
                                f"bytes, its index says {desc.size}")
        return data

    try:
        _, data = oci.resolve_image(oci.Descriptor(top.media_type, top.digest, len(top.data)), fetch, want,
                                    ref.familiar())
    except ArchiveError as e:
        raise RegistryError(str(e)) from e
    return data, top.digest


ProgressFn = Callable[[str, int, int], None]  # (blob digest, bytes received, blob size)


def pull(store: Store, name: str, platform: str | None = None, tls_verify: bool = True,
         say: Callable[[str], None] = lambda _: None, progress: ProgressFn | None = None) -> PullResult:
    """Pull an image. A short name is looked for in the search registries of registries.conf in
    order, as podman does: the first that has it wins (docker.io when none are configured)."""
    names = conf.candidates(name)
    if len(names) == 1:
        return _pull(store, names[0], platform, tls_verify, say, progress)
    failures = []
    for candidate in names:
        say(f"Trying to pull {candidate}...")
        try:
            return _pull(store, candidate, platform, tls_verify, say, progress)
        except (NotFoundError, AuthError, RegistryUnreachable) as e:
            failures.append(str(e))  # a 401 may mean "not here" too
    raise NotFoundError(f"{name} is in none of the search registries of {conf.conf_file()}: "
                        + "; ".join(failures))


def _pull(store: Store, name: str, platform: str | None, tls_verify: bool, say: Callable[[str], None],
          progress: ProgressFn | None) -> PullResult:
    ref = parse(name)
    want = parse_platform(platform)
    with Registry(ref.domain, tls_verify) as reg:
        say(f"{ref.tag or ref.digest}: Pulling from {ref.path}")
        manifest_bytes, top_digest = resolve_manifest(reg, ref, want)
        try:
            manifest = oci.Manifest.parse(manifest_bytes, f"the manifest of {ref.familiar()}")
        except ArchiveError as e:
            raise RegistryError(str(e)) from e
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
            image = store.commit_image(config, layers, [ref.with_tag(ref.tag)] if ref.tag else [], manifest_bytes)
    say(f"Digest: {top_digest}")
    return PullResult(image, ref, top_digest, fetched_layers, reused)


def _config(store: Store, reg: Registry, ref: Reference, desc: oci.Descriptor) -> bytes:
    if desc.size > MAX_CONFIG:
        raise RegistryError(f"the image config of {ref.familiar()} is {desc.size} bytes: too large")
    if store.blobs.has(desc.digest):
        config = store.blobs.read(desc.digest)
    else:
        config = reg.get_blob_bytes(ref.path, desc.digest, desc.size, "the image config")
    # The digest vouches for the bytes, not for the size the manifest gives them, which the
    # manifest is stored with.
    if len(config) != desc.size:
        raise RegistryError(f"the image config of {ref.familiar()} is {len(config)} bytes, its manifest says "
                            f"{desc.size}")
    return config


def _layers(store: Store, reg: Registry, ref: Reference, descs: Sequence[oci.Descriptor], diff_ids: list[str],
            say: Callable[[str], None], progress: ProgressFn | None
            ) -> tuple[list[IngestedLayer], tuple[str, ...], tuple[str, ...]]:
    """Download the layer blobs the store lacks (each distinct blob once, several at a time),
    each into a spool file, and unpack the layers bottom up, each one streamed from its spool as
    its bytes arrive. Each layer is committed (blob and tree) on its own once its digest checks
    out, so a pull interrupted later does not fetch it again."""
    if len(diff_ids) != len(descs):
        raise RegistryError(f"the image config of {ref.familiar()} lists {len(diff_ids)} layers but its "
                            f"manifest has {len(descs)}")
    spools: dict[str, _Spool] = {}
    reused: list[str] = []
    for d in descs:
        if store.blobs.has(d.digest):
            if d.digest not in reused:
                reused.append(d.digest)
                say(f"{_short(d.digest)}: Already exists")
        elif d.digest not in spools:
            spools[d.digest] = _Spool(store.scratch.new_path("spool"))

    def fetch(d: oci.Descriptor) -> None:
        with spools[d.digest] as spool:
            reg.stream_blob(ref.path, d, spool.write,
                            None if progress is None else lambda n: progress(d.digest, n, d.size))
        say(f"{_short(d.digest)}: Download complete")

    sources = [LayerSource(None, d.digest, d.media_type) for d in descs]
    with ThreadPoolExecutor(max_workers=max(1, min(DOWNLOADERS, len(spools)))) as pool:
        firsts = {d.digest: d for d in reversed(descs) if d.digest in spools}
        downloads = {digest: pool.submit(fetch, firsts[digest]) for digest in spools}
        try:
            for i, d in enumerate(descs):
                spool = spools.pop(d.digest, None)
                if spool is None:
                    continue  # in the store already, or a blob repeated from lower down
                relay = _Relay(spool, store.scratch.new_path("pull"), d.size)
                streamed = LayerSource(LayerInput(str(relay.fifo), 0, d.size), d.digest, d.media_type)
                try:
                    # The layers below are in already: this unpacks layer i only.
                    store.ingest_layers([*sources[:i], streamed], diff_ids[:i + 1])
                finally:
                    # The blob is in (or the pull fails): what is left of the download is not needed.
                    spool.cancel()
                    relay.stop()
                    if spool.error is not None and not isinstance(spool.error, _Cancelled):
                        raise spool.error from None  # the download's failure is why the unpacker failed
                spool.remove()
                say(f"{_short(d.digest)}: Pull complete")
        except BaseException:
            for spool in spools.values():
                spool.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    # Every layer is in: this only gathers their records (and unpacks any whose blob was here).
    return store.ingest_layers(sources, diff_ids), tuple(downloads), tuple(reused)


class _Cancelled(Exception):
    """The pull no longer needs the blob being downloaded."""


class _Spool:
    """A blob being downloaded into a file while the unpacker reads it from the front: the
    download goes at the network's pace, the unpacking at its own."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.touch(0o600)  # here, not when the download starts: the relay may open it first
        self._f: BinaryIO | None = None
        self._cond = threading.Condition()
        self._written = 0
        self._done = False
        self._cancelled = False
        self.error: BaseException | None = None

    def __enter__(self) -> Self:
        self._f = open(self._path, "wb", buffering=0)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        assert self._f is not None
        self._f.close()
        with self._cond:
            self._done = True
            self.error = error
            self._cond.notify_all()

    def write(self, data: bytes) -> None:
        assert self._f is not None
        if self._cancelled:
            raise _Cancelled()
        _write_all(self._f, data)
        with self._cond:
            self._written += len(data)
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def remove(self) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def copy_to(self, out: BinaryIO, size: int) -> None:
        """Copy the spool to out as the download fills it; stop early when the download fails or
        the spool is cancelled."""
        sent = 0
        with open(self._path, "rb", buffering=0) as src:
            while sent < size:
                with self._cond:
                    while self._written <= sent and not self._done and not self._cancelled:
                        self._cond.wait()
                    available = 0 if self._cancelled else self._written - sent
                if available <= 0:
                    return
                data = os.pread(src.fileno(), min(available, CHUNK), sent)
                _write_all(out, data)
                sent += len(data)


class _Relay:
    """A thread copying a spool into a FIFO the unpacker reads (closing it early, when the
    download fails, makes the unpacker find the layer truncated)."""

    def __init__(self, spool: _Spool, fifo: Path, size: int) -> None:
        self.fifo = fifo
        os.mkfifo(fifo, 0o600)
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(spool, size), daemon=True)
        self._thread.start()

    def _run(self, spool: _Spool, size: int) -> None:
        try:
            # Opening blocks until the unpacker, or stop(), opens the other end.
            with open(self.fifo, "wb", buffering=0) as out:
                self._opened.set()
                try:
                    fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                except OSError:
                    pass  # a smaller pipe only costs more wake-ups
                spool.copy_to(out, size)
        except BrokenPipeError:
            pass  # the unpacker stopped reading: why is reported by the thread that ran it
        finally:
            self._opened.set()

    def stop(self) -> None:
        """Wait for the thread once the unpacker is done, after cancelling the spool. One still
        waiting for an unpacker that never came (the store had the blob, or the unpacker failed
        early) is let through by opening the FIFO until it has, and stops at its first write."""
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._opened.wait()
        finally:
            os.close(fd)
        self._thread.join()


def _write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n or 0:]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]

