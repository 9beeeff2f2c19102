"""`rl save`: images as one tar that Docker (manifest.json) and OCI tools (index.json) both read.

Like Docker >= 25 the tar is an OCI image layout plus a Docker `manifest.json` whose paths point
into the layout's blobs, so every blob is stored once. Blobs are copied byte for byte from the
store: re-serializing a manifest or a config would change its digest.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rootless.errors import StoreError, UsageError
from rootless.image import oci
from rootless.image.reference import Reference, looks_like_id, parse
from rootless.store.blobs import check_digest
from rootless.store.records import ImageRecord
from rootless.store.store import Store
from rootless.values import valueclass

LAYOUT_FILE = "oci-layout"
LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
BLOBS_DIR = "blobs/sha256"

_BLOCK = 512
_RECORD = 20 * _BLOCK  # what tar and Go's archive/tar pad the end of an archive to
_SENDFILE_MAX = 0x7FFFF000  # the most Linux moves in one sendfile() call


def blob_name(digest: str) -> str:
    """The path of a blob inside a layout (sha256 only: check_digest refuses the rest)."""
    return f"{BLOBS_DIR}/{check_digest(digest).removeprefix('sha256:')}"


@valueclass
class SavedImage:
    image: ImageRecord
    names: tuple[Reference, ...]  # empty when the image was only named by its id


@valueclass
class Entry:
    """One file of the layout: its bytes, or the store file that holds them."""

    name: str
    size: int
    data: bytes | None = None
    source: Path | None = None


def select_images(store: Store, names: Sequence[str]) -> list[SavedImage]:
    """Resolve the command line's names; several names of one image make one image with several tags."""
    order: list[str] = []
    images: dict[str, ImageRecord] = {}
    tags: dict[str, list[Reference]] = {}
    for name in names:
        image = store.resolve(name)
        if image.id not in images:
            order.append(image.id)
            images[image.id] = image
            tags[image.id] = []
        by_id = looks_like_id(name) and image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
        if by_id:
            continue
        ref = parse(name)
        # A digest names content, not a tag: Docker too saves `name@sha256:...` without a tag.
        if ref.tag is None:
            continue
        ref = ref.with_tag(ref.tag)
        if ref not in tags[image.id]:
            tags[image.id].append(ref)
    return [SavedImage(images[i], tuple(tags[i])) for i in order]


