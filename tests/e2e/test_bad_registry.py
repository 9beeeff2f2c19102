"""`rl pull` and `rl push` against registries that misbehave: each answer rl cannot use is one
line, exit 125, and a store left as it was. And TLS: a certificate nobody vouches for is refused."""
from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from rootless.image.oci import MAX_INDEX_NESTING, Descriptor
from rootless.registry.client import ATTEMPTS, MAX_MANIFEST, MAX_REDIRECTS
from rootless.errors import RegistryUnreachable
from rootless.store.store import Store
from tests.bad_registry import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    BadRegistry,
    Reply,
    bad_registry,
    descriptor,
    digest_of,
    make_image,
)
from tests.conftest import Rl
from tests.registry_fixture import outside_address, self_signed

GOOD = make_image("good")
ALL_ARCHES = ("amd64", "arm64", "riscv64", "ppc64le", "s390x", "386")  # whatever the host is


def _one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def _state(rl: Rl) -> tuple[str, list[str], list[str]]:
    """What a failed pull must not change: the images, the blobs, the layer trees."""
    def names(d: Path) -> list[str]:
        return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []

    return rl("images", "-a", "-q", "--no-trunc").out, names(rl.root / "blobs"), \
        sorted(p.name for p in (rl.root / "layers").iterdir()) if (rl.root / "layers").exists() else []


def _with_layer_size(size: int) -> bytes:
    doc = json.loads(GOOD.manifest)
    doc["layers"][0]["size"] = size
    return json.dumps(doc).encode()


def _config_sized(size: int) -> Callable[[BadRegistry], None]:
    def setup(reg: BadRegistry) -> None:
        reg.image("bad/img", "x", GOOD)
        doc = json.loads(GOOD.manifest)
        doc["config"]["size"] = size
        reg.manifest("bad/img", "1", json.dumps(doc).encode())
    return setup


def _oversized(reg: BadRegistry) -> None:
    # Valid JSON, padded past the limit with white space.
    reg.manifest("bad/img", "1", GOOD.manifest[:-1] + b" " * MAX_MANIFEST + b"}")


def _longer_blob(reg: BadRegistry) -> None:
    reg.image("bad/img", "x", GOOD)
    reg.manifest("bad/img", "1", _with_layer_size(len(GOOD.layer) - 7))


def _shorter_blob(reg: BadRegistry) -> None:
    reg.image("bad/img", "x", GOOD)
    reg.manifest("bad/img", "1", _with_layer_size(len(GOOD.layer) + 7))


def _wrong_content_digest(reg: BadRegistry) -> None:
    reg.image("bad/img", "x", GOOD)
    reg.manifest("bad/img", "1", GOOD.manifest)
    reg.routes["/v2/bad/img/manifests/1"] = Reply(200, (("Content-Type", OCI_MANIFEST),
                                                        ("Docker-Content-Digest", digest_of(b"other"))),
                                                  GOOD.manifest)


def _redirect_loop(reg: BadRegistry) -> None:
    reg.image("bad/img", "1", GOOD)
    path = f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}"
    reg.routes[path] = Reply(307, (("Location", path),))


def _token_service_fails(reg: BadRegistry, realm: str = "") -> None:
    # Every request of the API asks for a token, and the token service answers 500.
    challenge = Reply(401, (("WWW-Authenticate", f'Bearer realm="{realm or f"http://{reg.host}/token"}",'
                                                 'service="bad"'),))
    for path in ["/v2/", "/v2/bad/img/manifests/1"]:
        reg.routes[path] = challenge
    reg.routes["/token"] = Reply(500, (), b"the token service is down")


def _token_service_redirect_loop(reg: BadRegistry) -> None:
    _token_service_fails(reg)
    reg.routes["/token"] = Reply(302, (("Location", f"http://{reg.host}/token"),))


def _token_realm_malformed(reg: BadRegistry) -> None:
    _token_service_fails(reg, "http://[bad/token")


def _redirect_to(location: str) -> Callable[[BadRegistry], None]:
    def setup(reg: BadRegistry) -> None:
        reg.image("bad/img", "1", GOOD)
        reg.routes[f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}"] = Reply(307, (("Location", location),))
    return setup


