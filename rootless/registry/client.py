"""An OCI distribution API client (opencontainers/distribution-spec) on httpx.

One `Registry` per registry host and command. It learns the scheme and the auth challenge from
`GET /v2/`, then sends every request with the credentials the challenge asked for: none, Basic,
or a Bearer token fetched from the challenge's realm for the request's scope and cached per scope
until it expires. Redirects are followed by hand so `Authorization` never leaves the registry's
origin (blob downloads are often redirected to a CDN). 429, 5xx and dropped connections are retried
with backoff. Every digest is computed over the bytes received.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urljoin, urlsplit

from rootless.errors import AuthError, DigestMismatch, NotFoundError, RegistryError, RegistryUnreachable
from rootless.image import oci
from rootless.registry import auth, conf
from rootless.values import valueclass

if TYPE_CHECKING:
    import httpx

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"
MANIFEST_ACCEPT = f"{oci.MT_OCI_MANIFEST}, {oci.MT_OCI_INDEX}, {oci.MT_DOCKER_MANIFEST}, {oci.MT_DOCKER_LIST}"
MAX_MANIFEST = 4 << 20  # the distribution spec lets registries refuse larger; so do we
ATTEMPTS = 4
BACKOFF = 0.25  # seconds, doubled per attempt
MAX_RETRY_AFTER = 10.0
MAX_REDIRECTS = 5
TOKEN_SLACK = 10.0  # refresh a token this long before it expires
DEFAULT_TOKEN_LIFE = 60.0  # what the token spec says when the reply has no expires_in
CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@valueclass
class UploadSession:
    location: str  # absolute URL of the session
    min_chunk: int  # OCI-Chunk-Min-Length: the smallest PATCH the registry takes (0: any)


@valueclass
class FetchedManifest:
    data: bytes  # exactly as received: digests are of these bytes
    media_type: str
    digest: str


def registry_host(domain: str) -> str:
    """Where a reference's domain is served: docker.io is registry-1.docker.io."""
    return DOCKER_HUB_HOST if domain == DOCKER_HUB else domain


def is_local(host: str) -> bool:
    """localhost and loopback addresses: spoken to over plain HTTP, as Docker does."""
    name = urlsplit(f"//{host}").hostname or host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_RE.finditer(rest)}
    return scheme.lower(), params


def error_message(response: httpx.Response, what: str) -> str:
    """One line: what was asked, and what the registry said (its `errors` list when it sent one)."""
    said: list[str] = []
    try:
        doc = json.loads(response.content)
        for e in doc.get("errors") or []:
            msg = str(e.get("message") or "").strip()
            code = str(e.get("code") or "").strip()
            said.append(f"{msg} ({code})" if msg and code else msg or code)
    except (ValueError, AttributeError, TypeError):
        pass
    text = "; ".join(s for s in said if s) or f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return " ".join(f"{what}: {text}".split())


