"""The registry client against registries made of handler functions (httpx.MockTransport): retries,
the scheme the ping settles on, Bearer and Basic auth, redirects, resumed downloads and digests,
each in milliseconds. tests/e2e/test_registry.py and test_bad_registry.py speak to real servers."""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from rootless.errors import AuthError, DigestMismatch, RegistryError, RegistryUnreachable
from rootless.image import oci
from rootless.registry import auth
from rootless.registry.client import ATTEMPTS, BACKOFF, MAX_REDIRECTS, MAX_RETRY_AFTER, Registry

Handler = Callable[[httpx.Request], httpx.Response]

HOST = "registry.example"  # neither loopback nor insecure: TLS only
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": oci.MT_OCI_MANIFEST, "layers": []}).encode()
BLOB = bytes(range(256)) * 12


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Fake:
    """A registry: `handler` answers, every request is kept in `seen`, every back-off in `slept`."""

    def __init__(self, handler: Handler) -> None:
        self.seen: list[httpx.Request] = []
        self.slept: list[float] = []
        self._handler = handler

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self._handler(request)

    def client(self, domain: str = HOST, tls_verify: bool = True) -> Registry:
        return Registry(domain, tls_verify, transport=httpx.MockTransport(self._handle), sleep=self.slept.append)

    def urls(self) -> list[str]:
        return [f"{r.method} {r.url}" for r in self.seen]


class Body(httpx.SyncByteStream):
    """A body as the network delivers it (httpx reads a body given as bytes at once, which a
    streamed response never is), breaking off after `data` when `breaks`."""

    def __init__(self, data: bytes, breaks: bool = False) -> None:
        self._data = data
        self._breaks = breaks

    def __iter__(self) -> Iterator[bytes]:
        yield self._data
        if self._breaks:
            raise httpx.ReadError("connection reset by peer")