def _retries_run_out(reg: BadRegistry) -> None:
    reg.image("bad/img", "1", GOOD)
    reg.routes[f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}"] = Reply(503, (("Retry-After", "0"),))


def _schema1(reg: BadRegistry) -> None:
    doc = json.dumps({"schemaVersion": 1, "name": "bad/img", "tag": "1", "architecture": "amd64",
                      "fsLayers": [{"blobSum": digest_of(GOOD.layer)}], "history": [{"v1Compatibility": "{}"}],
                      "signatures": []}).encode()
    reg.manifest("bad/img", "1", doc, "application/vnd.docker.distribution.manifest.v1+prettyjws")


def _not_an_image(reg: BadRegistry) -> None:
    # An OCI artifact (a Helm chart): a manifest, but its config is no image config.
    config = b'{"name":"chart"}'
    reg.blob("bad/img", config)
    reg.blob("bad/img", GOOD.layer)
    doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": descriptor("application/vnd.cncf.helm.config.v1+json", config),
                      "layers": [descriptor(OCI_LAYER_GZIP, GOOD.layer)]}).encode()
    reg.manifest("bad/img", "1", doc)


def _unknown_media_type(reg: BadRegistry) -> None:
    reg.manifest("bad/img", "1", b'{"mediaType":"application/vnd.example.thing+json"}',
                 "application/vnd.example.thing+json")


def _nested_index(reg: BadRegistry, depth: int = MAX_INDEX_NESTING + 1, repo: str = "bad/img") -> None:
    reg.image(repo, "x", GOOD)
    child, child_type = GOOD.manifest, OCI_MANIFEST
    for _ in range(depth):
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            descriptor(child_type, child, platform={"os": "linux", "architecture": a})
            for a in ALL_ARCHES]}).encode()
        reg.manifest(repo, digest_of(index), index, OCI_INDEX)
        child, child_type = index, OCI_INDEX
    reg.manifest(repo, "1", child, OCI_INDEX)


def _index_with_platform(platform: object) -> Callable[[BadRegistry], None]:
    def setup(reg: BadRegistry) -> None:
        reg.image("bad/img", "x", GOOD)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            descriptor(OCI_MANIFEST, GOOD.manifest, platform=platform)]}).encode()
        reg.manifest("bad/img", "1", index, OCI_INDEX)
    return setup


def _index_naming_a_tag(reg: BadRegistry) -> None:
    # Fetched by that name, the manifest would be whatever the tag holds, checked against nothing.
    reg.image("bad/img", "x", GOOD)
    entry = {**descriptor(OCI_MANIFEST, GOOD.manifest), "digest": "x", "platform": {"os": "linux"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**entry, "platform": {"os": "linux", "architecture": a}} for a in ALL_ARCHES]}).encode()
    reg.manifest("bad/img", "1", index, OCI_INDEX)