class Registry:
    """The registry serving one domain of image references."""

    def __init__(self, domain: str, tls_verify: bool = True, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`transport` carries the requests (default: httpx's, over the network); `sleep` waits
        out the back-off between retries. Tests pass an in-process registry and no wait."""
        import ssl

        import httpx

        self.domain = domain
        self.host = registry_host(domain)
        # Insecure ones as Docker speaks to localhost: plain HTTP, else TLS unverified.
        self._plain_http = is_local(self.host) or conf.is_insecure(self.host)
        self._insecure = not tls_verify
        # The system's trust store (as podman and Docker use), not certifi's; loading it takes
        # ~0.1 s, spared for a registry spoken to over plain HTTP.
        verify: Any = False if self._insecure or self._plain_http else ssl.create_default_context()
        self._http = httpx.Client(verify=verify, follow_redirects=False, http2=False,
                                  timeout=httpx.Timeout(30.0, connect=10.0), transport=transport,
                                  headers={"User-Agent": "rl (rootless containers)"})
        self._sleep = sleep
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._creds: auth.Credentials | None = auth.lookup(domain)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._token_lock = threading.Lock()  # blobs go on several threads: one token fetch serves them

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- connection and auth ---------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._base is None:
            self._base = self._ping()
        return self._base

    def _ping(self) -> str:
        """Find the scheme that answers `/v2/` and the auth it asks for. A local or insecure
        registry is tried over plain HTTP first, then TLS (unverified, as Docker treats
        localhost); one with --tls-verify=false over TLS first, then plain HTTP. Only the first
        try is retried: the fallback either answers at once or is not there."""
        schemes = ["http", "https"] if self._plain_http else ["https", "http"] if self._insecure else ["https"]
        first: RegistryUnreachable | None = None
        for n, scheme in enumerate(schemes):
            base = f"{scheme}://{self.host}"
            try:
                r = self._retrying(lambda url=f"{base}/v2/": self._http.get(url), ATTEMPTS if n == 0 else 1)
            except RegistryUnreachable as e:
                first = first or e
                continue
            r.close()
            if r.status_code == 401 and "www-authenticate" in r.headers:
                self._challenge = parse_challenge(r.headers["www-authenticate"])
            elif r.status_code not in (200, 401):
                # 400: Go's answer to plain HTTP on a TLS port; 404: not a registry on this scheme.
                if r.status_code in (400, 404) and n < len(schemes) - 1:
                    continue
                if r.status_code == 429 or r.status_code >= 500:
                    raise RegistryError(error_message(r, f"the registry {self.host} fails (GET /v2/)"))
                raise RegistryError(error_message(r, f"{self.host} is not an OCI registry (GET /v2/)"))
            return base
        assert first is not None
        raise first

    def _retrying(self, send: Callable[[], httpx.Response], attempts: int = ATTEMPTS) -> httpx.Response:
        import httpx

        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                r = send()
            except httpx.TransportError as e:
                reason = str(e) or type(e).__name__
                if "CERTIFICATE_VERIFY_FAILED" in reason:
                    raise RegistryUnreachable(f"cannot reach the registry {self.host}: its certificate is not "
                                              "trusted (--tls-verify=false skips the check)") from e
                if last:
                    raise RegistryUnreachable(self._transport_failure(e, reason)) from e
                self._sleep(BACKOFF * 2 ** attempt)
                continue
            if (r.status_code == 429 or r.status_code >= 500) and not last:
                wait = BACKOFF * 2 ** attempt
                try:
                    wait = min(max(wait, float(r.headers.get("retry-after", 0))), MAX_RETRY_AFTER)
                except ValueError:
                    pass
                r.close()
                self._sleep(wait)
                continue
            return r
        raise AssertionError("unreachable")

    def _transport_failure(self, e: httpx.TransportError, reason: str) -> str:
        """What broke: the connection to the registry, or to the host it sent rl to (an upload
        location, a redirect), which is the one to name."""
        import httpx

        try:
            host = urlsplit(str(e.request.url)).netloc
        except RuntimeError:  # an error raised outside a request names none
            host = self.host
        where = f"the registry {self.host}" if host in ("", self.host) else \
            f"{host} (where the registry {self.host} sent rl)"
        if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
            return f"cannot reach {where}: {reason}"
        return f"the connection to {where} broke off: {reason}"

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, _ = self._challenge
        if scheme == "basic" and self._creds is not None:
            return {"Authorization": self._basic()}
        if scheme == "bearer":
            token = self._tokens.get(scope)
            if token is not None and token[1] > time.monotonic():
                return {"Authorization": f"Bearer {token[0]}"}
        return {}

    def _basic(self) -> str:
        import base64

        assert self._creds is not None
        pair = f"{self._creds.username}:{self._creds.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _fetch_token(self, params: dict[str, str], scope: str) -> None:
        import httpx

        realm = params.get("realm")
        if not realm:
            raise AuthError(f"the registry {self.host} asks for a token but names no token service (realm)")
        if _http_url(realm) is None:
            raise AuthError(f"the registry {self.host} names a token service {realm!r} that is not an HTTP URL")
        # Our scope, not only the challenge's: some registries omit it, and a push needs push too.
        scopes = [s for s in scope.split(" ") if s]
        query: list[tuple[str, str]] = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers = {"Authorization": self._basic()} if self._creds is not None else {}
        try:
            r = self._retrying(lambda: self._http.get(realm, params=query, headers=headers, follow_redirects=True))
        except RegistryUnreachable as e:
            raise AuthError(f"cannot reach the token service {urlsplit(realm).netloc} of {self.host}: "
                            f"{e.__cause__ or e}") from e
        except httpx.TooManyRedirects:
            raise AuthError(f"the token service of {self.host} redirects in a loop ({realm})")
        with closing(r):
            if r.status_code in (401, 403):
                raise AuthError(error_message(r, f"the token service of {self.host} refused the credentials"))
            if r.status_code != 200:
                raise AuthError(error_message(r, f"the token service of {self.host} failed"))
            try:
                doc = r.json()
            except (ValueError, httpx.DecodingError):
                raise AuthError(f"the token service of {self.host} answered something that is not JSON")
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service of {self.host} answered without a token")
        try:
            life = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFE)
        except (TypeError, ValueError):
            life = DEFAULT_TOKEN_LIFE
        self._tokens[scope] = (token, time.monotonic() + max(life - TOKEN_SLACK, 1.0))

    def _authenticate(self, header: str, scope: str, refused: tuple[str, float] | None) -> bool:
        """React to a 401's challenge to a request sent with the token `refused` (None: none);
        False when there is nothing new to try."""
        challenge = parse_challenge(header)
        scheme, params = challenge
        if scheme == "basic":
            had = self._challenge is not None and self._challenge[0] == "basic"
            self._challenge = challenge
            return self._creds is not None and not had
        if scheme == "bearer":
            with self._token_lock:
                self._challenge = challenge
                # Another thread may have fetched a fresh one since: that one serves.
                if self._tokens.get(scope) in (None, refused):
                    self._fetch_token(params, scope)
            return True
        raise AuthError(f"the registry {self.host} asks for an unsupported kind of authentication {scheme!r}")

    # ---- requests --------------------------------------------------------------------------

    def _follow(self, method: str, url: str, scope: str, headers: dict[str, str],
                body: Callable[[], Any] | None, stream: bool) -> httpx.Response:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            h = dict(headers)
            # Credentials go to the registry's origin only: not to a CDN, nor in clear text to
            # its host over plain HTTP.
            if _origin(current) == _origin(self.base):
                h.update(self._auth_header(scope))
            req = self._http.build_request(method, current, headers=h, content=body() if body else None)
            r = self._http.send(req, stream=stream)
            if r.status_code in _REDIRECTS and "location" in r.headers:
                r.close()
                target = _http_url(r.headers["location"], current)
                if target is None:
                    raise RegistryError(f"{method} {url}: the registry redirects to {r.headers['location']!r}, "
                                        "which is not an HTTP URL")
                current = target
                if r.status_code == 303:
                    method, body = "GET", None
                continue
            return r
        raise RegistryError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def request(self, method: str, url: str, scope: str, headers: dict[str, str] | None = None,
                body: Callable[[], Any] | None = None, stream: bool = False) -> httpx.Response:
        """Send a request (a path on the registry or a full URL), authenticating as it asks.
        `body` makes the request body afresh for each attempt."""
        if url.startswith("/"):
            url = self.base + url
        else:
            self.base  # noqa: B018 - the ping learns the auth challenge first
        hdrs = headers or {}
        token = self._tokens.get(scope)
        r = self._retrying(lambda: self._follow(method, url, scope, hdrs, body, stream))
        if r.status_code == 401 and "www-authenticate" in r.headers:
            r.read()
            r.close()
            if self._authenticate(r.headers["www-authenticate"], scope, token):
                r = self._retrying(lambda: self._follow(method, url, scope, hdrs, body, stream))
        return r

    def fail(self, r: httpx.Response, what: str) -> RegistryError:
        """The error to raise for an unexpected answer."""
        if not r.is_stream_consumed:
            r.read()
        r.close()
        msg = error_message(r, what)
        if r.status_code == 404:
            return NotFoundError(msg)
        if r.status_code == 401:
            hint = (" (check the credentials: rl login " + self.domain + ")" if self._creds is not None
                    else " (the name may be wrong, or the registry needs 'rl login " + self.domain + "')")
            return AuthError(msg + hint)
        if r.status_code == 403:
            return AuthError(msg)
        return RegistryError(msg)

    def check_login(self, creds: auth.Credentials) -> None:
        """Prove credentials work before they are stored, as `docker login` does."""
        self._creds = creds
        self._tokens.clear()
        self.base  # noqa: B018 - the ping learns the auth challenge
        if self._challenge is None:
            return  # an open registry: nothing to check against
        scheme, params = self._challenge
        if scheme == "bearer":
            self._fetch_token(params, "")
            return
        r = self.request("GET", "/v2/", "")
        r.close()
        if r.status_code != 200:
            raise AuthError(error_message(r, f"logging in to {self.host} failed"))

    # ---- the distribution API --------------------------------------------------------------

    @staticmethod
    def pull_scope(repo: str) -> str:
        return f"repository:{repo}:pull"

    @staticmethod
    def push_scope(repo: str, mount_from: Iterable[str] = ()) -> str:
        return " ".join([f"repository:{repo}:pull,push", *(f"repository:{r}:pull" for r in mount_from)])

    def get_manifest(self, repo: str, reference: str) -> FetchedManifest:
        """A manifest or index by tag or digest; a digest reference is checked against the bytes."""
        what = f"{self.domain}/{repo}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        r, data = self._get_whole(f"/v2/{repo}/manifests/{reference}", self.pull_scope(repo),
                                  {"Accept": MANIFEST_ACCEPT}, MAX_MANIFEST, f"the manifest of {what}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"the manifest of {what}", reference, digest)
        header = r.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise DigestMismatch(f"the manifest of {what} (Docker-Content-Digest)", header, digest)
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        try:
            declared = json.loads(data).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryError(f"the manifest of {what} is not a JSON object")
        # The document's own mediaType wins over a Content-Type some registries get wrong.
        return FetchedManifest(data, declared or media_type or oci.MT_OCI_MANIFEST, digest)

    def _get_whole(self, path: str, scope: str, headers: dict[str, str], limit: int, what: str
                   ) -> tuple[httpx.Response, bytes]:
        """A small document (a manifest, a config) read whole; one whose body breaks off is
        asked for again, as a dropped blob download is resumed."""
        import httpx

        for attempt in range(ATTEMPTS):
            r = self.request("GET", path, scope, headers=headers, stream=True)
            with closing(r):
                if r.status_code != 200:
                    raise self.fail(r, f"cannot get {what}")
                try:
                    return r, _read_limited(r, limit, what)
                except httpx.TransportError as e:
                    if attempt == ATTEMPTS - 1:
                        raise RegistryUnreachable(f"reading {what} from {self.host} failed: "
                                                  f"{str(e) or type(e).__name__}") from e
            self._sleep(BACKOFF * 2 ** attempt)
        raise AssertionError("unreachable")

    def get_blob_bytes(self, repo: str, digest: str, limit: int, what: str) -> bytes:
        _, data = self._get_whole(f"/v2/{repo}/blobs/{digest}", self.pull_scope(repo), {}, limit,
                                  f"{what} {digest} from {self.domain}/{repo}")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DigestMismatch(f"{what} from {self.domain}/{repo}", digest, got)
        return data

    def stream_blob(self, repo: str, desc: oci.Descriptor, write: Callable[[bytes], object],
                    progress: Callable[[int], None] | None = None) -> None:
        """Hand a blob's bytes to `write` as they arrive; the receiver digests them. A connection
        dropped mid-blob resumes where it stopped: a Range request, or the whole blob again with
        the bytes already sent skipped when the registry ignores Range. `progress` gets the bytes
        sent so far."""
        import httpx

        what = f"the blob {desc.digest} of {self.domain}/{repo}"
        sent = 0
        for attempt in range(ATTEMPTS):
            try:
                self._stream_once(repo, desc, what, sent, write, progress)
                return
            except _Interrupted as e:
                sent = e.sent
                # Up to here the bytes went on: only the rest is fetched again.
                if attempt == ATTEMPTS - 1:
                    cause = e.__cause__ or e
                    raise RegistryUnreachable(f"downloading {desc.digest} from {self.host} failed: "
                                              f"{str(cause) or type(cause).__name__}") from cause
                self._sleep(BACKOFF * 2 ** attempt)
            except httpx.TransportError as e:
                raise RegistryUnreachable(f"downloading {desc.digest} from {self.host} failed: "
                                          f"{str(e) or type(e).__name__}") from e
        raise AssertionError("unreachable")

    def _stream_once(self, repo: str, desc: oci.Descriptor, what: str, sent: int,
                     write: Callable[[bytes], object], progress: Callable[[int], None] | None) -> None:
        import httpx

        headers = {"Range": f"bytes={sent}-"} if sent else {}
        r = self.request("GET", f"/v2/{repo}/blobs/{desc.digest}", self.pull_scope(repo), headers=headers,
                         stream=True)
        with closing(r):
            resumed = r.status_code == 206 and r.headers.get("content-range", "").startswith(f"bytes {sent}-")
            if r.status_code == 206 and not resumed:
                raise RegistryError(f"cannot get {what}: asked for it from byte {sent} on, the registry sent "
                                    f"the range {r.headers.get('content-range', '(none)')!r}")
            if r.status_code != 200 and not resumed:
                raise self.fail(r, f"cannot get {what}")
            skip = 0 if resumed else sent
            try:
                # As they come, not gathered into CHUNKs: the bytes of a chunk that breaks off
                # would be lost, and the download resumed from before them.
                for chunk in r.iter_raw():
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    if sent + len(chunk) > desc.size:
                        raise RegistryError(f"{what} is larger than the {desc.size} bytes its manifest says")
                    write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)
            except httpx.TransportError as e:
                # A break after every byte the manifest promises loses nothing: the receiver's
                # digest judges the bytes, whatever became of the connection.
                if sent < desc.size:
                    raise _Interrupted(sent) from e
        if sent != desc.size:
            raise RegistryError(f"{what} is {sent} bytes, its manifest says {desc.size}")

    def has_blob(self, repo: str, digest: str, size: int, scope: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope)
        r.close()
        if r.status_code == 200:
            # A manifest pushed on the word of a registry that has other bytes would name a
            # blob nobody can pull.
            said = f"the registry {self.host} says it has the blob {digest} in {self.domain}/{repo}"
            length = r.headers.get("content-length")
            if length is not None and length != str(size):
                raise RegistryError(f"{said}, but of {length} bytes, not {size}")
            got = r.headers.get("docker-content-digest")
            if got is not None and got != digest:
                raise RegistryError(f"{said}, but under the digest {got}")
            return True
        if r.status_code == 404:
            return False
        raise self.fail(r, f"cannot check for the blob {digest} in {self.domain}/{repo}")

    def start_upload(self, repo: str, scope: str, digest: str | None = None, mount_from: str | None = None
                     ) -> UploadSession | None:
        """Open an upload session, or None when the blob was mounted from another repository."""
        query = f"?mount={digest}&from={mount_from}" if mount_from and digest else ""
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/{query}", scope, headers={"Content-Length": "0"})
        r.close()
        if r.status_code == 201 and query:
            return None
        if r.status_code != 202 or "location" not in r.headers:
            raise self.fail(r, f"cannot start an upload to {self.domain}/{repo}")
        try:
            min_chunk = int(r.headers.get("oci-chunk-min-length", 0))
        except ValueError:
            min_chunk = 0
        return UploadSession(self._upload_location(r.headers["location"], self.base + "/", repo), min_chunk)

    def _upload_location(self, location: str, base: str, repo: str) -> str:
        url = _http_url(location, base)
        if url is None:
            raise RegistryError(f"the registry {self.host} gave an upload to {repo} the location {location!r}, "
                                "which is not an HTTP URL")
        return url

    def upload_blob(self, repo: str, scope: str, session: UploadSession, digest: str, path: Path, size: int
                    ) -> None:
        """Monolithic upload: one PUT of the whole blob to the session's URL."""
        what = f"uploading the blob {digest} to {self.domain}/{repo} failed"
        with _failing_as(what):
            r = self.request("PUT", _with_digest(session.location, digest), scope,
                             headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                             body=lambda: _file_chunks(path, 0, size))
        r.close()
        if r.status_code != 201:
            raise self.fail(r, what)

    def upload_blob_chunked(self, repo: str, scope: str, session: UploadSession, digest: str, path: Path,
                            size: int, chunk: int) -> None:
        """Chunked upload: PATCHes of consecutive ranges, each to the URL the last answer gave,
        then a PUT carrying the digest of the whole blob."""
        chunk = max(chunk, session.min_chunk)
        location = session.location
        offset = 0
        while offset < size:
            n = min(chunk, size - offset)
            what = f"uploading bytes {offset}-{offset + n - 1} of the blob {digest} to {self.domain}/{repo} failed"
            with _failing_as(what):
                r = self.request("PATCH", location, scope,
                                 headers={"Content-Type": "application/octet-stream", "Content-Length": str(n),
                                          "Content-Range": f"{offset}-{offset + n - 1}"},
                                 body=lambda start=offset, length=n: _file_chunks(path, start, length))
            r.close()
            if r.status_code != 202 or "location" not in r.headers:
                raise self.fail(r, what)
            location = self._upload_location(r.headers["location"], location, repo)
            offset += n
        r = self.request("PUT", _with_digest(location, digest), scope, headers={"Content-Length": "0"})
        r.close()
        if r.status_code != 201:
            raise self.fail(r, f"completing the upload of the blob {digest} to {self.domain}/{repo} failed")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str, scope: str) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope,
                         headers={"Content-Type": media_type}, body=lambda: data)
        r.close()
        if r.status_code not in (200, 201):
            raise self.fail(r, f"the registry refused the manifest of {self.domain}/{repo}:{reference}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        got = r.headers.get("docker-content-digest")
        if got and got != digest:
            raise DigestMismatch(f"the manifest pushed to {self.domain}/{repo}", digest, got)
        return digest


@contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """A request whose connection failed, as a failure of what it was for."""
    try:
        yield
    except RegistryUnreachable as e:
        raise RegistryUnreachable(f"{what}: {e}") from e.__cause__


class _Interrupted(Exception):
    """A blob download broken off after `sent` bytes went on."""

    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


def _read_limited(r: httpx.Response, limit: int, what: str) -> bytes:
    out = bytearray()
    for chunk in r.iter_raw(CHUNK):
        out += chunk
        if len(out) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes: refusing it")
    return bytes(out)


def _http_url(text: str, base: str = "") -> str | None:
    """`text` (relative to `base`) as an absolute http(s) URL, or None when it is not one: a
    registry's redirects and token realms are not to be trusted to parse."""
    try:
        url = urljoin(base, text)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _with_digest(location: str, digest: str) -> str:
    # The session URL may carry query parameters the registry needs: append, never replace.
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _file_chunks(path: Path, offset: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                raise RegistryError(f"{path} shrank while it was being uploaded")
            length -= len(data)
            yield data
