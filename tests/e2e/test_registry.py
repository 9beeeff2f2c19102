"""`rl push`, `rl pull`, `rl login` against a real docker-registry on 127.0.0.1."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import stat
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from rootless.image.oci import host_platform
from rootless.store.store import Store
from tests.conftest import OtherStores, Rl, tree_snapshot, wait_for
from tests.registry_fixture import (  # noqa: F401 - the fixtures
    PASSWORD,
    USER,
    LocalRegistry,
    TokenService,
    htpasswd_registry,
    outside_address,
    redirecting_front,
    refused_port,
    registry,
    start_registry,
    throttled,
    tls_registry,
    token_registry,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def rl2(tmp_path: Path, other_store: OtherStores) -> Rl:
    """A second, empty store: where images are pulled."""
    return other_store(tmp_path / "store2", XDG_CONFIG_HOME=str(tmp_path / "config"))


def _record(root: Path, name: str):  # type: ignore[no-untyped-def]
    with Store(root) as s:
        return s.resolve(name)


def _trees(root: Path, name: str) -> list[dict[str, tuple]]:  # type: ignore[type-arg]
    with Store(root) as s:
        return [tree_snapshot(p) for p in s.layer_paths(s.resolve(name))]


def _requests(registry: LocalRegistry, method: str, needle: str) -> int:  # noqa: F811
    return sum(1 for line in registry.log.read_text(errors="replace").splitlines()
               if "response completed" in line and f"http.request.method={method} " in line and needle in line)


def _one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def _pushed_digest(err: str) -> str:
    (line,) = [x for x in err.splitlines() if ": digest: " in x]
    return line.split(": digest: ")[1].split()[0]


def test_push_then_pull_round_trip(rl: Rl, rl2: Rl, busybox: str, registry: LocalRegistry) -> None:  # noqa: F811
    name = f"{registry.host}/roundtrip/busybox:1"
    pushed = rl("push", "busybox", name)
    assert "Pushed" in pushed.err
    src = _record(rl.root, "busybox")
    # Layers stored uncompressed go gzipped, as Docker and podman push them: a new manifest.
    digest = _pushed_digest(pushed.err)
    assert digest != src.manifest_digest
    assert rl("push", "-q", "busybox", name).err == ""
    assert _pushed_digest(rl("push", "busybox", name).err) == digest  # the same bytes each time

    pulled = rl2("pull", name)
    assert pulled.out.strip() == busybox
    assert "Pulling from" in pulled.err and "Download complete" in pulled.err
    dst = _record(rl2.root, name)
    assert dst.id == src.id
    assert dst.manifest_digest == digest
    assert _trees(rl2.root, name) == _trees(rl.root, "busybox")
    assert rl2("run", "--rm", name, "ls", "/bin").out == rl("run", "--rm", "busybox", "ls", "/bin").out
    assert rl2("images", "--digests").out.count(digest) == 1
    # --compression none pushes the image as stored: its manifest digest is the stored one.
    plain = rl("push", "--compression", "none", "busybox", f"{registry.host}/roundtrip/busybox:plain")
    assert _pushed_digest(plain.err) == src.manifest_digest
    again = rl2("pull", f"{registry.host}/roundtrip/busybox:plain")
    assert again.out.strip() == busybox
    assert _record(rl2.root, f"{registry.host}/roundtrip/busybox:plain").layer_blobs == src.layer_blobs


def test_pull_quiet_prints_only_the_id(rl: Rl, rl2: Rl, busybox: str, registry: LocalRegistry) -> None:  # noqa: F811
    name = f"{registry.host}/quiet/busybox:1"
    rl("push", "-q", "busybox", name)
    r = rl2("pull", "-q", name)
    assert r.out == f"{busybox}\n" and r.err == ""


def test_pull_on_a_terminal_shows_progress_bars(rl: Rl, rl2: Rl, busybox: str,
                                               registry: LocalRegistry) -> None:  # noqa: F811
    name = f"{registry.host}/terminal/busybox:1"
    rl("push", "--compression", "none", "-q", "busybox", name)
    master, slave = pty.openpty()
    p = rl2.popen("pull", name, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        shown += chunk
    out, _ = p.communicate(timeout=60)
    os.close(master)
    assert p.returncode == 0 and out.decode().strip() == busybox
    text = shown.decode(errors="replace")
    layer = _record(rl.root, "busybox").layer_blobs[0].removeprefix("sha256:")[:12]
    assert "Pulling from terminal/busybox" in text and layer in text and "MB" in text


def test_layers_in_the_store_are_not_fetched_again(rl: Rl, rl2: Rl, busybox: str,
                                                   registry: LocalRegistry) -> None:  # noqa: F811
    rl("push", "--compression", "none", "busybox", f"{registry.host}/again/busybox:1")
    rl("push", "--compression", "none", "busybox", f"{registry.host}/again2/busybox:2")
    layer = _record(rl.root, "busybox").layer_blobs[0]
    before = _requests(registry, "GET", f"/blobs/{layer}")  # the registry is shared by the module's tests
    rl2("pull", f"{registry.host}/again/busybox:1")
    assert _requests(registry, "GET", f"/v2/again/busybox/blobs/{layer}") == 1
    second = rl2("pull", f"{registry.host}/again/busybox:1")
    assert "Already exists" in second.err and "Download complete" not in second.err
    # The same layer under another repository is not downloaded either.
    third = rl2("pull", f"{registry.host}/again2/busybox:2")
    assert "Already exists" in third.err
    assert _requests(registry, "GET", f"/blobs/{layer}") == before + 1
    assert third.out.strip() == busybox


def test_push_skips_blobs_the_registry_has_and_mounts_across_repositories(
        rl: Rl, rl2: Rl, busybox: str, registry: LocalRegistry) -> None:  # noqa: F811
    name = f"{registry.host}/skip/busybox:1"
    rl("push", "--compression", "none", "busybox", name)
    layer = _record(rl.root, "busybox").layer_blobs[0]
    puts = _requests(registry, "PUT", "/v2/skip/busybox/blobs/uploads/")
    again = rl("push", "--compression", "none", "busybox", name)
    assert again.err.count("Layer already exists") == 2
    assert _requests(registry, "PUT", "/v2/skip/busybox/blobs/uploads/") == puts
    # A pulled image is named after its repository: pushing it to another one mounts its blobs.
    rl2("pull", name)
    mounted = rl2("push", "--compression", "none", name, f"{registry.host}/skip-other/busybox:2")
    assert "Mounted from skip/busybox" in mounted.err
    assert _requests(registry, "POST", f"mount={layer}") == 1
    assert _requests(registry, "PUT", "/v2/skip-other/busybox/blobs/uploads/") == 0
    assert rl2("pull", "-q", f"{registry.host}/skip-other/busybox:2").out.strip() == busybox


def test_push_sends_blobs_at_once_and_the_manifest_last(rl: Rl, busybox: str,
                                                        registry: LocalRegistry) -> None:  # noqa: F811
    ctx = Path(rl.root).parent / "ctx-big"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 1500000 /dev/urandom > /big\n")
    rl("build", "-q", "-t", "big:1", str(ctx))
    # Two layers of 2 MB and 1.5 MB through a 1 MB/s link: one after the other, they would go
    # on one connection; at once, on two, at the same time.
    with throttled(registry.host, 1_000_000) as slow:
        rl("push", "-q", "--compression", "none", "big:1", f"{slow.host}/at-once/big:1")
    big = [u for u in slow.uploads if u.size > 1_000_000]
    assert len(big) == 2, slow.uploads
    assert big[0].start < big[1].end and big[1].start < big[0].end
    done = [line for line in registry.log.read_text(errors="replace").splitlines()
            if "response completed" in line and "/v2/at-once/big/" in line and "method=PUT" in line]
    assert "/manifests/1" in done[-1] and all("/blobs/uploads/" in line for line in done[:-1])


def test_pull_by_digest_and_through_an_index(rl: Rl, rl2: Rl, busybox: str,
                                             registry: LocalRegistry) -> None:  # noqa: F811
    rl("push", "--compression", "none", "busybox", f"{registry.host}/index/busybox:1")
    src = _record(rl.root, "busybox")
    by_digest = rl2("pull", f"{registry.host}/index/busybox@{src.manifest_digest}")
    assert by_digest.out.strip() == busybox
    assert rl2("images", "-q").out.strip() == busybox[7:19]  # not tagged: a digest names no tag
    rl2("pull", "-q", f"{registry.host}/index/busybox:1@{src.manifest_digest}")
    assert _record(rl2.root, f"{registry.host}/index/busybox:1").id == busybox
    # An index of two images, the foreign one first, under arm64/v8 and plain arm64 entries: the
    # host's is picked, or the one --platform names; the plain entry serves a platform without a variant.
    other_root = Path(rl.root).parent / "other-root"
    other_root.mkdir()
    (other_root / "marker").write_text("foreign\n")
    foreign = rl("import", str(other_root), "foreign:1").out.strip()
    assert foreign != busybox
    rl("push", "-q", "--compression", "none", "foreign:1", f"{registry.host}/index/busybox:foreign")
    os_name, arch = host_platform()
    other = "arm64" if arch != "arm64" else "amd64"

    def entry(tag: str, platform: dict[str, str]) -> dict[str, object]:
        get = urllib.request.Request(registry.url(f"/v2/index/busybox/manifests/{tag}"),
                                     headers={"Accept": OCI_MANIFEST})
        with urllib.request.urlopen(get) as r:
            data = r.read()
        return {"mediaType": OCI_MANIFEST, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
                "size": len(data), "platform": {"os": os_name, **platform}}

    entries = [entry("foreign", {"architecture": other, "variant": "v8"}),
               entry("1", {"architecture": arch}),
               entry("1", {"architecture": other})]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    req = urllib.request.Request(registry.url("/v2/index/busybox/manifests/multi"), data=index, method="PUT",
                                 headers={"Content-Type": OCI_INDEX})
    urllib.request.urlopen(req).close()
    multi = f"{registry.host}/index/busybox:multi"
    pulled = rl2("pull", multi)
    assert pulled.out.strip() == busybox
    assert f"Digest: sha256:{hashlib.sha256(index).hexdigest()}" in pulled.err
    assert rl2("pull", "-q", "--platform", f"linux/{other}/v8", multi).out.strip() == foreign
    assert rl2("pull", "-q", "--platform", f"linux/{other}", multi).out.strip() == busybox
    assert rl2("pull", "-q", "--platform", f"linux/{arch}", multi).out.strip() == busybox
    for platform, said in (("linux/mips64le", "no image for linux/mips64le"),
                           (f"linux/{other}/v7", f"no image for linux/{other}/v7"),
                           ("linux", "invalid platform"), ("linux//v8", "invalid platform"),
                           ("linux/arm64/v8/x", "invalid platform")):
        r = rl2("pull", "--platform", platform, multi, check=False)
        assert r.code == 125, (platform, r)
        assert said in _one_line_error(r.err)


def test_chunked_upload(tmp_path: Path, registry: LocalRegistry) -> None:  # noqa: F811
    from rootless.registry.client import Registry

    data = os.urandom(250_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "blob").write_bytes(data)
    with Registry(registry.host) as reg:
        scope = reg.push_scope("chunked/blob")
        session = reg.start_upload("chunked/blob", scope)
        assert session is not None
        reg.upload_blob_chunked("chunked/blob", scope, session, digest, tmp_path / "blob", len(data), 100_000)
        assert reg.has_blob("chunked/blob", digest, len(data), scope)
    assert _requests(registry, "PATCH", "/v2/chunked/blob/blobs/uploads/") == 3
    with urllib.request.urlopen(registry.url(f"/v2/chunked/blob/blobs/{digest}")) as r:
        assert r.read() == data


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_push_with_compression(rl: Rl, rl2: Rl, busybox: str, registry: LocalRegistry,  # noqa: F811
                               compression: str) -> None:
    name = f"{registry.host}/compressed-{compression}/busybox:1"
    rl("push", "--compression", compression, "busybox", name)
    src = _record(rl.root, "busybox")
    get = urllib.request.Request(registry.url(f"/v2/compressed-{compression}/busybox/manifests/1"),
                                 headers={"Accept": f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(get) as r:
        manifest = json.loads(r.read())
    layer = manifest["layers"][0]
    assert layer["mediaType"].endswith(f"+{compression}") or (
        compression == "gzip" and layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    assert layer["digest"] != src.layer_blobs[0]
    with Store(rl.root) as s:
        assert layer["size"] < s.blobs.size(src.layer_blobs[0])
    pulled = rl2("pull", "-q", name)
    assert pulled.out.strip() == busybox  # the same config: the same image
    assert _trees(rl2.root, name) == _trees(rl.root, "busybox")


def test_unknown_names_fail_in_one_line(rl2: Rl, registry: LocalRegistry) -> None:  # noqa: F811
    r = rl2("pull", f"{registry.host}/nothing/here:1", check=False)
    assert r.code == 125
    assert "manifest unknown" in _one_line_error(r.err)
    r = rl2("pull", f"{registry.host}/Bad/Name", check=False)
    assert r.code == 125
    _one_line_error(r.err)
    r = rl2("push", "not-in-the-store", f"{registry.host}/x/y:1", check=False)
    assert r.code == 125
    assert "not-in-the-store" in _one_line_error(r.err)
    assert rl2("images", "-q").out == ""


def test_a_registry_that_is_down_fails_in_one_line(rl: Rl, rl2: Rl, busybox: str) -> None:
    with refused_port() as port:
        start = time.monotonic()
        r = rl2("pull", f"127.0.0.1:{port}/down/busybox:1", check=False)
        assert r.code == 125
        assert f"cannot reach the registry 127.0.0.1:{port}" in _one_line_error(r.err)
        assert time.monotonic() - start < 20
        r = rl("push", "busybox", f"127.0.0.1:{port}/down/busybox:1", check=False)
        assert r.code == 125
        assert "cannot reach the registry" in _one_line_error(r.err)


def test_a_corrupt_blob_is_refused_and_the_next_pull_resumes(rl: Rl, rl2: Rl, busybox: str,
                                                         registry: LocalRegistry) -> None:  # noqa: F811
    # A layer of its own, so corrupting it in the registry's storage harms no other test.
    (Path(rl.root).parent / "ctx").mkdir()
    (Path(rl.root).parent / "ctx" / "Dockerfile").write_text("FROM busybox\nRUN echo corrupt-me > /marker\n")
    rl("build", "-q", "-t", "corrupt:1", str(Path(rl.root).parent / "ctx"))
    name = f"{registry.host}/corrupt/busybox:1"
    rl("push", "--compression", "none", "corrupt:1", name)
    layer = _record(rl.root, "corrupt:1").layer_blobs[-1]
    hexd = layer.removeprefix("sha256:")
    data = registry.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size: only the digest can tell
    os.chmod(data, 0o644)
    good = data.read_bytes()
    data.write_bytes(bytes(raw))
    r = rl2("pull", name, check=False)
    assert r.code == 125
    assert "digest mismatch" in _one_line_error(r.err)
    assert rl2("images", "-q", "-a").out == ""
    base = _record(rl.root, "corrupt:1").layer_blobs[0]
    with Store(rl2.root) as s:
        assert not s.blobs.has(layer)
        assert s.blobs.has(base)  # verified before the failure: kept for the next pull
    # Once the registry serves the right bytes, the next pull fetches only what it lacked.
    data.write_bytes(good)
    again = rl2("pull", name)
    assert f"{base.removeprefix('sha256:')[:12]}: Already exists" in again.err
    assert _record(rl2.root, name).id == _record(rl.root, "corrupt:1").id


def test_login_and_logout_keep_credentials_private(rl2: Rl, tmp_path: Path,
                                                   registry: LocalRegistry) -> None:  # noqa: F811
    r = rl2("login", "-u", "someone", "--password-stdin", registry.host, input=b"secret\n")
    assert "Login Succeeded" in r.out
    path = tmp_path / "config" / "rl" / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert base64.b64decode(doc["auths"][registry.host]["auth"]) == b"someone:secret"
    assert "Removed login credentials" in rl2("logout", registry.host).out
    assert registry.host not in json.loads(path.read_text())["auths"]
    r = rl2("logout", registry.host, check=False)
    assert r.code == 125 and "not logged in" in _one_line_error(r.err)


# ---- registries that want credentials ------------------------------------------------------------

def _login(rl: Rl, host: str, password: str = PASSWORD, check: bool = True):  # type: ignore[no-untyped-def]
    return rl("login", "-u", USER, "--password-stdin", host, input=f"{password}\n".encode(), check=check)


def test_basic_auth(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                    htpasswd_registry: LocalRegistry) -> None:  # noqa: F811
    host = htpasswd_registry.host
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    r = rl("push", "busybox", f"{host}/basic/busybox:1", check=False, env=env)
    assert r.code == 125 and f"rl login {host}" in _one_line_error(r.err)
    r = _login(rl2, host, "wrong", check=False)
    assert r.code == 125 and "logging in" in _one_line_error(r.err)
    assert not (tmp_path / "config" / "rl" / "auth.json").exists()
    _login(rl2, host)
    rl("push", "busybox", f"{host}/basic/busybox:1", env=env)  # rl2's login is in the same config dir
    assert rl2("pull", "-q", f"{host}/basic/busybox:1").out.strip() == busybox


def test_credentials_from_registry_auth_file_and_docker_config(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                                                               htpasswd_registry: LocalRegistry) -> None:  # noqa: F811
    host = htpasswd_registry.host
    auth = {"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    (tmp_path / "auth.json").write_text(json.dumps(auth))
    rl("push", "-q", "busybox", f"{host}/authfile/busybox:1", env={"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")})
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps(auth))
    r = rl2("pull", "-q", f"{host}/authfile/busybox:1", env={"DOCKER_CONFIG": str(tmp_path / "docker")})
    assert r.out.strip() == busybox


def test_bearer_token_auth(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                           token_registry: tuple[LocalRegistry, TokenService]) -> None:  # noqa: F811
    reg, tokens = token_registry
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    # Anonymous callers get a token that grants nothing: the registry refuses.
    r = rl("push", "busybox", f"{reg.host}/token/busybox:1", check=False, env=env)
    assert r.code == 125 and "rl login" in _one_line_error(r.err)
    r = _login(rl2, reg.host, "wrong", check=False)
    assert r.code == 125 and "refused the credentials" in _one_line_error(r.err)
    _login(rl2, reg.host)
    before = len(tokens.requests)
    pushed = rl("push", "busybox", f"{reg.host}/token/busybox:1", env=env)
    assert pushed.err.count("Pushed") == 2
    # One token for the push's scope, fetched once and reused for every request.
    asked = tokens.requests[before:]
    assert len(asked) == 1, asked
    assert asked[0]["scope"] == ["repository:token/busybox:pull,push"]
    assert asked[0]["service"] == ["rl-test-registry"]
    assert rl2("pull", "-q", f"{reg.host}/token/busybox:1").out.strip() == busybox
    assert rl2("run", "--rm", f"{reg.host}/token/busybox:1", "echo", "ok").out == "ok\n"


def test_a_token_that_expires_during_a_long_push_is_renewed(
        rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
        token_registry: tuple[LocalRegistry, TokenService]) -> None:  # noqa: F811
    reg, tokens = token_registry
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    _login(rl2, reg.host)
    # Tokens the registry takes for 2 s, though the token service says 300 s: only the registry's
    # 401 tells the client it must fetch another.
    tokens.lifetime = 2
    try:
        # The 2 MB layer through a 400 kB/s link: ~5 s of upload.
        with throttled(reg.host, 400_000) as slow:
            _login(rl2, slow.host)
            before = len(tokens.requests)
            start = time.monotonic()
            pushed = rl("push", "--compression", "none", "busybox", f"{slow.host}/expiring/busybox:1", env=env)
            assert time.monotonic() - start > 2 * tokens.lifetime
            assert pushed.err.count("Pushed") == 2
            assert len(tokens.requests) - before >= 2  # the first token, and at least one more
    finally:
        tokens.lifetime = 300
    assert rl2("pull", "-q", f"{reg.host}/expiring/busybox:1").out.strip() == busybox


def test_a_chunked_upload_outlives_its_token(rl2: Rl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             token_registry: tuple[LocalRegistry, TokenService]) -> None:  # noqa: F811
    from rootless.registry.client import Registry

    reg, tokens = token_registry
    data = os.urandom(1_500_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (tmp_path / "blob").write_bytes(data)
    tokens.lifetime = 2
    try:
        with throttled(reg.host, 400_000) as slow:
            _login(rl2, slow.host)
            monkeypatch.setenv("XDG_CONFIG_HOME", rl2.env["XDG_CONFIG_HOME"])
            with Registry(slow.host) as client:
                scope = client.push_scope("expiring/chunked")
                session = client.start_upload("expiring/chunked", scope)
                assert session is not None
                before = len(tokens.requests)
                # 15 PATCHes of 100 kB, ~4 s in all: the token runs out in the middle of the session.
                client.upload_blob_chunked("expiring/chunked", scope, session, digest, tmp_path / "blob",
                                           len(data), 100_000)
                assert len(tokens.requests) > before
                assert client.has_blob("expiring/chunked", digest, len(data), scope)
    finally:
        tokens.lifetime = 300


def test_authorization_is_not_sent_to_another_host_after_a_redirect(
        rl: Rl, rl2: Rl, busybox: str, tmp_path: Path, htpasswd_registry: LocalRegistry) -> None:  # noqa: F811
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    _login(rl2, htpasswd_registry.host)
    rl("push", "-q", "busybox", f"{htpasswd_registry.host}/redirect/busybox:1", env=env)
    with redirecting_front(htpasswd_registry) as front:
        _login(rl2, front.host)
        pulled = rl2("pull", "-q", f"{front.host}/redirect/busybox:1")
        assert pulled.out.strip() == busybox
        assert len(front.cdn_requests) >= 2  # the config and the layer
        assert front.cdn_requests == [None] * len(front.cdn_requests)


def test_429_and_5xx_are_retried(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                                 htpasswd_registry: LocalRegistry) -> None:  # noqa: F811
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    _login(rl2, htpasswd_registry.host)
    rl("push", "-q", "busybox", f"{htpasswd_registry.host}/flaky/busybox:1", env=env)
    with redirecting_front(htpasswd_registry, fail_first=3) as front:
        _login(rl2, front.host)
        assert rl2("pull", "-q", f"{front.host}/flaky/busybox:1").out.strip() == busybox
        assert front.failures_left == 0


def test_a_download_broken_off_resumes_where_it_stopped(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                                                        htpasswd_registry: LocalRegistry) -> None:  # noqa: F811
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    _login(rl2, htpasswd_registry.host)
    rl("push", "--compression", "none", "-q", "busybox", f"{htpasswd_registry.host}/cut/busybox:1", env=env)
    with redirecting_front(htpasswd_registry, cut_first=1) as front:
        _login(rl2, front.host)
        assert rl2("pull", "-q", f"{front.host}/cut/busybox:1").out.strip() == busybox
        assert front.cuts_left == 0
        # Only the rest of the layer was fetched again.
        assert len(front.ranges) == 1 and front.ranges[0].startswith("bytes=") and front.ranges[0] != "bytes=0-"
    assert rl2("run", "--rm", f"{front.host}/cut/busybox:1", "true").code == 0


def test_a_local_registry_that_speaks_tls(rl: Rl, rl2: Rl, busybox: str,
                                          tls_registry: LocalRegistry) -> None:  # noqa: F811
    name = f"{tls_registry.host}/tls/busybox:1"
    rl("push", "-q", "busybox", name)
    assert rl2("pull", "-q", name).out.strip() == busybox


def test_insecure_registries_are_read_from_registries_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rootless.registry.conf import is_insecure

    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "registry.example:5000"\ninsecure = true\n'
                    '[[registry]]\nlocation = "secure.example"\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    assert is_insecure("registry.example:5000")
    assert not is_insecure("secure.example")
    conf.write_text('[registries.insecure]\nregistries = ["old.example"]\n')
    assert is_insecure("old.example") and not is_insecure("registry.example:5000")


def _registries_conf(rl: Rl, text: str) -> None:
    path = Path(rl.env["XDG_CONFIG_HOME"]) / "containers" / "registries.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_short_names_are_searched_in_the_registries_of_registries_conf(
        rl: Rl, rl2: Rl, busybox: str, tmp_path: Path, registry: LocalRegistry) -> None:  # noqa: F811
    with contextmanager(start_registry)(tmp_path / "second") as second:
        rl("push", "-q", "busybox", f"{second.host}/search/busybox:1")
        # The first is unreachable, the second lacks the image, the third has it.
        _registries_conf(rl2, f'unqualified-search-registries = ["127.0.0.1:9", "{registry.host}", '
                              f'"{second.host}"]\n')
        pulled = rl2("pull", "search/busybox:1")
        assert pulled.out.strip() == busybox
        assert [x for x in pulled.err.splitlines() if x.startswith("Trying to pull")] == [
            f"Trying to pull {h}/search/busybox:1..." for h in ("127.0.0.1:9", registry.host, second.host)]
        assert _record(rl2.root, f"{second.host}/search/busybox:1").id == busybox
        # The short name finds what it pulled, without asking the registries again.
        ran = rl2("run", "--rm", "search/busybox:1", "echo", "found")
        assert ran.out == "found\n" and "Unable to find" not in ran.err
        r = rl2("pull", "search/nothing:1", check=False)
        assert r.code == 125
        err = _one_line_error(r.err)
        assert "none of the search registries" in err and "manifest unknown" in err and "127.0.0.1:9" in err


def test_an_insecure_registry_is_spoken_to_over_plain_http(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path) -> None:
    with contextmanager(start_registry)(tmp_path / "outside", address=outside_address()) as outside:
        name = f"{outside.host}/insecure/busybox:1"
        rl("push", "-q", "--tls-verify=false", "busybox", name)
        r = rl2("pull", name, check=False)  # TLS, as for any registry not on loopback
        assert r.code == 125 and "cannot reach the registry" in _one_line_error(r.err)
        _registries_conf(rl2, f'[[registry]]\nlocation = "{outside.host}"\ninsecure = true\n')
        assert rl2("pull", "-q", name).out.strip() == busybox


def test_concurrent_pulls_of_images_sharing_layers_into_one_store(rl: Rl, rl2: Rl, busybox: str,
                                                                  registry: LocalRegistry) -> None:  # noqa: F811
    ctx = Path(rl.root).parent / "ctx-shared"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo shared > /marker\n")
    derived = rl("build", "-q", "-t", "derived:1", str(ctx)).out.strip().splitlines()[-1]
    rl("push", "-q", "busybox", f"{registry.host}/shared/base:1")
    rl("push", "-q", "derived:1", f"{registry.host}/shared/derived:1")
    names = [f"{registry.host}/shared/base:1", f"{registry.host}/shared/derived:1"] * 2
    procs = [rl2.popen("pull", "-q", n, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e.decode() for _, e in outs]
    assert {o.decode().strip() for o, _ in outs} == {busybox, derived}
    assert rl2("run", "--rm", f"{registry.host}/shared/derived:1", "cat", "/marker").out == "shared\n"


def test_a_killed_pull_leaves_no_image_and_the_next_one_resumes(rl: Rl, rl2: Rl, busybox: str,
                                                                registry: LocalRegistry) -> None:  # noqa: F811
    ctx = Path(rl.root).parent / "ctx-killed"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo killed > /marker\n")
    rl("build", "-q", "-t", "killed:1", str(ctx))
    rl("push", "--compression", "none", "-q", "killed:1", f"{registry.host}/killed/busybox:1")
    base, top = _record(rl.root, "killed:1").layer_blobs
    with redirecting_front(registry, stall=top) as front:
        p = rl2.popen("pull", "-q", f"{front.host}/killed/busybox:1", stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        base_blob = rl2.root / "blobs" / "sha256" / base.removeprefix("sha256:")
        wait_for(lambda: base_blob.exists() or p.poll() is not None, 60, "the pull to store the base layer's blob")
        assert base_blob.exists() and p.poll() is None
        p.kill()
        p.wait()
    assert rl2("images", "-q", "-a").out == ""
    again = rl2("pull", f"{registry.host}/killed/busybox:1")
    assert f"{base.removeprefix('sha256:')[:12]}: Already exists" in again.err
    assert rl2("run", "--rm", f"{registry.host}/killed/busybox:1", "cat", "/marker").out == "killed\n"


def test_rl_sees_none_of_the_hosts_registry_settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     request: pytest.FixtureRequest) -> None:
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "CONTAINERS_REGISTRIES_CONF"):
        monkeypatch.setenv(var, str(tmp_path / "host" / var))
    rl = request.getfixturevalue("rl")
    assert not {"REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "CONTAINERS_REGISTRIES_CONF"} & set(rl.env)
    private = tmp_path_factory.getbasetemp()
    assert Path(rl.env["HOME"]).is_relative_to(private) and Path(rl.env["HOME"]) != Path.home()
    assert Path(rl.env["XDG_CONFIG_HOME"]).is_relative_to(private)