def _cut_short(what: str) -> Callable[[BadRegistry], None]:
    """Half the manifest, config or layer sent under the Content-Length of all of it, then the
    connection closed: the client finds the body broken off, each time at the same byte."""
    def setup(reg: BadRegistry) -> None:
        reg.image("bad/img", "1", GOOD)
        path, data = {"manifest": ("/v2/bad/img/manifests/1", GOOD.manifest),
                      "config": (f"/v2/bad/img/blobs/{digest_of(GOOD.config)}", GOOD.config),
                      "layer": (f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}", GOOD.layer)}[what]
        reg.routes[path] = Reply(200, (("Content-Type", OCI_MANIFEST), ("Content-Length", str(len(data))),
                                       ("Connection", "close")), data[:len(data) // 2])
    return setup


def _config_of_wrong_types(reg: BadRegistry) -> None:
    # Taken, it would make inspect, history and run fail later, far from the cause.
    tar_digest = json.loads(GOOD.config)["rootfs"]["diff_ids"][0]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": "PATH=/bin"}, "history": 5,
                         "rootfs": {"type": "layers", "diff_ids": [tar_digest]}}).encode()
    reg.blob("bad/img", config)
    reg.blob("bad/img", GOOD.layer)
    doc = json.loads(GOOD.manifest)
    doc["config"] = descriptor(OCI_CONFIG, config)
    reg.manifest("bad/img", "1", json.dumps(doc).encode())


def _wrong_diff_ids(reg: BadRegistry) -> None:
    reg.image("bad/img", "1", make_image("good", diff_id=digest_of(b"another layer")))


CASES: dict[str, tuple[Callable[[BadRegistry], None], str]] = {
    "oversized-manifest": (_oversized, f"larger than {MAX_MANIFEST} bytes"),
    "blob-longer-than-its-descriptor": (_longer_blob, "larger than the"),
    "blob-shorter-than-its-descriptor": (_shorter_blob, "its manifest says"),
    "config-longer-than-its-descriptor": (_config_sized(len(GOOD.config) - 7), "larger than"),
    "config-shorter-than-its-descriptor": (_config_sized(len(GOOD.config) + 7), "its manifest says"),
    "wrong-docker-content-digest": (_wrong_content_digest, "Docker-Content-Digest"),
    "redirect-loop": (_redirect_loop, f"more than {MAX_REDIRECTS} redirects"),
    "token-service-fails": (_token_service_fails, "the token service"),
    "token-service-redirect-loop": (_token_service_redirect_loop, "the token service"),
    "token-realm-malformed": (_token_realm_malformed, "not an HTTP URL"),
    "redirect-to-a-malformed-url": (_redirect_to("http://[bad/x"), "not an HTTP URL"),
    "redirect-to-another-scheme": (_redirect_to("ftp://127.0.0.1/x"), "not an HTTP URL"),
    "retries-run-out": (_retries_run_out, "503"),
    "schema-1": (_schema1, "schema 1"),
    "not-an-image": (_not_an_image, "not a container image"),
    "unknown-media-type": (_unknown_media_type, "is not an image"),
    "nested-index": (_nested_index, f"nest more than {MAX_INDEX_NESTING} deep"),
    "index-platform-not-an-object": (_index_with_platform("linux/amd64"), "the platform of entry 1 is not"),
    "index-platform-not-strings": (_index_with_platform({"os": 1, "architecture": ["amd64"]}),
                                   "the platform of entry 1 is not"),
    "index-naming-a-tag": (_index_naming_a_tag, "not a sha256 digest"),
    "manifest-cut-short": (_cut_short("manifest"), "the manifest"),
    "config-cut-short": (_cut_short("config"), "config"),
    "layer-cut-short": (_cut_short("layer"), f"downloading {digest_of(GOOD.layer)}"),
    "config-of-wrong-types": (_config_of_wrong_types, "is malformed"),
    "diff-ids-not-the-layers": (_wrong_diff_ids, "DiffID"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_misbehaving_registry_fails_in_one_line_and_leaves_the_store_alone(rl: Rl, busybox: str,
                                                                              case: str) -> None:
    setup, said = CASES[case]
    before = _state(rl)
    with bad_registry() as reg:
        setup(reg)
        r = rl("pull", f"{reg.host}/bad/img:1", check=False)
        assert r.code == 125, r
        assert said in _one_line_error(r.err)
        retried = {"retries-run-out": f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}",
                   "manifest-cut-short": "/v2/bad/img/manifests/1",
                   "config-cut-short": f"/v2/bad/img/blobs/{digest_of(GOOD.config)}",
                   "layer-cut-short": f"/v2/bad/img/blobs/{digest_of(GOOD.layer)}"}.get(case)
        if retried is not None:
            assert reg.hits[retried] == ATTEMPTS  # tried again, and given up on
        if case == "token-service-fails":
            assert reg.hits["/token"] == ATTEMPTS
    assert _state(rl) == before
    check = rl("system", "check", check=False)
    assert check.code == 0, check


def test_the_bad_registry_serves_a_good_image(rl: Rl) -> None:
    """The cases above fail for what each one breaks, not for the registry they share."""
    with bad_registry() as reg:
        reg.image("good/img", "1", GOOD)
        assert rl("pull", "-q", f"{reg.host}/good/img:1").out.strip() == GOOD.id
        # Indexes within indexes are followed, up to the limit.
        _nested_index(reg, MAX_INDEX_NESTING, "good/nested")
        assert rl("pull", "-q", f"{reg.host}/good/nested:1").out.strip() == GOOD.id
    assert rl("system", "check").code == 0


def test_an_upload_location_that_is_no_url_fails_in_one_line(rl: Rl, busybox: str) -> None:
    with bad_registry() as reg:
        reg.routes["/v2/bad/img/blobs/uploads/"] = Reply(202, (("Location", "http://[bad/upload"),))
        r = rl("push", "busybox", f"{reg.host}/bad/img:1", check=False)
        assert r.code == 125
        assert "not an HTTP URL" in _one_line_error(r.err)


# ---- push ----------------------------------------------------------------------------------------

def _upload_retries_run_out(reg: BadRegistry, config: Descriptor) -> None:
    reg.routes[reg.accept_uploads("bad/img")] = Reply(
        500, (("Retry-After", "0"),), b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}')


def _upload_token_service_fails(reg: BadRegistry, config: Descriptor) -> None:
    reg.routes["/v2/bad/img/blobs/uploads/"] = Reply(
        401, (("WWW-Authenticate", f'Bearer realm="http://{reg.host}/token",service="bad"'),))
    reg.routes["/token"] = Reply(500, (), b"the token service is down")


def _closed_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


ELSEWHERE = f"127.0.0.2:{_closed_port('127.0.0.2')}"


def _upload_location_elsewhere(reg: BadRegistry, config: Descriptor) -> None:
    reg.routes["/v2/bad/img/blobs/uploads/"] = Reply(202, (("Location", f"http://{ELSEWHERE}/upload"),))


def _upload_redirect_loop(reg: BadRegistry, config: Descriptor) -> None:
    session = reg.accept_uploads("bad/img")
    reg.routes[session] = Reply(307, (("Location", session),))


def _manifest_invalid(reg: BadRegistry, config: Descriptor) -> None:
    reg.accept_uploads("bad/img")
    reg.routes["/v2/bad/img/manifests/1"] = Reply(400, (("Content-Type", "application/json"),), json.dumps(
        {"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid:\n  layer 0 is unknown",
                     "detail": {"why": "a\nb"}}]}).encode())


