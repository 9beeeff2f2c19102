"""OCI details that re-implementers get wrong: ChainIDs, manifest parsing, compression sniffing."""
from __future__ import annotations

import hashlib
import json

import pytest

from rootless.errors import ArchiveError
from rootless.image import oci


def test_chain_ids_follow_the_image_spec() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expected = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert oci.chain_ids([a, b]) == [a, expected]


def test_manifest_round_trip_and_refusals() -> None:
    m = oci.Manifest(oci.MT_OCI_MANIFEST, oci.Descriptor(oci.MT_OCI_CONFIG, "sha256:" + "c" * 64, 10),
                     (oci.Descriptor(oci.MT_OCI_LAYER_GZIP, "sha256:" + "d" * 64, 20),))
    assert oci.Manifest.parse(m.to_bytes()) == m
    with pytest.raises(ArchiveError, match="media type"):
        oci.Manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": "application/x-nope"}).encode())
    with pytest.raises(ArchiveError, match="JSON"):
        oci.Manifest.parse(b"{not json")


def test_config_needs_layers_rootfs() -> None:
    with pytest.raises(ArchiveError):
        oci.parse_config(json.dumps({"rootfs": {"type": "other", "diff_ids": []}}).encode())


@pytest.mark.parametrize("head, kind", [(b"\x1f\x8b\x08\x00", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"),
                                        (b"etc/\x00\x00\x00", "none")])
def test_sniff(head: bytes, kind: str) -> None:
    assert oci.sniff_compression(head) == kind


def test_unknown_layer_media_type_is_an_error() -> None:
    with pytest.raises(ArchiveError, match="unknown layer media type"):
        oci.layer_compression("application/x-weird")


# ---- index entries and the platform they are picked by -------------------------------------------

def _entry(name: str, platform: object = None, media_type: str = oci.MT_OCI_MANIFEST) -> dict[str, object]:
    d: dict[str, object] = {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                            "size": len(name)}
    if platform is not None:
        d["platform"] = platform
    return d


def _index(*entries: dict[str, object], media_type: str = oci.MT_OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()


def _pick(data: bytes, want: str) -> str:
    """The name of the entry picked for `want` (os/arch[/variant])."""
    picked = oci.pick_image(oci.index_entries(data, "the index"), oci.Platform(*want.split("/")), "the index")
    for name in ("amd64", "arm64", "arm64-v8", "arm-v7", "plain", "nested", "foreign", "attestation"):
        if picked.digest == "sha256:" + hashlib.sha256(name.encode()).hexdigest():
            return name
    raise AssertionError(picked)


def test_pick_skips_a_foreign_entry_listed_first() -> None:
    index = _index(_entry("arm64", {"os": "linux", "architecture": "arm64"}),
                   _entry("amd64", {"os": "linux", "architecture": "amd64"}))
    assert _pick(index, "linux/amd64") == "amd64"
    assert _pick(index, "linux/arm64") == "arm64"


def test_pick_arm64_and_its_v8_variant() -> None:
    both = _index(_entry("arm64-v8", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
                  _entry("arm64", {"os": "linux", "architecture": "arm64"}))
    # The entry naming exactly the variant asked for (or none, when none is asked for) wins.
    assert _pick(both, "linux/arm64/v8") == "arm64-v8"
    assert _pick(both, "linux/arm64") == "arm64"
    # arm64 is ARMv8: an entry without a variant serves linux/arm64/v8, and one with v8 serves linux/arm64.
    assert _pick(_index(_entry("arm64", {"os": "linux", "architecture": "arm64"})), "linux/arm64/v8") == "arm64"
    assert _pick(_index(_entry("arm64-v8", {"os": "linux", "architecture": "arm64", "variant": "v8"})),
                 "linux/arm64") == "arm64-v8"
    with pytest.raises(ArchiveError, match=r"no image for linux/arm64/v7 \(it has linux/arm64, linux/arm64/v8\)"):
        _pick(both, "linux/arm64/v7")


def test_pick_follows_a_nested_index_entry_and_skips_what_is_no_image() -> None:
    index = _index(_entry("attestation", {"os": "linux", "architecture": "amd64"}, "application/vnd.example.att"),
                   _entry("nested", {"os": "linux", "architecture": "amd64"}, oci.MT_DOCKER_LIST),
                   media_type=oci.MT_DOCKER_LIST)
    assert _pick(index, "linux/amd64") == "nested"


def test_pick_an_entry_without_a_platform_when_none_matches() -> None:
    index = _index(_entry("foreign", {"os": "linux", "architecture": "s390x"}), _entry("plain"))
    assert _pick(index, "linux/amd64") == "plain"
    assert _pick(index, "linux/s390x") == "foreign"


@pytest.mark.parametrize("platform", ["linux/amd64", {"os": 1, "architecture": "amd64"}, {"os": "linux"},
                                      {"os": "linux", "architecture": "amd64", "variant": 8}, [], {"os": ""}])
def test_a_malformed_platform_is_refused(platform: object) -> None:
    with pytest.raises(ArchiveError, match="the index is malformed: the platform of entry 2 is not an object"):
        oci.index_entries(_index(_entry("amd64", {"os": "linux", "architecture": "amd64"}),
                                 _entry("arm64", platform)), "the index")


@pytest.mark.parametrize("data, said", [
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 2}).encode(), "not an image index"),
    (json.dumps({"schemaVersion": 1, "manifests": []}).encode(), "not an image index"),
    (_index(media_type=oci.MT_OCI_MANIFEST), "unsupported media type"),
    (_index({"mediaType": oci.MT_OCI_MANIFEST}), "malformed descriptor"),
])
def test_what_is_no_index_is_refused(data: bytes, said: str) -> None:
    with pytest.raises(ArchiveError, match=said):
        oci.index_entries(data, "the index")


