"""`rl load`: images from a Docker archive (current or legacy), an OCI archive or an OCI layout directory.

Layers are read in place, as byte ranges of an uncompressed archive file; a stream (stdin, a pipe)
or a compressed archive is first spooled to an uncompressed file in the store's scratch space.
Everything is checked against what names it: blobs against their digests and descriptor sizes,
the config against the manifest, each layer's DiffID against the config. Images are recorded only
after every layer of every image in the archive is in, so a bad archive adds no image (the layers
and blobs it did add belong to no image, and the next garbage collection removes them).
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import stat
import sys
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from rootless.errors import (
    ArchiveError,
    DigestMismatch,
    ImageNotFound,
    NameInvalid,
    RlError,
    UsageError,
)
from rootless.image import oci
from rootless.image.compression import Prefixed, decompressing
from rootless.image.reference import Reference, parse
from rootless.image.save import DOCKER_MANIFEST_FILE, INDEX_FILE, LAYOUT_FILE, blob_name
from rootless.store.blobs import DIGEST_RE, sha256_digest
from rootless.store.records import ImageRecord
from rootless.store.store import IngestedLayer, LayerSource, Store
from rootless.store.unpack import LayerInput
from rootless.values import valueclass

LEGACY_REPOSITORIES_FILE = "repositories"
MAX_JSON = 64 << 20  # manifests and configs are kilobytes; refuse to read a huge "JSON" into memory
_BLOCK = 512
_CHUNK = 1 << 20
_V1_ID_RE = re.compile(r"^[0-9a-f]{64}$")


@valueclass
class LoadedImage:
    image: ImageRecord
    names: tuple[Reference, ...]
    replaced: tuple[tuple[Reference, str], ...]  # names taken from another image: (name, its id)


@valueclass
class Member:
    """A file of the archive: `size` bytes of the file at `path` from `offset`."""

    path: str
    offset: int
    size: int

    def layer_input(self) -> LayerInput:
        return LayerInput(self.path, self.offset, self.size)


def _norm(name: str) -> str | None:
    """The canonical form of a path inside the archive; None for one that leaves it."""
    n = posixpath.normpath(name)
    if n.startswith("/") or n == ".." or n.startswith("../"):
        return None
    return n


class _Files(ABC):
    """The files of an archive or layout directory, by their path inside it."""

    label: str

    @abstractmethod
    def member(self, name: str) -> Member | None:
        """Where the bytes of the regular file `name` are (links followed), or None."""

    def read(self, name: str, what: str) -> bytes:
        m = self.member(name)
        if m is None:
            raise ArchiveError(f"{what} ({name}) is missing from {self.label}")
        return self._read(m, f"{what} ({name})")

    def _read(self, m: Member, what: str) -> bytes:
        if m.size > MAX_JSON:
            raise ArchiveError(f"{what} in {self.label} is too large to be metadata ({m.size} bytes)")
        with open(m.path, "rb") as f:
            f.seek(m.offset)
            data = f.read(m.size)
        if len(data) != m.size:
            raise ArchiveError(f"{self.label} is truncated: {what} ends past its end")
        return data

    def blob_member(self, desc: oci.Descriptor, what: str) -> Member | None:
        if not DIGEST_RE.match(desc.digest):
            raise ArchiveError(f"{what} has an unsupported or malformed digest {desc.digest!r} (rl supports sha256)")
        m = self.member(blob_name(desc.digest))
        if m is not None and m.size != desc.size:
            raise ArchiveError(f"{what} {desc.digest} in {self.label} is {m.size} bytes, "
                               f"its descriptor says {desc.size}")
        return m

    def blob(self, desc: oci.Descriptor, what: str) -> bytes:
        """A metadata blob, checked against its descriptor's size and digest."""
        m = self.blob_member(desc, what)
        if m is None:
            raise ArchiveError(f"{what} {desc.digest} is missing from {self.label}")
        data = self._read(m, f"{what} {desc.digest}")
        digest = sha256_digest(data)
        if digest != desc.digest:
            raise DigestMismatch(f"{what} in {self.label}", desc.digest, digest)
        return data


