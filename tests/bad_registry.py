"""A registry written here, on http.server, that serves exactly what a test tells it to: a small
image made in Python, and whatever broken answers a test puts in its place (an oversized
manifest, a blob of the wrong length, a wrong Docker-Content-Digest, a redirect loop, a failing
token service...). Optionally over TLS with a self-signed certificate.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import ssl
import tarfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


Route = Reply | Callable[[BaseHTTPRequestHandler], Reply]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer holding these regular files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@dataclass(frozen=True)
class Image:
    """One image's blobs and manifest, as a registry serves them."""

    layer: bytes  # gzipped
    config: bytes
    manifest: bytes

    @property
    def id(self) -> str:
        return digest_of(self.config)


def make_image(marker: str, diff_id: str | None = None, architecture: str = "amd64") -> Image:
    """A one-layer image holding /marker; `diff_id` puts a wrong DiffID in its config."""
    tar = layer_tar({"marker": marker.encode()})
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps({"architecture": architecture, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id or digest_of(tar)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER_GZIP, layer)]}).encode()
    return Image(layer, config, manifest)


@dataclass
class BadRegistry:
    host: str  # ADDRESS:PORT, what image names start with
    routes: dict[str, Route] = field(default_factory=dict)  # request path (without the query) → answer
    hits: Counter[str] = field(default_factory=Counter)  # request path → how many times it was asked
    # request path → how many bytes of a request body are read before the connection is cut
    cut_after: dict[str, int] = field(default_factory=dict)

    def manifest(self, repo: str, reference: str, data: bytes, media_type: str = OCI_MANIFEST,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.routes[f"/v2/{repo}/manifests/{reference}"] = Reply(
            200, (("Content-Type", media_type), ("Docker-Content-Digest", digest_of(data)), *headers), data)

    def blob(self, repo: str, data: bytes, digest: str | None = None) -> None:
        self.routes[f"/v2/{repo}/blobs/{digest or digest_of(data)}"] = Reply(
            200, (("Content-Type", "application/octet-stream"),), data)

    def image(self, repo: str, tag: str, image: Image) -> None:
        self.manifest(repo, tag, image.manifest)
        self.manifest(repo, digest_of(image.manifest), image.manifest)
        self.blob(repo, image.config)
        self.blob(repo, image.layer)

    def accept_uploads(self, repo: str) -> str:
        """Take every blob pushed to `repo` (and forget it); the path of the upload session."""
        session = f"/v2/{repo}/blobs/uploads/1"
        self.routes[f"/v2/{repo}/blobs/uploads/"] = Reply(202, (("Location", session),))
        self.routes[session] = Reply(201)
        return session


def _handler(reg: BadRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in reg.cut_after:
                reg.hits[path] += 1
                self.rfile.read(reg.cut_after[path])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(head=False)

        do_PUT = do_PATCH = do_POST

        def _answer(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            reg.hits[path] += 1
            route = reg.routes.get(path)
            if route is None:
                route = Reply(200) if path == "/v2/" else Reply(
                    404, (("Content-Type", "application/json"),),
                    b'{"errors":[{"code":"NOT_FOUND","message":"not here"}]}')
            reply = route(self) if callable(route) else route
            self.send_response(reply.status)
            for k, v in reply.headers:
                self.send_header(k, v)
            if not any(k.lower() == "content-length" for k, _ in reply.headers):
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if not head:
                self.wfile.write(reply.body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def bad_registry(address: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> Iterator[BadRegistry]:
    """The registry on ADDRESS, on a free port, until the block ends; `tls`: (key, certificate)."""
    reg = BadRegistry("")
    server = ThreadingHTTPServer((address, 0), _handler(reg))
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[1]), str(tls[0]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    reg.host = f"{address}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield reg
    finally:
        server.shutdown()
        server.server_close()