def layout_entries(store: Store, images: Sequence[SavedImage], docker_manifest: bool) -> list[Entry]:
    """Every file of the layout, sorted by name so the archive is the same for the same images."""
    blobs: dict[str, Entry] = {}
    index: list[dict[str, object]] = []
    docker: list[dict[str, object]] = []

    def add_bytes(digest: str, data: bytes) -> None:
        blobs.setdefault(digest, Entry(blob_name(digest), len(data), data=data))

    for saved in images:
        image = saved.image
        manifest_bytes = store.manifest_bytes(image)
        manifest = oci.Manifest.parse(manifest_bytes, f"the stored manifest of {image.short_id}")
        add_bytes(image.manifest_digest, manifest_bytes)
        add_bytes(image.id, store.blobs.read(image.id))
        for layer in manifest.layers:
            if layer.digest in blobs:
                continue
            path, size = store.blobs.referenced(layer.digest, layer.size, image.short_id)
            blobs[layer.digest] = Entry(blob_name(layer.digest), size, source=path)
        # One descriptor per name, as Docker writes it: the tag alone where the image spec wants
        # it, the whole name where containerd looks. An image saved by id gets one without names.
        for notes in [((oci.CONTAINERD_NAME_ANNOTATION, str(r)), (oci.REF_NAME_ANNOTATION, r.tag or ""))
                      for r in saved.names] or [()]:
            index.append(oci.Descriptor(manifest.media_type, image.manifest_digest, len(manifest_bytes),
                                        notes).to_json())
        docker.append({
            "Config": blob_name(image.id),
            "RepoTags": [r.familiar() for r in saved.names],
            "Layers": [blob_name(x.digest) for x in manifest.layers],
        })
    files = list(blobs.values())
    index_bytes = oci.canonical_json({"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX, "manifests": index})
    files.append(Entry(INDEX_FILE, len(index_bytes), data=index_bytes))
    files.append(Entry(LAYOUT_FILE, len(LAYOUT_BYTES), data=LAYOUT_BYTES))
    if docker_manifest:
        docker_bytes = json.dumps(docker, separators=(",", ":")).encode()
        files.append(Entry(DOCKER_MANIFEST_FILE, len(docker_bytes), data=docker_bytes))
    return sorted(files, key=lambda e: e.name)


# ---- writing a tar ------------------------------------------------------------------------------

def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_file(src: Path, fd: int, size: int) -> None:
    """Copy a store file to fd in the kernel when it can (sendfile takes files, pipes and sockets)."""
    with open(src, "rb") as f:
        if os.fstat(f.fileno()).st_size != size:
            raise StoreError(f"{src} changed while it was being saved")
        offset = 0
        while offset < size:
            try:
                n = os.sendfile(fd, f.fileno(), offset, min(size - offset, _SENDFILE_MAX))
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                break  # e.g. an O_APPEND output: copy through user space instead
            if n == 0:
                raise StoreError(f"{src} shrank while it was being saved")
            offset += n
        f.seek(offset)
        while offset < size:
            chunk = f.read(min(1 << 20, size - offset))
            if not chunk:
                raise StoreError(f"{src} shrank while it was being saved")
            _write_all(fd, chunk)
            offset += len(chunk)


def _header(name: str, size: int, directory: bool, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = mtime
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def write_tar(entries: Sequence[Entry], fd: int, mtime: int) -> None:
    """A plain ustar archive of the entries with their parent directories, owned by root."""
    written = 0

    def out(data: bytes) -> None:
        nonlocal written
        _write_all(fd, data)
        written += len(data)

    dirs_done: set[str] = set()
    for e in entries:
        parts = e.name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs_done:
                dirs_done.add(d)
                out(_header(d, 0, True, mtime))
        out(_header(e.name, e.size, False, mtime))
        if e.data is not None:
            out(e.data)
        else:
            assert e.source is not None
            _copy_file(e.source, fd, e.size)
            written += e.size
        if e.size % _BLOCK:
            out(b"\0" * (_BLOCK - e.size % _BLOCK))
    out(b"\0" * (2 * _BLOCK))
    if written % _RECORD:
        out(b"\0" * (_RECORD - written % _RECORD))


def _archive_mtime(images: Sequence[SavedImage]) -> int:
    # Fixed by the content, so saving the same images twice gives the same bytes.
    return max(0, int(max(s.image.created for s in images)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_parent(dest: Path) -> None:
    # The temp file goes next to the destination; say what is wrong with the name the user gave.
    if not dest.parent.is_dir():
        raise UsageError(f"cannot write {dest}: the directory {dest.parent} does not exist")


def save_archive(store: Store, names: Sequence[str], output: str | None) -> None:
    """Write the tar to `output` atomically (temp name + rename), or to stdout when it is None."""
    dest = None if output is None else Path(output)
    if dest is not None:
        _check_parent(dest)
        if dest.is_dir():
            raise UsageError(f"{output} is a directory: give a file name to -o (or use --format oci-dir)")
    # The shared store lock keeps a garbage collection from removing blobs while they are copied.
    with store.adding():
        images = select_images(store, names)
        entries = layout_entries(store, images, docker_manifest=True)
        if dest is None:
            write_tar(entries, 1, _archive_mtime(images))
        else:
            _write_archive_file(entries, dest, _archive_mtime(images))


def _write_archive_file(entries: Sequence[Entry], dest: Path, mtime: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        write_tar(entries, fd, mtime)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, dest)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise


def save_layout_dir(store: Store, names: Sequence[str], output: str) -> None:
    """Write an OCI image layout directory: built under a temp name, renamed into place when complete."""
    dest = Path(output)
    _check_parent(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise UsageError(f"{output} already exists: give the name of a new or empty directory")
    with store.adding():
        images = select_images(store, names)
        entries = layout_entries(store, images, docker_manifest=False)
        _write_layout_dir(entries, dest)


def _write_layout_dir(entries: Sequence[Entry], dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)
        (tmp / BLOBS_DIR).mkdir(mode=0o777 & ~mask, parents=True)
        file_mode = 0o666 & ~mask
        for e in entries:
            target = tmp / e.name
            if e.source is not None:
                shutil.copyfile(e.source, target)
            else:
                assert e.data is not None
                target.write_bytes(e.data)
            os.chmod(target, file_mode)
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