class _TarFiles(_Files):
    """An uncompressed tar file, indexed once: members are byte ranges of it, read in place."""

    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self._entries: dict[str, tarfile.TarInfo] = {}
        size = os.path.getsize(path)
        if size == 0:
            raise ArchiveError(f"{label} is empty")
        try:
            with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tf:
                for info in tf:
                    name = _norm(info.name)
                    if name is None:
                        continue
                    if info.isreg() and info.offset_data + info.size > size:
                        raise ArchiveError(f"{label} is truncated: {info.name} ends past its end")
                    self._entries[name] = info
                # tarfile takes a truncated or garbled header for the end of the archive; a real
                # end is a zero block.
                f.seek(tf.offset)
                end = f.read(_BLOCK)
        except tarfile.TarError as e:
            raise ArchiveError(f"{label} is not a tar archive, or is corrupt ({e})") from e
        if end != bytes(_BLOCK):
            raise ArchiveError(f"{label} is truncated or corrupt: its tar stream ends without an end marker")

    def member(self, name: str) -> Member | None:
        n = _norm(name)
        for _ in range(16):  # a link to a link...; Docker's legacy format links duplicate layer.tar files
            info = self._entries.get(n) if n is not None else None
            if info is None:
                return None
            if info.isreg():
                return Member(self.path, info.offset_data, info.size)
            if info.issym():
                n = _norm(posixpath.join(posixpath.dirname(n or ""), info.linkname))
            elif info.islnk():
                n = _norm(info.linkname)
            else:
                return None
        return None