def _blob_there_as(size: int | None = None, digest: str | None = None) -> Callable[[BadRegistry, Descriptor], None]:
    """The registry says it has the image's config, of this size and digest (else the right ones)."""
    def setup(reg: BadRegistry, config: Descriptor) -> None:
        reg.accept_uploads("bad/img")
        reg.routes[f"/v2/bad/img/blobs/{config.digest}"] = Reply(200, (
            ("Content-Length", str(config.size if size is None else size)),
            ("Docker-Content-Digest", digest or config.digest)))
    return setup


def _upload_cut(reg: BadRegistry, config: Descriptor) -> None:
    reg.cut_after[reg.accept_uploads("bad/img")] = 100


PUSH_CASES: dict[str, tuple[Callable[[BadRegistry, Descriptor], None], str]] = {
    "upload-retries-run-out": (_upload_retries_run_out, "disk on fire (UNKNOWN)"),
    "upload-token-service-fails": (_upload_token_service_fails, "the token service"),
    "upload-location-elsewhere": (_upload_location_elsewhere, f"cannot reach {ELSEWHERE}"),
    "upload-redirect-loop": (_upload_redirect_loop, f"more than {MAX_REDIRECTS} redirects"),
    "manifest-invalid": (_manifest_invalid, "refused the manifest of 127.0.0.1:"),
    "blob-there-of-another-size": (_blob_there_as(size=1), "but of 1 bytes"),
    "blob-there-under-another-digest": (_blob_there_as(digest=digest_of(b"x")),
                                        f"but under the digest {digest_of(b'x')}"),
    "upload-cut-off": (_upload_cut, "uploading the blob"),
}


