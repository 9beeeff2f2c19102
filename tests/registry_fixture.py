"""Real registries for the tests: Debian's docker-registry on 127.0.0.1 over plain HTTP, open,
with htpasswd Basic auth, or with Bearer tokens from a small token service run here.

Test modules import the fixtures they use from here. A test that needs one is skipped only when
a tool it needs (docker-registry; openssl for tokens) is missing; a registry that does not come
up fails it, and so does a missing bcrypt package (the htpasswd file's hash).
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import wait_for

DOCKER_REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT = 30.0
USER = "tester"
PASSWORD = "s3cret"
SERVICE = "rl-test-registry"
ISSUER = "rl-test-token-service"
TOKEN_LEEWAY = 60  # distribution's registry/auth/token: Leeway


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT, what image names start with
    storage: Path
    log: Path

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def request_count(self, needle: str) -> int:
        """How many requests the registry logged whose line contains needle (e.g. a blob digest)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "response completed" in line and needle in line)


def outside_address() -> str:
    """An address of this machine's that is not loopback (rl takes loopback registries to speak
    plain HTTP whatever it is told); skips the test when there is none. Nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # a documentation address: a UDP connect only picks a route
            address = str(s.getsockname()[0])
        except OSError:
            pytest.skip("no network interface but loopback")
    if address.startswith("127.") or address == "0.0.0.0":
        pytest.skip("no network interface but loopback")
    return address


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs: bound, never listening,
    so that no other process can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def _config(storage: Path, extra: str = "", address: str = "127.0.0.1") -> str:
    # Port 0: the registry binds a free port itself and logs it (no port chosen here that
    # another process could take before the registry binds it).
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}:0\n"
        f"{extra}"
    )


# distribution logs this once its socket listens, before it serves: connections queue from then.
_LISTENING = re.compile(r'msg="listening on ([^,"]+)')


def _listening_on(proc: subprocess.Popen[bytes], log: Path) -> str:
    def address() -> str | None:
        text = log.read_text(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited {proc.returncode}:\n{text}")
        found = _LISTENING.search(text)
        return found.group(1) if found else None

    return wait_for(address, START_TIMEOUT, "docker-registry to listen")


def start_registry(workdir: Path, extra_config: str = "", address: str = "127.0.0.1") -> Iterator[LocalRegistry]:
    """Run a registry until the generator is closed (for use with `yield from` in a fixture, or
    as a context manager through `contextmanager(start_registry)`)."""
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry is not installed")
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    config = workdir / "config.yml"
    config.write_text(_config(storage, extra_config, address))
    log = workdir / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield LocalRegistry(_listening_on(proc, log), storage, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """One registry per test module; tests use their own repository names in it."""
    yield from start_registry(tmp_path_factory.mktemp("registry"))


def bcrypt_hash(password: str) -> str:
    """A line's hash for an htpasswd file (bcrypt, the only kind docker-registry takes), made by
    the bcrypt package that scripts/install puts in the venv: its absence fails the test."""
    import bcrypt

    # The lowest cost: the registry checks the hash on every request.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that wants Basic auth: USER / PASSWORD."""
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry is not installed")
    work = tmp_path_factory.mktemp("htpasswd-registry")
    htpasswd = work.parent / f"{work.name}.htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    extra = f"auth:\n  htpasswd:\n    realm: rl-test\n    path: {htpasswd}\n"
    yield from start_registry(work, extra)