class _DirFiles(_Files):
    """An OCI layout (or an unpacked archive) in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def member(self, name: str) -> Member | None:
        n = _norm(name)
        if n is None:
            return None
        path = self.root / n
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Member(str(path), 0, st.st_size) if stat.S_ISREG(st.st_mode) else None


# ---- getting an uncompressed, seekable file ----------------------------------------------------

def _spool(store: Store, f: BinaryIO, head: bytes, label: str) -> _TarFiles:
    compression = oci.sniff_compression(head)
    path = store.scratch.new_path("load")
    try:
        src = decompressing(Prefixed(head, f), compression)
        with open(path, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
    except OSError as e:
        if e.errno is not None:  # a real I/O error, such as a full disk
            raise
        raise ArchiveError(f"{label} is corrupt or truncated ({compression}: {e})") from e
    except Exception as e:  # gzip, bz2, lzma and zstandard each raise their own kinds  # noqa: BLE001
        raise ArchiveError(f"{label} is corrupt or truncated ({compression}: {type(e).__name__}: {e})") from e
    return _TarFiles(str(path), label)


def _stdin_path() -> str | None:
    """The file stdin is redirected from, when it can be read in place from its start."""
    st = os.fstat(0)
    if not stat.S_ISREG(st.st_mode) or os.lseek(0, 0, os.SEEK_CUR) != 0:
        return None
    try:
        path = os.readlink("/proc/self/fd/0")
        again = os.stat(path)
    except OSError:
        return None
    return path if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino) else None


def open_source(store: Store, source: str) -> _Files:
    """The archive at `source` ("-" for stdin) or the layout directory, ready to be read in place."""
    if source == "-":
        if os.isatty(0):
            raise UsageError("refusing to read an archive from a terminal: use -i FILE or redirect stdin")
        label = "the archive on stdin"
        path = _stdin_path()
        if path is not None:
            head = os.pread(0, 8, 0)
            if oci.sniff_compression(head) == "none":
                return _TarFiles(path, label)
        stdin = sys.stdin.buffer
        return _spool(store, stdin, stdin.read(8), label)
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise RlError(f"{source}: no such file or directory")
    if stat.S_ISDIR(st.st_mode):
        return _DirFiles(Path(source).absolute())
    with open(source, "rb") as f:
        head = f.read(8)
        if stat.S_ISREG(st.st_mode) and oci.sniff_compression(head) == "none":
            # Absolute: the layers are read by a helper process that need not share our cwd.
            return _TarFiles(os.path.abspath(source), source)
        return _spool(store, f, head, source)


# ---- reading the formats -----------------------------------------------------------------------

@valueclass
class _Plan:
    """One image to load, checked as far as can be without reading its layers."""

    names: tuple[Reference, ...]
    layers: tuple[LayerSource, ...]
    config: bytes | None  # None for a legacy chain: made from v1_config once the DiffIDs are known
    manifest: bytes | None  # None when the archive has none (Docker formats): the store writes one
    v1_config: dict[str, Any] | None = None

    @property
    def diff_ids(self) -> list[str] | None:
        return None if self.config is None else oci.diff_ids(oci.parse_config(self.config))


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError(f"{what} is not valid JSON")


def _name(value: object, where: str) -> Reference:
    try:
        if not isinstance(value, str):
            raise NameInvalid("not a string")
        return parse(value)
    except NameInvalid:
        raise ArchiveError(f"{where} names an image {value!r}, which is not a valid reference")


def _digest_in_name(name: str, json_suffix: bool) -> str | None:
    """The digest a file's name promises: blobs/sha256/HEX, or HEX.json for Docker's configs."""
    n = _norm(name) or ""
    hexpart = n.removeprefix("blobs/sha256/") if n.startswith("blobs/sha256/") else \
        n.removesuffix(".json") if json_suffix and n.endswith(".json") and "/" not in n else None
    return f"sha256:{hexpart}" if hexpart is not None and _V1_ID_RE.match(hexpart) else None


def _config(files: _Files, name: str, what: str) -> bytes:
    data = files.read(name, what)
    expected = _digest_in_name(name, json_suffix=True)
    digest = sha256_digest(data)
    if expected is not None and digest != expected:
        raise DigestMismatch(f"{what} ({name})", expected, digest)
    oci.parse_config(data, f"{what} ({name})")
    return data


def _docker_entries(files: _Files) -> list[dict[str, Any]]:
    doc = _json(files.read(DOCKER_MANIFEST_FILE, "the Docker manifest"), DOCKER_MANIFEST_FILE)
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise ArchiveError(f"{DOCKER_MANIFEST_FILE} in {files.label} is not a list of images")
    return doc


def _plan_docker(files: _Files) -> list[_Plan]:
    plans: list[_Plan] = []
    for i, entry in enumerate(_docker_entries(files)):
        where = f"image {i + 1} of {DOCKER_MANIFEST_FILE}"
        config_name, layer_names, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags") or []
        if not isinstance(config_name, str) or not isinstance(layer_names, list) or not isinstance(tags, list) \
                or not all(isinstance(x, str) for x in layer_names):
            raise ArchiveError(f"{where} in {files.label} is malformed (it needs Config, Layers and RepoTags)")
        config = _config(files, config_name, f"the config of {where}")
        sources: list[LayerSource] = []
        for name in layer_names:
            m = files.member(name)
            if m is None:
                raise ArchiveError(f"layer {name} of {where} is missing from {files.label}")
            sources.append(LayerSource(m.layer_input(), _digest_in_name(name, json_suffix=False)))
        plans.append(_Plan(tuple(_name(t, where) for t in tags), tuple(sources), config, None))
    return plans


def _plan_legacy(files: _Files) -> list[_Plan]:
    """Docker's format before 1.10 with no manifest.json: `repositories` names top layers, each
    `<id>/json` names its parent, and the image config is made from the top one (as Docker's
    v1 migration does)."""
    repos = _json(files.read(LEGACY_REPOSITORIES_FILE, "the repositories file"), LEGACY_REPOSITORIES_FILE)
    if not isinstance(repos, dict) or not all(isinstance(t, dict) for t in repos.values()):
        raise ArchiveError(f"{LEGACY_REPOSITORIES_FILE} in {files.label} is malformed")
    tops: dict[str, list[Reference]] = {}
    for repo, tags in repos.items():
        for tag, top in tags.items():
            if not isinstance(top, str) or not _V1_ID_RE.match(top):
                raise ArchiveError(f"{LEGACY_REPOSITORIES_FILE} names a malformed layer id {top!r}")
            tops.setdefault(top, []).append(_name(f"{repo}:{tag}", LEGACY_REPOSITORIES_FILE))
    plans: list[_Plan] = []
    for top, names in tops.items():
        chain: list[tuple[str, dict[str, Any]]] = []
        layer_id = top
        while layer_id:
            if not _V1_ID_RE.match(layer_id) or any(layer_id == c for c, _ in chain):
                raise ArchiveError(f"the parent chain of layer {top[:12]} in {files.label} is broken at {layer_id!r}")
            v1 = _json(files.read(f"{layer_id}/json", "a legacy layer's metadata"), f"{layer_id}/json")
            if not isinstance(v1, dict):
                raise ArchiveError(f"{layer_id}/json in {files.label} is not a JSON object")
            chain.append((layer_id, v1))
            parent = v1.get("parent") or ""
            layer_id = parent if isinstance(parent, str) else "!"
        chain.reverse()
        sources: list[LayerSource] = []
        for layer_id, _ in chain:
            m = files.member(f"{layer_id}/layer.tar")
            if m is None:
                raise ArchiveError(f"layer {layer_id}/layer.tar is missing from {files.label}")
            sources.append(LayerSource(m.layer_input()))
        config = {k: v for k, v in chain[-1][1].items()
                  if k not in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")}
        config["history"] = [_v1_history(v1) for _, v1 in chain]
        plans.append(_Plan(tuple(names), tuple(sources), None, None, config))
    return plans


def _v1_history(v1: dict[str, Any]) -> dict[str, Any]:
    cmd = (v1.get("container_config") or {}).get("Cmd") or []
    h = {"created": v1.get("created"), "author": v1.get("author"),
         "created_by": " ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd),
         "comment": v1.get("comment")}
    return {k: v for k, v in h.items() if v}


def _manifest(files: _Files, desc: oci.Descriptor) -> tuple[oci.Descriptor, bytes]:
    """The image manifest an entry of index.json leads to, through nested indexes by the host's platform."""
    def fetch(d: oci.Descriptor) -> bytes:
        return files.blob(d, "image index" if d.media_type in oci.INDEX_TYPES else "manifest")

    return oci.resolve_image(desc, fetch, oci.this_platform(), files.label)