@pytest.mark.parametrize("case", PUSH_CASES)
def test_a_push_to_a_misbehaving_registry_fails_in_one_line_and_leaves_the_store_alone(
        rl: Rl, busybox: str, case: str) -> None:
    setup, said = PUSH_CASES[case]
    before = _state(rl)
    with Store(rl.root) as s:
        config = Descriptor(OCI_CONFIG, busybox, s.blobs.size(busybox))
    with bad_registry() as reg:
        setup(reg, config)
        r = rl("push", "busybox", f"{reg.host}/bad/img:1", check=False)
        assert r.code == 125, r
        line = _one_line_error(r.err)
        assert said in line, line
        if case == "manifest-invalid":
            assert line.endswith("manifest invalid: layer 0 is unknown (MANIFEST_INVALID)"), line
        if case in ("upload-retries-run-out", "upload-cut-off"):
            assert reg.hits["/v2/bad/img/blobs/uploads/1"] == 2 * ATTEMPTS  # config and layer, each tried again
        if case != "manifest-invalid":
            assert reg.hits["/v2/bad/img/manifests/1"] == 0  # no manifest naming blobs that are not there
    assert _state(rl) == before
    assert rl("images", "-q", "--no-trunc", "busybox").out.strip() == busybox
    check = rl("system", "check", check=False)
    assert check.code == 0, check


def test_a_chunked_upload_cut_off_fails_in_one_line(tmp_path: Path) -> None:
    from rootless.registry.client import Registry

    data = b"x" * 250_000
    (tmp_path / "blob").write_bytes(data)
    with bad_registry() as reg, Registry(reg.host) as client:
        session_path = reg.accept_uploads("bad/img")
        reg.cut_after[session_path] = 1000
        scope = client.push_scope("bad/img")
        session = client.start_upload("bad/img", scope)
        assert session is not None
        with pytest.raises(RegistryUnreachable) as e:
            client.upload_blob_chunked("bad/img", scope, session, digest_of(data), tmp_path / "blob", len(data),
                                       100_000)
        assert reg.hits[session_path] == ATTEMPTS
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"uploading bytes 0-99999 of the blob {digest_of(data)} to {reg.host}/bad/img failed: ")


# ---- TLS ----------------------------------------------------------------------------------------

def test_an_untrusted_certificate_is_refused_unless_tls_verify_is_off(rl: Rl, tmp_path: Path) -> None:
    # Not on loopback, which rl speaks to without verifying (as Docker does localhost).
    address = outside_address()
    key, cert = self_signed(tmp_path, "rl-bad-registry", address)
    with bad_registry(address, tls=(key, cert)) as reg:
        reg.image("tls/img", "1", GOOD)
        name = f"{reg.host}/tls/img:1"
        r = rl("pull", name, check=False)
        assert r.code == 125
        assert "certificate is not trusted" in _one_line_error(r.err)
        assert rl("images", "-q").out == ""
        assert reg.hits["/v2/"] == 0  # refused before a request went over the connection
        # Trusted, the same certificate is accepted: what failed was the verification.
        trusted = rl("pull", "-q", name, env={"SSL_CERT_FILE": str(cert)})
        assert trusted.out.strip() == GOOD.id
        rl("rmi", name)
        assert rl("pull", "-q", "--tls-verify=false", name).out.strip() == GOOD.id
        assert reg.hits["/v2/"] == 2


def test_a_trusted_certificate_for_another_address_is_refused(rl: Rl, tmp_path: Path) -> None:
    address = outside_address()
    key, cert = self_signed(tmp_path, "rl-bad-registry", "192.0.2.254" if address != "192.0.2.254" else "192.0.2.253")
    with bad_registry(address, tls=(key, cert)) as reg:
        reg.image("tls/img", "1", GOOD)
        r = rl("pull", f"{reg.host}/tls/img:1", check=False, env={"SSL_CERT_FILE": str(cert)})
        assert r.code == 125
        assert "certificate is not trusted" in _one_line_error(r.err)
        assert reg.hits["/v2/"] == 0
