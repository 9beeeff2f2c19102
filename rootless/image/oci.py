"""OCI image formats: media types, manifests, configs, ChainIDs."""
from __future__ import annotations

import json
import os

from rootless.errors import ArchiveError
from rootless.values import valueclass

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_PLAIN = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MT_DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                     "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MAX_INDEX_NESTING = 4  # indexes within indexes: real multi-platform images have one level
# The variant an architecture has when an entry names none: the image spec's arm64 is ARMv8.
_DEFAULT_VARIANT = {"arm64": "v8"}

# Compression by layer media type; Docker's gzip type is also used for uncompressed tars in the
# wild, so the bytes' magic number has the last word (see sniff_compression).
LAYER_COMPRESSION: dict[str, str] = {
    MT_OCI_LAYER: "none",
    MT_OCI_LAYER_ND: "none",
    MT_OCI_LAYER_GZIP: "gzip",
    MT_OCI_LAYER_ND_GZIP: "gzip",
    MT_OCI_LAYER_ZSTD: "zstd",
    MT_OCI_LAYER_ND_ZSTD: "zstd",
    MT_DOCKER_LAYER: "gzip",
    MT_DOCKER_LAYER_PLAIN: "none",
    MT_DOCKER_LAYER_FOREIGN: "gzip",
}

OCI_LAYER_FOR = {"none": MT_OCI_LAYER, "gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


def sniff_compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:3] == b"BZh":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return "none"


def layer_compression(media_type: str) -> str:
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError:
        raise ArchiveError(f"unknown layer media type {media_type!r}")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            import hashlib  # here: OpenSSL's load costs ~2 ms on paths that never hash

            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def host_platform() -> tuple[str, str]:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return "linux", arch


@valueclass
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def serves(self, want: "Platform") -> bool:
        """Whether an image of this platform runs where `want` is asked for: without a variant
        asked, any variant of the architecture does."""
        if (self.os, self.architecture) != (want.os, want.architecture):
            return False
        return want.variant is None or \
            (self.variant or _DEFAULT_VARIANT.get(self.architecture)) == \
            (want.variant or _DEFAULT_VARIANT.get(want.architecture))


def this_platform() -> Platform:
    return Platform(*host_platform())


def _entry_platform(d: dict[str, Any], what: str, i: int) -> Platform | None:
    p = d.get("platform")
    if p is None:
        return None
    if not isinstance(p, dict) or not all(isinstance(p.get(k), str) and p[k] for k in ("os", "architecture")) \
            or not isinstance(p.get("variant") or "", str):
        raise ArchiveError(f"{what} is malformed: the platform of entry {i + 1} is not an object "
                           "with os and architecture strings")
    return Platform(p["os"], p["architecture"], p.get("variant") or None)


def index_entries(data: bytes, what: str) -> tuple[tuple[Descriptor, Platform | None], ...]:
    """The entries of an OCI image index or a Docker manifest list, each with the platform it
    names (None for an entry that names none)."""
    doc = json_object(data, what)
    if doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
        raise ArchiveError(f"{what} is not an image index (schemaVersion 2 with a manifests list)")
    media_type = doc.get("mediaType")
    if media_type is not None and media_type not in INDEX_TYPES:
        raise ArchiveError(f"{what} has unsupported media type {media_type!r}")
    return tuple((Descriptor.from_json(d, what), _entry_platform(d, what, i)) for i, d in enumerate(doc["manifests"]))


def pick_image(entries: tuple[tuple[Descriptor, Platform | None], ...], want: Platform, what: str) -> Descriptor:
    """The entry of an index for platform `want`: the first that serves it, one naming exactly
    the variant asked for (or none, when none is asked for) before the others; else the first
    entry that names no platform, as containers/image picks."""
    images = [(d, p) for d, p in entries if d.media_type in MANIFEST_TYPES + INDEX_TYPES]
    matches = [(d, p) for d, p in images if p is not None and p.serves(want)]
    if matches:
        return min(matches, key=lambda m: m[1].variant != want.variant)[0]  # min keeps the first of equals
    for d, p in images:
        if p is None:
            return d
    have = sorted({str(p) for _, p in images if p is not None})
    raise ArchiveError(f"{what} has no image for {want} (it has {', '.join(have) or 'none'})")


def resolve_image(desc: Descriptor, fetch: Callable[[Descriptor], bytes], want: Platform, what: str
                  ) -> tuple[Descriptor, bytes]:
    """The image manifest `desc` leads to, through nested indexes by platform, and its bytes.
    `fetch` gives the bytes a descriptor names, checked against its digest and size."""
    for depth in range(MAX_INDEX_NESTING + 1):
        if desc.media_type in MT_DOCKER_SCHEMA1:
            raise ArchiveError(f"{what} is a Docker schema 1 image, which rl does not support")
        if desc.media_type not in MANIFEST_TYPES + INDEX_TYPES:
            raise ArchiveError(f"{what} is not an image: {desc.digest} has unsupported media type "
                               f"{desc.media_type!r}")
        if desc.media_type in INDEX_TYPES and depth == MAX_INDEX_NESTING:
            break
        data = fetch(desc)
        if desc.media_type in MANIFEST_TYPES:
            return desc, data
        where = f"the image index {desc.digest} of {what}"
        desc = pick_image(index_entries(data, where), want, where)
    raise ArchiveError(f"the image indexes of {what} nest more than {MAX_INDEX_NESTING} deep")