def _oci_names(desc: oci.Descriptor, config_digest: str, docker_tags: dict[str, list[Reference]]) -> list[Reference]:
    annotations = dict(desc.annotations)
    full = annotations.get(oci.CONTAINERD_NAME_ANNOTATION)
    if full:
        return [_name(full, INDEX_FILE)]
    ref_name = annotations.get(oci.REF_NAME_ANNOTATION)
    if not ref_name:
        return []
    if any(c in ref_name for c in "/:@"):  # podman and skopeo write whole references here
        return [_name(ref_name, INDEX_FILE)]
    # Only a tag, as the image spec intends: a Docker manifest.json beside it may give the repository.
    return [r for r in docker_tags.get(config_digest, []) if r.tag == ref_name]


def _plan_oci(files: _Files, store: Store) -> list[_Plan]:
    layout = files.member(LAYOUT_FILE)
    if layout is not None:
        doc = _json(files.read(LAYOUT_FILE, "the layout marker"), LAYOUT_FILE)
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise ArchiveError(f"{files.label} has an unsupported OCI layout version {version!r}")
    docker_tags: dict[str, list[Reference]] = {}
    if files.member(DOCKER_MANIFEST_FILE) is not None:
        for i, entry in enumerate(_docker_entries(files)):
            config_name = entry.get("Config")
            if isinstance(config_name, str) and files.member(config_name) is not None:
                digest = sha256_digest(files.read(config_name, "a config"))
                docker_tags.setdefault(digest, []).extend(
                    _name(t, f"image {i + 1} of {DOCKER_MANIFEST_FILE}") for t in entry.get("RepoTags") or [])
    by_manifest: dict[str, _Plan] = {}
    # Every entry of index.json is an image of the archive; only nested indexes pick a platform.
    for desc, _ in oci.index_entries(files.read(INDEX_FILE, "the image index"), f"{INDEX_FILE} in {files.label}"):
        mdesc, manifest_bytes = _manifest(files, desc)
        manifest = oci.Manifest.parse(manifest_bytes, f"manifest {mdesc.digest}")
        if manifest.config.media_type not in (oci.MT_OCI_CONFIG, oci.MT_DOCKER_CONFIG):
            raise ArchiveError(f"manifest {mdesc.digest} is not an image: its config has media type "
                               f"{manifest.config.media_type!r}")
        names = _oci_names(desc, manifest.config.digest, docker_tags)
        if mdesc.digest in by_manifest:
            p = by_manifest[mdesc.digest]
            merged = p.names + tuple(n for n in names if n not in p.names)
            by_manifest[mdesc.digest] = _Plan(merged, p.layers, p.config, p.manifest)
            continue
        config = files.blob(manifest.config, "image config")
        oci.parse_config(config, f"image config {manifest.config.digest}")
        sources: list[LayerSource] = []
        for layer in manifest.layers:
            oci.layer_compression(layer.media_type)  # refuses a media type that is not a layer
            m = files.blob_member(layer, "layer")
            if m is None and not store.blobs.has(layer.digest):
                raise ArchiveError(f"layer {layer.digest} is missing from {files.label}")
            sources.append(LayerSource(m.layer_input() if m else None, layer.digest, layer.media_type))
        by_manifest[mdesc.digest] = _Plan(tuple(names), tuple(sources), config, manifest_bytes)
    return list(by_manifest.values())