def open_registry(request: httpx.Request) -> httpx.Response:
    """/v2/ answers 200; every repository has MANIFEST under any tag, and BLOB."""
    path = request.url.path
    if path == "/v2/":
        return httpx.Response(200)
    if "/manifests/" in path:
        return httpx.Response(200, stream=Body(MANIFEST), headers={"Content-Type": oci.MT_OCI_MANIFEST})
    if path.endswith(f"/blobs/{digest(BLOB)}"):
        return httpx.Response(200, stream=Body(BLOB))
    return httpx.Response(404)


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture(autouse=True)
def private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and registries.conf of this test only: none unless it stores some."""
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))


# ---- retries ---------------------------------------------------------------------------------

def test_5xx_and_dropped_connections_are_retried_with_growing_backoff() -> None:
    failures = iter(["503", "drop", "500"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v2/":
            failure = next(failures, None)
            if failure == "drop":
                raise httpx.ReadError("connection reset by peer", request=request)
            if failure is not None:
                return httpx.Response(int(failure))
        return open_registry(request)

    fake = Fake(handler)
    with fake.client() as reg:
        assert reg.get_manifest("lib/x", "1").data == MANIFEST
    assert len(fake.seen) == 1 + ATTEMPTS
    assert fake.slept == [BACKOFF, BACKOFF * 2, BACKOFF * 4]


def test_429_waits_as_long_as_retry_after_says_within_a_bound() -> None:
    waits = iter(["3", "3600", "a date"])

    def handler(request: httpx.Request) -> httpx.Response:
        wait = next(waits, None) if request.url.path != "/v2/" else None
        return httpx.Response(429, headers={"Retry-After": wait}) if wait else open_registry(request)

    fake = Fake(handler)
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
    assert fake.slept == [3.0, MAX_RETRY_AFTER, BACKOFF * 4]


def test_5xx_up_to_the_limit_is_one_line_naming_what_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "down for\nmaintenance"}]})

    fake = Fake(handler)
    with fake.client() as reg, pytest.raises(RegistryError) as e:
        reg.get_manifest("lib/x", "1")
    assert len(fake.seen) == 1 + ATTEMPTS and len(fake.slept) == ATTEMPTS - 1
    assert one_line(e) == f"cannot get the manifest of {HOST}/lib/x:1: down for maintenance (UNAVAILABLE)"


def test_connection_refused_up_to_the_limit_is_one_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    fake = Fake(handler)
    with fake.client() as reg, pytest.raises(RegistryUnreachable) as e:
        reg.get_manifest("lib/x", "1")
    assert len(fake.seen) == ATTEMPTS
    assert one_line(e) == f"cannot reach the registry {HOST}: [Errno 111] Connection refused"


def test_a_registry_failing_its_ping_is_not_called_no_registry() -> None:
    fake = Fake(lambda request: httpx.Response(503))
    with fake.client() as reg, pytest.raises(RegistryError) as e:
        reg.base  # noqa: B018 - the ping
    assert len(fake.seen) == ATTEMPTS
    assert one_line(e) == f"the registry {HOST} fails (GET /v2/): HTTP 503 Service Unavailable"


def test_a_manifest_whose_body_breaks_off_is_asked_for_again() -> None:
    breaks = iter([True, True])

    def handler(request: httpx.Request) -> httpx.Response:
        if "/manifests/" in request.url.path and next(breaks, False):
            return httpx.Response(200, stream=Body(MANIFEST[:10], breaks=True))
        return open_registry(request)

    fake = Fake(handler)
    with fake.client() as reg:
        assert reg.get_manifest("lib/x", "1").data == MANIFEST
    assert len(fake.seen) == 1 + 3 and fake.slept == [BACKOFF, BACKOFF * 2]


# ---- the scheme the ping settles on -----------------------------------------------------------

def refusing(scheme: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == scheme:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return open_registry(request)
    return handler


def test_a_registry_that_refuses_tls_is_never_spoken_to_over_plain_http() -> None:
    fake = Fake(refusing("https"))
    with fake.client() as reg, pytest.raises(RegistryUnreachable):
        reg.get_manifest("lib/x", "1")
    assert {r.url.scheme for r in fake.seen} == {"https"}


@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "insecure.example:5000"])
def test_loopback_and_insecure_registries_are_spoken_to_over_plain_http(host: str, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text('[[registry]]\nlocation = "insecure.example:5000"\ninsecure = true\n')
    fake = Fake(refusing("https"))
    with fake.client(host) as reg:
        assert reg.base == f"http://{host}"
        reg.get_manifest("lib/x", "1")
    assert {r.url.scheme for r in fake.seen} == {"http"}


@pytest.mark.parametrize("host", ["localhost.example", "127.0.0.1.nip.io", "insecure.example:5001"])
def test_names_that_only_look_local_or_listed_get_tls_only(host: str, tmp_path: Path) -> None:
    (tmp_path / "registries.conf").write_text('[[registry]]\nlocation = "insecure.example:5000"\ninsecure = true\n')
    fake = Fake(refusing("https"))
    with fake.client(host) as reg, pytest.raises(RegistryUnreachable):
        reg.base  # noqa: B018 - the ping
    assert {r.url.scheme for r in fake.seen} == {"https"}


def test_a_tls_port_answering_plain_http_sends_a_local_registry_to_tls() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.")
        return open_registry(request)

    fake = Fake(handler)
    with fake.client("localhost:5000") as reg:
        assert reg.base == "https://localhost:5000"
    assert fake.urls() == ["GET http://localhost:5000/v2/", "GET https://localhost:5000/v2/"]


def test_tls_verify_false_falls_back_to_plain_http_once() -> None:
    fake = Fake(refusing("https"))
    with fake.client(tls_verify=False) as reg:
        assert reg.base == f"http://{HOST}"
    assert [r.url.scheme for r in fake.seen] == ["https"] * ATTEMPTS + ["http"]


def test_a_server_that_is_no_registry_is_named_so() -> None:
    fake = Fake(lambda request: httpx.Response(404))
    with fake.client() as reg, pytest.raises(RegistryError) as e:
        reg.base  # noqa: B018 - the ping
    assert one_line(e) == f"{HOST} is not an OCI registry (GET /v2/): HTTP 404 Not Found"


# ---- Bearer tokens ----------------------------------------------------------------------------

class TokenRegistry:
    """A registry that wants a Bearer token from auth.example for each repository; a token is
    good for `uses` requests, then refused as expired."""

    def __init__(self, uses: int = 100) -> None:
        self.issued: list[dict[str, list[str]]] = []
        self._valid: dict[str, tuple[str, int]] = {}  # token → (scope, uses left)
        self._uses = uses

    def challenge(self, scope: str = "", error: str = "") -> dict[str, str]:
        extra = (f',scope="{scope}"' if scope else "") + (f',error="{error}"' if error else "")
        return {"WWW-Authenticate": f'Bearer realm="https://auth.example/token",service="reg.example"{extra}'}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            query = parse_qs(request.url.query.decode())
            self.issued.append(query)
            token = f"t{len(self.issued)}"
            self._valid[token] = (" ".join(query["scope"]), self._uses)
            return httpx.Response(200, json={"token": token, "expires_in": 300})
        path = request.url.path
        if path == "/v2/":
            return httpx.Response(401, headers=self.challenge())
        scope = f"repository:{path.split('/')[2]}/{path.split('/')[3]}:pull"
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        granted, left = self._valid.get(token, ("", 0))
        if scope not in granted.split(" "):
            return httpx.Response(401, headers=self.challenge(scope))
        if left == 0:
            return httpx.Response(401, headers=self.challenge(scope, "invalid_token"))
        self._valid[token] = (granted, left - 1)
        return open_registry(request)


def test_a_token_is_fetched_for_the_challenge_and_reused_for_its_scope() -> None:
    registry = TokenRegistry()
    fake = Fake(registry)
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
        reg.get_manifest("lib/x", "2")
        reg.get_blob_bytes("lib/x", digest(BLOB), len(BLOB), "the blob")
    assert registry.issued == [{"service": ["reg.example"], "scope": ["repository:lib/x:pull"]}]
    token_request = next(r for r in fake.seen if r.url.host == "auth.example")
    assert "authorization" not in token_request.headers  # anonymous: no credentials to show
    assert [r.headers.get("authorization") for r in fake.seen if r.url.path != "/v2/"][-3:] == ["Bearer t1"] * 3


def test_another_scope_gets_its_own_token() -> None:
    registry = TokenRegistry()
    fake = Fake(registry)
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
        reg.get_manifest("lib/y", "1")
        reg.get_manifest("lib/x", "1")
    assert [q["scope"] for q in registry.issued] == [["repository:lib/x:pull"], ["repository:lib/y:pull"]]


def test_an_expired_token_is_replaced_once_and_the_request_repeated() -> None:
    registry = TokenRegistry(uses=1)
    fake = Fake(registry)
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
        reg.get_manifest("lib/x", "2")
    assert len(registry.issued) == 2
    assert [r.headers.get("authorization") for r in fake.seen if "/manifests/2" in r.url.path] == \
        ["Bearer t1", "Bearer t2"]


def test_stored_credentials_go_to_the_token_service_only() -> None:
    auth.store(HOST, auth.Credentials("alice", "s3cret"))
    registry = TokenRegistry()
    fake = Fake(registry)
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert [r.headers.get("authorization") for r in fake.seen if r.url.host == "auth.example"] == [basic]
    assert all(r.headers.get("authorization") != basic for r in fake.seen if r.url.host == HOST)


def test_a_token_service_that_refuses_is_an_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad password"}]})
        return TokenRegistry()(request)

    auth.store(HOST, auth.Credentials("alice", "wrong"))
    with Fake(handler).client() as reg, pytest.raises(AuthError) as e:
        reg.get_manifest("lib/x", "1")
    assert one_line(e) == f"the token service of {HOST} refused the credentials: bad password (UNAUTHORIZED)"


# ---- Basic auth -------------------------------------------------------------------------------

def basic_registry(password: str) -> Handler:
    good = "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != good:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        return open_registry(request)
    return handler


def test_basic_credentials_go_with_every_request() -> None:
    auth.store(HOST, auth.Credentials("alice", "s3cret"))
    fake = Fake(basic_registry("s3cret"))
    with fake.client() as reg:
        reg.get_manifest("lib/x", "1")
        reg.get_manifest("lib/x", "2")
    assert [r.url.path for r in fake.seen] == ["/v2/", "/v2/lib/x/manifests/1", "/v2/lib/x/manifests/2"]


def test_refused_basic_credentials_are_tried_once() -> None:
    auth.store(HOST, auth.Credentials("alice", "wrong"))
    fake = Fake(basic_registry("s3cret"))
    with fake.client() as reg, pytest.raises(AuthError) as e:
        reg.get_manifest("lib/x", "1")
    assert len(fake.seen) == 2
    assert "rl login registry.example" in one_line(e)


# ---- redirects --------------------------------------------------------------------------------

class Redirecting(TokenRegistry):
    """A token registry (https://registry.example) whose requests `location` sends elsewhere
    (None: answered here); anywhere else is a blob store that serves BLOB to anyone."""

    def __init__(self, location: Callable[[httpx.Request], str | None], status: int = 307) -> None:
        super().__init__()
        self._location = location
        self._status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host != "auth.example" and (url.scheme, url.host, url.port) != ("https", HOST, None):
            return httpx.Response(200, stream=Body(BLOB))
        answer = super().__call__(request)
        target = self._location(request) if url.host == HOST else None
        return answer if target is None or answer.status_code == 401 else \
            httpx.Response(self._status, headers={"Location": target})


def blob_path(request: httpx.Request) -> bool:
    return request.url.path == f"/v2/lib/x/blobs/{digest(BLOB)}"


@pytest.mark.parametrize("target", ["https://cdn.example/blob?sig=1", "http://registry.example/blob",
                                    "https://registry.example:8443/blob"])
def test_a_redirect_off_the_registry_carries_no_authorization(target: str) -> None:
    fake = Fake(Redirecting(lambda r: target if blob_path(r) else None))
    with fake.client() as reg:
        assert reg.get_blob_bytes("lib/x", digest(BLOB), len(BLOB), "the blob") == BLOB
    registry, elsewhere = fake.seen[-2:]
    assert registry.headers["authorization"] == "Bearer t1"
    assert str(elsewhere.url) == target and "authorization" not in elsewhere.headers


def test_a_redirect_within_the_registry_keeps_authorization() -> None:
    old = "/v2/lib/x/blobs/old"
    fake = Fake(Redirecting(lambda r: f"/v2/lib/x/blobs/{digest(BLOB)}" if r.url.path == old else None))
    with fake.client() as reg:
        r = reg.request("GET", old, Registry.pull_scope("lib/x"))
    assert r.status_code == 200 and r.content == BLOB
    assert blob_path(fake.seen[-1]) and fake.seen[-1].headers["authorization"] == "Bearer t1"


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://cdn.example/blob", "http://:80/blob"])
def test_a_redirect_to_no_http_url_is_refused(target: str) -> None:
    fake = Fake(Redirecting(lambda r: target if blob_path(r) else None))
    with fake.client() as reg, pytest.raises(RegistryError) as e:
        reg.get_blob_bytes("lib/x", digest(BLOB), len(BLOB), "the blob")
    assert "which is not an HTTP URL" in one_line(e)
    assert all(r.url.scheme in ("http", "https") and r.url.host for r in fake.seen)


def test_a_redirect_loop_is_cut_short() -> None:
    fake = Fake(Redirecting(lambda r: str(r.url) if blob_path(r) else None, status=302))
    with fake.client() as reg, pytest.raises(RegistryError) as e:
        reg.get_blob_bytes("lib/x", digest(BLOB), len(BLOB), "the blob")
    assert f"more than {MAX_REDIRECTS} redirects" in one_line(e)
    assert len([r for r in fake.seen if r.headers.get("authorization")]) == MAX_REDIRECTS + 1


# ---- resumed downloads ------------------------------------------------------------------------

def blob_server(honours_range: bool, cut_at: list[int]) -> Handler:
    """Serves BLOB; each of the first answers breaks off at the next offset of `cut_at`."""
    cuts = iter(cut_at)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-")) if "range" in request.headers else 0
        if not honours_range:
            start = 0
        cut = next(cuts, None)
        stream = Body(BLOB[start:cut], breaks=cut is not None)
        if start:
            return httpx.Response(206, stream=stream,
                                  headers={"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})
        return httpx.Response(200, stream=stream)
    return handler


def download(reg: Registry) -> tuple[bytes, list[int]]:
    got = bytearray()
    progress: list[int] = []
    reg.stream_blob("lib/x", oci.Descriptor(oci.MT_OCI_LAYER, digest(BLOB), len(BLOB)), got.extend,
                    progress.append)
    return bytes(got), progress


def test_a_download_cut_part_way_resumes_where_it_stopped() -> None:
    fake = Fake(blob_server(honours_range=True, cut_at=[1000, 2000]))
    with fake.client() as reg:
        got, progress = download(reg)
    assert got == BLOB
    assert progress == [1000, 2000, len(BLOB)]
    assert [r.headers.get("range") for r in fake.seen[1:]] == [None, "bytes=1000-", "bytes=2000-"]
    assert fake.slept == [BACKOFF, BACKOFF * 2]


def test_a_break_after_the_last_byte_of_the_blob_loses_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(BLOB, breaks=True)) if blob_path(request) else open_registry(request)

    fake = Fake(handler)
    with fake.client() as reg:
        got, progress = download(reg)
    assert got == BLOB and progress == [len(BLOB)]
    assert len(fake.seen) == 2 and not fake.slept


def test_a_server_that_ignores_range_sends_it_all_again_and_the_rest_is_taken() -> None:
    fake = Fake(blob_server(honours_range=False, cut_at=[1000, 500]))
    with fake.client() as reg:
        got, progress = download(reg)
    assert got == BLOB
    assert progress == [1000, len(BLOB)]


def test_a_download_cut_every_time_fails_in_one_line() -> None:
    fake = Fake(blob_server(honours_range=True, cut_at=[10, 20, 30, 40, 50]))
    with fake.client() as reg, pytest.raises(RegistryUnreachable) as e:
        download(reg)
    assert len(fake.seen) == 1 + ATTEMPTS
    assert one_line(e) == f"downloading {digest(BLOB)} from {HOST} failed: connection reset by peer"


def test_a_resume_answered_from_the_wrong_offset_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "range" in request.headers:
            return httpx.Response(206, stream=Body(BLOB), headers={"Content-Range": f"bytes 0-{len(BLOB) - 1}/{len(BLOB)}"})
        return blob_server(honours_range=True, cut_at=[1000])(request)

    with Fake(handler).client() as reg, pytest.raises(RegistryError) as e:
        download(reg)
    assert one_line(e) == (f"cannot get the blob {digest(BLOB)} of {HOST}/lib/x: asked for it from byte 1000 on, "
                           f"the registry sent the range 'bytes 0-3071/3072'")


def test_a_blob_longer_than_its_descriptor_is_refused() -> None:
    with Fake(open_registry).client() as reg, pytest.raises(RegistryError) as e:
        reg.stream_blob("lib/x", oci.Descriptor(oci.MT_OCI_LAYER, digest(BLOB), 100), lambda _: None)
    assert "is larger than the 100 bytes its manifest says" in one_line(e)


# ---- digests ----------------------------------------------------------------------------------

def test_a_manifest_asked_for_by_digest_must_have_it() -> None:
    wanted = digest(MANIFEST + b" ")
    with Fake(open_registry).client() as reg, pytest.raises(DigestMismatch) as e:
        reg.get_manifest("lib/x", wanted)
    assert one_line(e) == (f"digest mismatch for the manifest of {HOST}/lib/x@{wanted}: "
                           f"expected {wanted}, got {digest(MANIFEST)}")


def test_a_manifest_whose_docker_content_digest_differs_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        answer = open_registry(request)
        answer.headers["Docker-Content-Digest"] = digest(b"other")
        return answer

    with Fake(handler).client() as reg, pytest.raises(DigestMismatch) as e:
        reg.get_manifest("lib/x", "1")
    assert "(Docker-Content-Digest)" in one_line(e)


def test_a_blob_whose_bytes_differ_from_its_digest_is_refused() -> None:
    wanted = digest(b"something else")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(BLOB)) if "/blobs/" in request.url.path else open_registry(request)

    with Fake(handler).client() as reg, pytest.raises(DigestMismatch) as e:
        reg.get_blob_bytes("lib/x", wanted, len(BLOB), "the image config")
    assert one_line(e) == (f"digest mismatch for the image config from {HOST}/lib/x: "
                           f"expected {wanted}, got {digest(BLOB)}")