def self_signed(directory: Path, name: str, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A key and a certificate for the address `ip`, signed by itself: (key, certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=IP:{ip}"], capture_output=True, check=True)
    return key, cert


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that speaks only TLS, with a self-signed certificate."""
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry is not installed")
    key, cert = self_signed(tmp_path_factory.mktemp("tls-keys"), "rl-test-registry")
    yield from start_registry(tmp_path_factory.mktemp("tls-registry"),
                              f"  tls:\n    certificate: {cert}\n    key: {key}\n")

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Issues registry tokens (JWT, RS256, the certificate in x5c) as distribution's token auth
    expects: everything asked for to USER/PASSWORD, nothing to anonymous callers."""

    key: Path
    cert_der: bytes
    port: int = 0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    lifetime: int = 300  # how long the registry takes a token for; the replies always say 300 s

    def token(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        # The registry takes tokens for TOKEN_LEEWAY past their expiry (clock skew).
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + self.lifetime - TOKEN_LEEWAY,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(signature)}"


def _token_handler(service: TokenService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            service.requests.append(query)
            subject, scopes = "", []
            header = self.headers.get("Authorization", "")
            if header:
                if header != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
                subject, scopes = USER, query.get("scope", [])
            # access_token only: the client must accept either of the two names
            self._answer(200, {"access_token": service.token(subject, scopes), "expires_in": 300})

        def _answer(self, code: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, TokenService]]:
    """A registry that wants Bearer tokens from a token service on another port."""
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry is not installed")
    key, cert = self_signed(tmp_path_factory.mktemp("token-keys"), "rl-test-token-service")
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    service = TokenService(key, der)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(service))
    service.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    extra = (f"auth:\n  token:\n    realm: http://127.0.0.1:{service.port}/token\n    service: {SERVICE}\n"
             f"    issuer: {ISSUER}\n    rootcertbundle: {cert}\n")
    try:
        for reg in start_registry(tmp_path_factory.mktemp("token-registry"), extra):
            yield reg, service
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RedirectingFront:
    """A proxy in front of a registry that answers blob downloads with a 307 to a "CDN" on
    another port, as Docker Hub and GHCR do; the CDN records the Authorization headers it got."""

    host: str
    cdn_requests: list[str | None] = field(default_factory=list)  # the Authorization header of each
    failures_left: int = 0  # blob requests still to answer 429 (the first) or 503 (the others)
    cuts_left: int = 0  # big blob downloads still to break off halfway through
    ranges: list[str] = field(default_factory=list)  # the Range header of each resumed download


def _forward(upstream: str, handler: BaseHTTPRequestHandler, path: str, auth: str | None, head: bool,
             cut: bool = False) -> bool:
    """Relay a request; with `cut`, a body over 100 kB is broken off halfway (True when it was)."""
    import http.client

    conn = http.client.HTTPConnection(upstream, timeout=30)
    headers = {k: v for k, v in handler.headers.items() if k.lower() in ("accept", "authorization", "host", "range")}
    if auth is not None:
        headers["Authorization"] = auth
    conn.request("HEAD" if head else "GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    handler.send_response(resp.status)
    for k, v in resp.getheaders():
        if k.lower() not in ("connection", "transfer-encoding", "date", "server"):
            handler.send_header(k, v)
    handler.end_headers()
    conn.close()
    if head:
        return False
    if cut and len(body) > 100_000:
        handler.wfile.write(body[:len(body) // 2])
        handler.close_connection = True
        return True
    handler.wfile.write(body)
    return False


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@contextmanager
def redirecting_front(upstream: LocalRegistry, fail_first: int = 0, stall: str | None = None, cut_first: int = 0
                      ) -> Iterator[RedirectingFront]:
    """The front; with `stall`, a download of that blob hangs until the front stops; with
    `cut_first`, that many big blob downloads from the CDN break off halfway."""
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    front = RedirectingFront("", failures_left=fail_first, cuts_left=cut_first)
    lock = threading.Lock()
    stopping = threading.Event()

    class Cdn(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            front.cdn_requests.append(self.headers.get("Authorization"))
            if self.headers.get("Range"):
                front.ranges.append(self.headers["Range"])
            # The CDN has its own way to trust the request (a signed URL): here, the fixture's login.
            if _forward(upstream.host, self, self.path.removeprefix("/cdn"), basic, head=False,
                        cut=front.cuts_left > 0):
                with lock:
                    front.cuts_left -= 1

        def log_message(self, *args: object) -> None:
            pass

    cdn, cdn_port = _serve(Cdn)

    class Front(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if stall is not None and self.path.endswith(f"/blobs/{stall}"):
                stopping.wait()
                return
            if "/blobs/sha256:" in self.path:
                with lock:
                    fail = front.failures_left
                    front.failures_left = max(0, fail - 1)
                if fail:
                    first = fail == fail_first
                    self.send_response(429 if first else 503)
                    if first:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(307)
                self.send_header("Location", f"http://127.0.0.1:{cdn_port}/cdn{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            _forward(upstream.host, self, self.path, None, head=False)

        def do_HEAD(self) -> None:
            _forward(upstream.host, self, self.path, None, head=True)

        def log_message(self, *args: object) -> None:
            pass

    server, port = _serve(Front)
    front.host = f"127.0.0.1:{port}"
    try:
        yield front
    finally:
        stopping.set()
        for s in (server, cdn):
            s.shutdown()
            s.server_close()


@dataclass
class Upload:
    """What a client sent on one connection: when it began and ended, and how much."""

    start: float = 0.0
    end: float = 0.0
    size: int = 0


@dataclass
class Throttled:
    host: str  # host:port of the proxy
    uploads: list[Upload] = field(default_factory=list)  # one per connection


@contextmanager
def throttled(upstream: str, bytes_per_second: int) -> Iterator[Throttled]:
    """A TCP proxy to `upstream` (host:port) that passes what clients send at most this fast:
    an upload through it takes as long as a slow link makes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = Throttled(f"127.0.0.1:{listener.getsockname()[1]}")
    stopping = threading.Event()
    step = 16 << 10

    def pump(src: socket.socket, dst: socket.socket, upload: Upload | None) -> None:
        try:
            while data := src.recv(step):
                dst.sendall(data)
                if upload is not None:
                    upload.start = upload.start or time.monotonic()
                    upload.size += len(data)
                    time.sleep(len(data) / bytes_per_second)
                    upload.end = time.monotonic()
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            host, port = upstream.rsplit(":", 1)
            server = socket.create_connection((host, int(port)))
            proxy.uploads.append(Upload())
            threading.Thread(target=pump, args=(client, server, proxy.uploads[-1]), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, None), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        stopping.set()
        listener.close()