def plan(files: _Files, store: Store) -> list[_Plan]:
    """Read and check the archive's metadata: which images it holds and where their layers are."""
    if files.member(INDEX_FILE) is not None:
        plans = _plan_oci(files, store)
    elif files.member(DOCKER_MANIFEST_FILE) is not None:
        plans = _plan_docker(files)
    elif files.member(LEGACY_REPOSITORIES_FILE) is not None:
        plans = _plan_legacy(files)
    else:
        raise ArchiveError(f"{files.label} is not an image archive: it has no {INDEX_FILE} (OCI), "
                           f"{DOCKER_MANIFEST_FILE} (Docker) or {LEGACY_REPOSITORIES_FILE} (legacy Docker); "
                           "'rl import' makes an image of a root filesystem tarball")
    if not plans:
        raise ArchiveError(f"{files.label} holds no image")
    return plans


def _v1_config_bytes(config: dict[str, Any], layers: Sequence[IngestedLayer]) -> bytes:
    full = {**config, "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}}
    return json.dumps(full, separators=(",", ":"), sort_keys=True).encode()


def _owner(store: Store, ref: Reference) -> str | None:
    try:
        return store.resolve(str(ref)).id
    except ImageNotFound:
        return None


def load_images(store: Store, source: str) -> list[LoadedImage]:
    with store.adding():
        files = open_source(store, source)
        plans = plan(files, store)
        # Every layer first: a bad one anywhere must leave no image behind.
        ingested = [store.ingest_layers(p.layers, p.diff_ids) for p in plans]
        loaded: list[LoadedImage] = []
        for p, layers in zip(plans, ingested):
            config = p.config if p.config is not None else _v1_config_bytes(p.v1_config or {}, layers)
            new_id = sha256_digest(config)
            replaced: list[tuple[Reference, str]] = []
            for name in p.names:
                old = _owner(store, name)
                if old is not None and old != new_id:
                    replaced.append((name, old))
            image = store.commit_image(config, layers, p.names, p.manifest)
            loaded.append(LoadedImage(image, p.names, tuple(replaced)))
    return loaded