def test_no_match_names_what_the_index_has() -> None:
    index = _index(_entry("arm64", {"os": "linux", "architecture": "arm64"}),
                   _entry("attestation", {"os": "unknown", "architecture": "unknown"}, "application/vnd.example.att"))
    with pytest.raises(ArchiveError, match=r"the index has no image for linux/riscv64 \(it has linux/arm64\)$"):
        _pick(index, "linux/riscv64")
    with pytest.raises(ArchiveError, match=r"\(it has none\)"):
        _pick(_index(), "linux/amd64")


def test_resolve_walks_nested_indexes_up_to_the_limit() -> None:
    manifest = b'{"schemaVersion":2}'
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> oci.Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return oci.Descriptor(oci.MT_OCI_MANIFEST if data == manifest else oci.MT_OCI_INDEX, digest, len(data))

    def fetch(d: oci.Descriptor) -> bytes:
        return blobs[d.digest]

    want = oci.Platform("linux", "amd64")
    desc = add(manifest)
    for depth in range(oci.MAX_INDEX_NESTING + 2):  # `depth` indexes above the manifest
        if depth > oci.MAX_INDEX_NESTING:
            with pytest.raises(ArchiveError, match=f"the image indexes of X nest more than {depth - 1} deep"):
                oci.resolve_image(desc, fetch, want, "X")
        else:
            assert oci.resolve_image(desc, fetch, want, "X") == (add(manifest), manifest)
        desc = add(_index({**desc.to_json(), "platform": {"os": "linux", "architecture": "amd64"}}))
    with pytest.raises(ArchiveError, match="X is a Docker schema 1 image"):
        oci.resolve_image(oci.Descriptor(oci.MT_DOCKER_SCHEMA1[1], desc.digest, 1), fetch, want, "X")
    with pytest.raises(ArchiveError, match="X is not an image: .* has unsupported media type"):
        oci.resolve_image(oci.Descriptor("application/x-nope", desc.digest, 1), fetch, want, "X")