def rfc3339(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(obj: Any) -> bytes:
    """The bytes rl writes for a JSON document it creates (digests are always of these bytes)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


@valueclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @staticmethod
    def from_json(d: Any, what: str) -> "Descriptor":
        try:
            return Descriptor(str(d["mediaType"]), str(d["digest"]), int(d["size"]),
                              tuple((str(k), str(v)) for k, v in (d.get("annotations") or {}).items()))
        except (KeyError, TypeError, ValueError):
            raise ArchiveError(f"malformed descriptor in {what}")


@valueclass
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @staticmethod
    def parse(data: bytes, what: str = "manifest") -> "Manifest":
        doc = json_object(data, what)
        mt = doc.get("mediaType") or MT_OCI_MANIFEST
        if mt not in MANIFEST_TYPES:
            raise ArchiveError(f"{what} has unsupported media type {mt!r}")
        if doc.get("schemaVersion") != 2:
            raise ArchiveError(f"{what} has unsupported schemaVersion {doc.get('schemaVersion')!r}")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ArchiveError(f"{what} has no layer list")
        return Manifest(mt, Descriptor.from_json(doc.get("config"), what),
                        tuple(Descriptor.from_json(x, what) for x in layers))

    def as_docker(self) -> "Manifest":
        """The same image as a Docker schema 2 manifest (what `--format docker` asks for)."""
        docker_layer = {"none": MT_DOCKER_LAYER_PLAIN, "gzip": MT_DOCKER_LAYER}
        layers = []
        for d in self.layers:
            compression = layer_compression(d.media_type)
            if compression not in docker_layer:
                raise ArchiveError(f"a {compression} layer has no Docker media type: use the OCI format")
            layers.append(Descriptor(docker_layer[compression], d.digest, d.size))
        return Manifest(MT_DOCKER_MANIFEST, Descriptor(MT_DOCKER_CONFIG, self.config.digest, self.config.size),
                        tuple(layers))

    def as_oci(self) -> "Manifest":
        oci_layer = {"none": MT_OCI_LAYER, "gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}
        return Manifest(MT_OCI_MANIFEST, Descriptor(MT_OCI_CONFIG, self.config.digest, self.config.size),
                        tuple(Descriptor(oci_layer[layer_compression(d.media_type)], d.digest, d.size)
                              for d in self.layers))

    def to_bytes(self) -> bytes:
        return canonical_json({
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [x.to_json() for x in self.layers],
        })


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveError(f"{what} is not valid JSON")
    if not isinstance(doc, dict):
        raise ArchiveError(f"{what} is not a JSON object")
    return doc


# The JSON types the image spec gives a config's fields, its run config's ("config") and its
# history entries'; null stands for absent, as Docker writes it. Checked once, where a config
# comes in, so that inspect, history and run can take them as they are.
_STRING = (lambda v: isinstance(v, str), "a string")
_OBJECT = (lambda v: isinstance(v, dict), "an object")
_STRINGS = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")
_LABELS = (lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "an object of strings")
_CONFIG_FIELDS = {"created": _STRING, "author": _STRING, "architecture": _STRING, "os": _STRING,
                  "variant": _STRING, "config": _OBJECT, "history": (lambda v: isinstance(v, list), "a list")}
_RUN_CONFIG_FIELDS = {"User": _STRING, "WorkingDir": _STRING, "StopSignal": _STRING, "Env": _STRINGS,
                      "Cmd": _STRINGS, "Entrypoint": _STRINGS, "OnBuild": _STRINGS, "Shell": _STRINGS,
                      "ExposedPorts": _OBJECT, "Volumes": _OBJECT, "Labels": _LABELS, "Healthcheck": _OBJECT}
_HISTORY_FIELDS = {"created": _STRING, "created_by": _STRING, "author": _STRING, "comment": _STRING,
                   "empty_layer": (lambda v: isinstance(v, bool), "a boolean")}


def _check_fields(doc: Any, fields: dict[str, tuple[Any, str]], what: str, where: str) -> None:
    if not isinstance(doc, dict):
        raise ArchiveError(f"{what} is malformed: {where.rstrip('.')} is not an object")
    for key, (ok, kind) in fields.items():
        if doc.get(key) is not None and not ok(doc[key]):
            raise ArchiveError(f"{what} is malformed: {where}{key} is not {kind}")


def parse_config(data: bytes, what: str = "image config") -> dict[str, Any]:
    doc = json_object(data, what)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ArchiveError(f"{what} has no rootfs.diff_ids of type 'layers'")
    _check_fields(doc, _CONFIG_FIELDS, what, "")
    _check_fields(doc.get("config") or {}, _RUN_CONFIG_FIELDS, what, "config.")
    for i, entry in enumerate(doc.get("history") or []):
        _check_fields(entry, _HISTORY_FIELDS, what, f"history[{i}].")
    return doc


def diff_ids(config: dict[str, Any]) -> list[str]:
    return [str(d) for d in config["rootfs"]["diff_ids"]]
