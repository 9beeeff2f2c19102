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
