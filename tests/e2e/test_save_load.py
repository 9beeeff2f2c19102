"""`rl save` and `rl load`: round trips, every archive format in, and bad archives refused cleanly."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.image.oci import host_platform
from rootless.store.records import ImageRecord
from rootless.store.store import Store
from tests.conftest import OtherStores, Result, Rl, tree_snapshot

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


# ---- helpers ------------------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def rl2(tmp_path: Path, other_store: OtherStores) -> Rl:
    """A second, empty store: where archives are loaded."""
    return other_store(tmp_path / "store2")


def _trees(root: Path, name: str) -> list[dict[str, tuple]]:  # type: ignore[type-arg]
    with Store(root) as s:
        return [tree_snapshot(p) for p in s.layer_paths(s.resolve(name))]


def _record(root: Path, name: str) -> ImageRecord:
    with Store(root) as s:
        return s.resolve(name)


def _tar(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """An archive with these files (in this order) and symlinks; owned by root, fixed times."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _layer_tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _config(diff_ids: list[str], **extra: object) -> bytes:
    return json.dumps({"architecture": _host_arch(), "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids}, **extra}).encode()


def _host_arch() -> str:
    return host_platform()[1]


def _desc(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _sha(data), "size": len(data), **extra}


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"blobs/sha256/{_sha(data)[7:]}", data


def _oci_image(layers: list[bytes], diff_ids: list[str] | None = None,
               layer_type: str = OCI_LAYER) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(manifest, config, blobs) of an OCI image whose layer blobs are `layers`."""
    config = _config(diff_ids if diff_ids is not None else [_sha(x) for x in layers])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _desc(OCI_CONFIG, config),
                           "layers": [_desc(layer_type, x) for x in layers]}).encode()
    return manifest, config, dict(_blob(x) for x in [manifest, config, *layers])


def _oci_archive(path: Path, index: dict[str, object], blobs: dict[str, bytes]) -> Path:
    return _tar(path, {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode(),
                       **blobs})


def _index(*manifests: dict[str, object]) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests)}


@pytest.fixture
def small_layer() -> bytes:
    return _layer_tar({"hello.txt": b"hello\n", "etc/motd": b"welcome\n"})


@pytest.fixture
def saved(rl: Rl, busybox: str, tmp_path: Path) -> Path:
    """busybox:latest saved by rl."""
    out = tmp_path / "busybox.tar"
    rl("save", "-o", str(out), "busybox")
    return out


# ---- save -------------------------------------------------------------------------------------

# The user's own id mapping, and single-id mode (owners and modes in xattrs) whatever the user has.
ID_MODES = [pytest.param("own", id="own-ids"), pytest.param("single", id="single-id", marks=pytest.mark.single_id)]


@pytest.mark.parametrize("ids", ID_MODES)
def test_round_trip_keeps_id_tags_and_tree(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path, ids: str) -> None:
    rl("tag", "busybox", "localhost:5000/team/bb:v1")
    out = tmp_path / "two-names.tar"
    assert rl("save", "-o", str(out), "busybox", "localhost:5000/team/bb:v1").out == ""
    r = rl2("load", "-i", str(out))
    assert r.out.splitlines() == ["Loaded image: busybox:latest", "Loaded image: localhost:5000/team/bb:v1"]
    assert r.err == ""
    a, b = _record(rl.root, "busybox"), _record(rl2.root, "busybox")
    assert b.id == a.id == busybox
    assert b.manifest_digest == a.manifest_digest
    assert b.tags == a.tags
    assert _trees(rl2.root, "busybox") == _trees(rl.root, "busybox")


def test_round_trip_of_a_whole_distribution(rl: Rl, rl2: Rl, debian_tar: Path, tmp_path: Path) -> None:
    """Hard links, setuid programs, odd modes: a whole distribution survives save and load through a pipe."""
    image_id = rl("import", str(debian_tar), "debian:bookworm").out.strip()
    p = subprocess.run([sys.executable, "-m", "rootless", "save", "debian:bookworm"], env=rl.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, p.stderr
    assert rl2("load", input=p.stdout).out.strip() == "Loaded image: debian:bookworm"
    assert _record(rl2.root, "debian:bookworm").id == image_id
    assert _trees(rl2.root, "debian:bookworm") == _trees(rl.root, "debian:bookworm")


def test_archive_is_an_oci_layout_and_a_docker_archive(rl: Rl, saved: Path, busybox: str) -> None:
    files = _members(saved)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (desc,) = json.loads(files["index.json"])["manifests"]
    assert desc["annotations"] == {"io.containerd.image.name": "docker.io/library/busybox:latest",
                                   "org.opencontainers.image.ref.name": "latest"}
    (entry,) = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["busybox:latest"]
    assert entry["Config"] == f"blobs/sha256/{busybox[7:]}"
    manifest = json.loads(files[f"blobs/sha256/{desc['digest'][7:]}"])
    assert entry["Layers"] == [f"blobs/sha256/{x['digest'][7:]}" for x in manifest["layers"]]
    # Every blob is the store's, byte for byte: its name is its digest.
    blobs = {n: d for n, d in files.items() if n.startswith("blobs/")}
    assert len(blobs) == 3
    for name, data in blobs.items():
        assert _sha(data)[7:] == name.rsplit("/", 1)[1]
    with Store(rl.root) as s:
        img = s.resolve("busybox")
        assert files[f"blobs/sha256/{img.manifest_digest[7:]}"] == s.manifest_bytes(img)


def test_save_is_deterministic(rl: Rl, busybox: str, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    rl("save", "-o", str(a), "busybox")
    rl("save", "-o", str(b), "busybox")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tf:
        names = tf.getnames()
        assert names == sorted(names)
        assert {m.mtime for m in tf.getmembers()} == {tf.getmembers()[0].mtime}
        assert {(m.uid, m.gid) for m in tf.getmembers()} == {(0, 0)}
    # Stdout gives the same bytes as -o.
    p = subprocess.run([sys.executable, "-m", "rootless", "save", "busybox"], env=rl.env, capture_output=True)
    assert p.returncode == 0 and p.stdout == a.read_bytes()


def test_several_images_in_one_archive(rl: Rl, rl2: Rl, busybox_tar: Path, tmp_path: Path,
                                       small_layer: bytes) -> None:
    rl("import", str(busybox_tar), "bb:one")
    rl("import", "-c", "CMD [\"/bin/echo\", \"two\"]", str(busybox_tar), "bb:two")  # same layer, other config
    small = tmp_path / "small.tar"
    small.write_bytes(small_layer)
    rl("import", str(small), "small")
    out = tmp_path / "three.tar"
    rl("save", "-o", str(out), "bb:one", "bb:two", "small")
    files = _members(out)
    assert len(json.loads(files["manifest.json"])) == 3
    assert len(json.loads(files["index.json"])["manifests"]) == 3
    assert len([n for n in files if n.startswith("blobs/")]) == 2 * 3 + 2  # the busybox layer once
    r = rl2("load", "-i", str(out))
    assert sorted(r.out.splitlines()) == ["Loaded image: bb:one", "Loaded image: bb:two", "Loaded image: small:latest"]
    for name in ("bb:one", "bb:two", "small"):
        assert _record(rl2.root, name).id == _record(rl.root, name).id
    assert len(os.listdir(rl2.root / "layers")) == 2


def test_save_by_id_is_untagged(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "by-id.tar"
    rl("save", "-o", str(out), busybox[7:19])
    files = _members(out)
    assert "annotations" not in json.loads(files["index.json"])["manifests"][0]
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == []
    assert rl2("load", "-i", str(out)).out.splitlines() == [f"Loaded image ID: {busybox}"]
    assert rl2("images", "-q").out.split() == [busybox[7:19]]


def test_oci_dir(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    rl("save", "--format", "oci-dir", "-o", str(layout), "busybox")
    assert sorted(os.listdir(layout)) == ["blobs", "index.json", "oci-layout"]
    assert len(os.listdir(layout / "blobs" / "sha256")) == 3
    assert rl2("load", "-i", str(layout)).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl2.root, "busybox").id == busybox
    r = rl("save", "--format", "oci-dir", "-o", str(layout), "busybox", check=False)
    assert r.code == 125 and "already exists" in r.err
    assert sorted(os.listdir(tmp_path)) == ["layout", "store", "store2"]


def test_oci_archive_format_loads_too(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "oci.tar"
    rl("save", "--format", "oci-archive", "-o", str(out), "busybox")
    assert rl2("load", "-i", str(out)).out.strip() == "Loaded image: busybox:latest"


def test_save_errors_leave_no_file(rl: Rl, busybox: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = rl("save", "-o", str(out_dir / "x.tar"), "busybox", "nosuchimage", check=False)
    assert r.code == 125 and r.err.strip() == "Error: image not known: nosuchimage"
    # A blob lost from the store fails the save half way: no archive, no temp file.
    with Store(rl.root) as s:
        img = s.resolve("busybox")
        os.unlink(s.blobs.path(img.layer_blobs[0]))
    r = rl("save", "-o", str(out_dir / "x.tar"), "busybox", check=False)
    assert r.code == 125 and len(r.err.splitlines()) == 1 and "missing" in r.err, r.err
    assert os.listdir(out_dir) == []
    r = rl("save", "--format", "oci-dir", "-o", str(out_dir / "dir"), "busybox", check=False)
    assert r.code == 125 and os.listdir(out_dir) == []


def test_save_refuses_a_terminal(rl: Rl, busybox: str) -> None:
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "rootless", "save", "busybox"], env=rl.env, stdout=slave,
                           stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 125
    assert p.stderr.decode().startswith("Error: refusing to write an archive to a terminal")


# ---- load: formats ------------------------------------------------------------------------------

def test_load_gzipped_archive(rl: Rl, rl2: Rl, saved: Path, busybox: str, tmp_path: Path) -> None:
    gz = tmp_path / "busybox.tar.gz"
    gz.write_bytes(gzip.compress(saved.read_bytes(), compresslevel=1))
    assert rl2("load", "-i", str(gz)).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl2.root, "busybox").id == busybox
    assert os.listdir(rl2.root / "tmp") == []  # the uncompressed copy is gone


def test_load_from_a_pipe(rl: Rl, rl2: Rl, saved: Path, busybox: str) -> None:
    assert rl2("load", input=saved.read_bytes()).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl2.root, "busybox").id == busybox


def test_load_from_redirected_stdin(rl: Rl, rl2: Rl, saved: Path, busybox: str) -> None:
    with open(saved, "rb") as f:
        p = subprocess.run([sys.executable, "-m", "rootless", "load"], stdin=f, env=rl2.env, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == "Loaded image: busybox:latest"
    gz = gzip.compress(saved.read_bytes(), compresslevel=1)
    assert rl2("load", input=gz).out.strip() == "Loaded image: busybox:latest"


def test_load_twice_and_tag_moves(rl: Rl, rl2: Rl, saved: Path, busybox: str, busybox_tar: Path) -> None:
    rl2("load", "-i", str(saved))
    assert rl2("load", "-i", str(saved)).out.strip() == "Loaded image: busybox:latest"
    other = rl2("import", "-c", "CMD [\"true\"]", str(busybox_tar), "busybox:latest").out.strip()
    out = rl2("load", "-i", str(saved)).out.splitlines()
    assert out == [f"The image busybox:latest already exists, renaming the old one with ID {other} to empty string",
                   "Loaded image: busybox:latest"]
    assert _record(rl2.root, "busybox").id == busybox


def _docker_archive(path: Path, layers: list[bytes], diff_ids: list[str], tags: list[str],
                    layer_names: list[str] | None = None) -> Path:
    config = _config(diff_ids)
    names = layer_names or [f"layer{i}/layer.tar" for i in range(len(layers))]
    manifest = [{"Config": f"{_sha(config)[7:]}.json", "RepoTags": tags, "Layers": names}]
    return _tar(path, {f"{_sha(config)[7:]}.json": config, **dict(zip(names, layers)),
                       "manifest.json": json.dumps(manifest).encode()})


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_load_docker_archive_layer_compressions(rl2: Rl, tmp_path: Path, busybox_tar: Path, small_layer: bytes,
                                                compression: str) -> None:
    import zstandard

    base = busybox_tar.read_bytes()
    packed = {"none": lambda b: b, "gzip": lambda b: gzip.compress(b, compresslevel=1),
              "zstd": lambda b: zstandard.ZstdCompressor().compress(b)}[compression]
    archive = _docker_archive(tmp_path / "d.tar", [packed(base), packed(small_layer)],
                              [_sha(base), _sha(small_layer)], ["example.com/app:1.0"])
    assert rl2("load", "-i", str(archive)).out.strip() == "Loaded image: example.com/app:1.0"
    trees = _trees(rl2.root, "example.com/app:1.0")
    assert len(trees) == 2 and "bin/busybox" in trees[0] and set(trees[1]) == {"hello.txt", "etc", "etc/motd"}


def test_load_legacy_docker_archive_without_manifest(rl2: Rl, tmp_path: Path, busybox_tar: Path,
                                                      small_layer: bytes) -> None:
    """Docker before 1.10: `repositories`, and a parent chain of `<id>/json`; duplicate layers are symlinks."""
    base_id, top_id, dup_id = "a" * 64, "b" * 64, "c" * 64
    v1 = {
        base_id: {"id": base_id, "created": "2020-01-01T00:00:00Z", "os": "linux",
                  "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file"]}},
        dup_id: {"id": dup_id, "parent": base_id, "created": "2020-01-01T00:00:01Z", "os": "linux"},
        top_id: {"id": top_id, "parent": dup_id, "created": "2020-01-02T00:00:00Z", "os": "linux",
                 "architecture": _host_arch(), "config": {"Cmd": ["/bin/sh"], "Env": ["A=b"]},
                 "container_config": {"Cmd": ["/bin/sh", "-c", "echo hi > /hello.txt"]}},
    }
    files = {"repositories": json.dumps({"legacy/app": {"v1": top_id, "latest": top_id}}).encode()}
    for i, data in ((base_id, busybox_tar.read_bytes()), (top_id, small_layer)):
        files[f"{i}/layer.tar"] = data
    for i, doc in v1.items():
        files[f"{i}/json"] = json.dumps(doc).encode()
        files[f"{i}/VERSION"] = b"1.0"
    archive = _tar(tmp_path / "legacy.tar", files, symlinks={f"{dup_id}/layer.tar": f"../{base_id}/layer.tar"})
    out = rl2("load", "-i", str(archive)).out.splitlines()
    assert sorted(out) == ["Loaded image: legacy/app:latest", "Loaded image: legacy/app:v1"]
    doc = json.loads(rl2("inspect", "legacy/app:v1").out)[0]
    base = _sha(busybox_tar.read_bytes())
    assert doc["RootFS"]["Layers"] == [base, base, _sha(small_layer)]
    assert doc["Config"] == {"Cmd": ["/bin/sh"], "Env": ["A=b"]}
    assert [h.get("created_by") for h in doc["History"]] == \
        ["/bin/sh -c #(nop) ADD file", None, "/bin/sh -c echo hi > /hello.txt"]
    trees = _trees(rl2.root, "legacy/app:v1")
    assert "bin/busybox" in trees[0] and "hello.txt" in trees[2]


def test_load_legacy_archive_with_manifest_json(rl2: Rl, tmp_path: Path, busybox_tar: Path) -> None:
    """What Docker 1.10 to 24 write: manifest.json naming `<id>/layer.tar` and `<config digest>.json`."""
    base = busybox_tar.read_bytes()
    archive = _docker_archive(tmp_path / "d.tar", [base], [_sha(base)], ["busybox:1.36"],
                              layer_names=["f" * 64 + "/layer.tar"])
    assert rl2("load", "-i", str(archive)).out.strip() == "Loaded image: busybox:1.36"


def test_load_nested_index_picks_the_host_platform(rl2: Rl, tmp_path: Path, small_layer: bytes) -> None:
    manifest, config, blobs = _oci_image([small_layer])
    foreign = b'{"schemaVersion":2}'  # never read: it is for another platform
    nested = json.dumps(_index(
        _desc(OCI_MANIFEST, foreign, platform={"os": "linux", "architecture": "s390x-other"}),
        _desc(OCI_MANIFEST, manifest, platform={"os": "linux", "architecture": _host_arch()}),
    )).encode()
    top = _index(_desc(OCI_INDEX, nested, annotations={"org.opencontainers.image.ref.name": "example.org/multi:2"}))
    archive = _oci_archive(tmp_path / "multi.tar", top, {**blobs, **dict([_blob(nested)])})
    assert rl2("load", "-i", str(archive)).out.strip() == "Loaded image: example.org/multi:2"
    assert _record(rl2.root, "example.org/multi:2").id == _sha(config)
    assert _record(rl2.root, "example.org/multi:2").manifest_digest == _sha(manifest)


def test_load_picks_from_a_multi_platform_archive_as_pull_does(rl2: Rl, tmp_path: Path, small_layer: bytes) -> None:
    """An archive of `skopeo copy --all`'s shape: the host's plain entry is picked over a foreign
    one listed first and over a variant of the host's architecture, as `rl pull` picks."""
    manifest, config, blobs = _oci_image([small_layer])
    other = b'{"schemaVersion":2}'  # an image for another platform: refused if read
    other_arch = "s390x" if _host_arch() != "s390x" else "amd64"
    nested = json.dumps(_index(
        _desc(OCI_MANIFEST, other, platform={"os": "linux", "architecture": other_arch}),
        _desc(OCI_MANIFEST, other, platform={"os": "linux", "architecture": _host_arch(), "variant": "v99"}),
        _desc(OCI_MANIFEST, manifest, platform={"os": "linux", "architecture": _host_arch()}),
    )).encode()
    top = _index(_desc(OCI_INDEX, nested, annotations={"org.opencontainers.image.ref.name": "example.org/multi:3"}))
    archive = _oci_archive(tmp_path / "multi.tar", top, {**blobs, **dict([_blob(nested), _blob(other)])})
    assert rl2("load", "-i", str(archive)).out.strip() == "Loaded image: example.org/multi:3"
    assert _record(rl2.root, "example.org/multi:3").manifest_digest == _sha(manifest)
    assert _record(rl2.root, "example.org/multi:3").id == _sha(config)


def test_load_oci_ref_name_forms(rl2: Rl, tmp_path: Path, small_layer: bytes) -> None:
    manifest, config, blobs = _oci_image([gzip.compress(small_layer)], [_sha(small_layer)], OCI_LAYER_GZIP)
    tag_only = _oci_archive(tmp_path / "a.tar", _index(
        _desc(OCI_MANIFEST, manifest, annotations={"org.opencontainers.image.ref.name": "v3"})), blobs)
    # A bare tag names no repository: the image loads untagged.
    assert rl2("load", "-i", str(tag_only)).out.strip() == f"Loaded image ID: {_sha(config)}"
    full = _oci_archive(tmp_path / "b.tar", _index(
        _desc(OCI_MANIFEST, manifest, annotations={"org.opencontainers.image.ref.name": "localhost/mine:v3"})), blobs)
    assert rl2("load", "-i", str(full)).out.strip() == "Loaded image: localhost/mine:v3"
    both = _oci_archive(tmp_path / "c.tar", _index(
        _desc(OCI_MANIFEST, manifest, annotations={"org.opencontainers.image.ref.name": "v3",
                                                   "io.containerd.image.name": "quay.io/org/mine:v3"})), blobs)
    assert rl2("load", "-i", str(both)).out.strip() == "Loaded image: quay.io/org/mine:v3"


def test_load_docker_25_archive_without_the_containerd_name(rl2: Rl, saved: Path, busybox: str,
                                                             tmp_path: Path) -> None:
    """Docker 25.0.0 wrote only the tag in index.json (moby#47065): manifest.json gives the repository."""
    index = json.loads(_members(saved)["index.json"])
    del index["manifests"][0]["annotations"]["io.containerd.image.name"]
    archive = _rewrite(saved, tmp_path / "d25.tar", {"index.json": json.dumps(index).encode()})
    assert rl2("load", "-i", str(archive)).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl2.root, "busybox").id == busybox


def test_load_an_unpacked_docker_archive_directory(rl2: Rl, saved: Path, busybox: str, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    for name, data in _members(saved).items():
        if name not in ("index.json", "oci-layout"):
            (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
            (unpacked / name).write_bytes(data)
    assert rl2("load", "-i", str(unpacked)).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl2.root, "busybox").id == busybox


# ---- load: bad input ----------------------------------------------------------------------------

def _refused(r: Result, *words: str) -> None:
    assert r.code == 125, (r.code, r.out, r.err)
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert r.err.startswith("Error: ") and "Traceback" not in r.err, r.err
    for w in words:
        assert w in r.err, r.err
    assert "Loaded image" not in r.out


@pytest.fixture
def clean_after(rl2: Rl) -> Iterator[None]:
    """After the failed command, the store holds nothing once `rl system prune -f` has run."""
    yield
    assert rl2("images", "-q").out == ""
    rl2("system", "prune", "-f")
    for sub in ("layers", "blobs/sha256", "tmp"):
        d = rl2.root / sub
        left = os.listdir(d) if d.exists() else []
        assert left == [], f"{sub} still holds {left}"


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of an archive with some members replaced (bytes) or left out (None)."""
    files = {n: change.get(n, d) for n, d in _members(src).items()}
    return _tar(dst, {n: d for n, d in files.items() if d is not None})


def _blob_names(saved: Path) -> tuple[str, str, str]:
    """Names of the manifest, config and (only) layer blob in an archive rl saved."""
    files = _members(saved)
    (entry,) = json.loads(files["manifest.json"])
    (layer,) = entry["Layers"]
    manifest = "blobs/sha256/" + json.loads(files["index.json"])["manifests"][0]["digest"][7:]
    return manifest, entry["Config"], layer


@pytest.mark.parametrize("where", ["in a layer", "in the last file", "between two files"])
def test_bad_truncated_archive(rl2: Rl, saved: Path, tmp_path: Path, where: str, clean_after: None) -> None:
    data = saved.read_bytes()
    with tarfile.open(saved) as tf:
        last = tf.getmembers()[-1]
        cut = {"in a layer": len(data) // 2, "in the last file": last.offset_data + 5,
               "between two files": last.offset}[where]
    bad = tmp_path / "truncated.tar"
    bad.write_bytes(data[:cut])
    _refused(rl2("load", "-i", str(bad), check=False), "truncated")


def test_bad_truncated_archive_on_stdin(rl2: Rl, saved: Path, clean_after: None) -> None:
    data = saved.read_bytes()
    _refused(rl2("load", input=data[: len(data) // 3], check=False), "truncated")


def test_bad_corrupt_gzip(rl2: Rl, saved: Path, tmp_path: Path, clean_after: None) -> None:
    data = bytearray(gzip.compress(saved.read_bytes(), compresslevel=1))
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    bad = tmp_path / "corrupt.tar.gz"
    bad.write_bytes(bytes(data))
    _refused(rl2("load", "-i", str(bad), check=False), "corrupt")


def test_bad_truncated_gzip(rl2: Rl, saved: Path, clean_after: None) -> None:
    data = gzip.compress(saved.read_bytes(), compresslevel=1)
    _refused(rl2("load", input=data[: len(data) - 100], check=False), "truncated")


def test_bad_missing_layer_blob(rl2: Rl, saved: Path, tmp_path: Path, clean_after: None) -> None:
    _, _, layer = _blob_names(saved)
    bad = _rewrite(saved, tmp_path / "bad.tar", {layer: None})
    _refused(rl2("load", "-i", str(bad), check=False), "missing", layer.rsplit("/", 1)[1])


def test_bad_missing_config_blob(rl2: Rl, saved: Path, tmp_path: Path, clean_after: None) -> None:
    _, config, _ = _blob_names(saved)
    bad = _rewrite(saved, tmp_path / "bad.tar", {config: None})
    _refused(rl2("load", "-i", str(bad), check=False), "missing")


def test_bad_layer_digest_mismatch(rl2: Rl, saved: Path, tmp_path: Path, clean_after: None) -> None:
    _, _, layer = _blob_names(saved)
    data = bytearray(_members(saved)[layer])
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tf:
        at = tf.getmember("etc/hostname").offset_data
    assert data[at:at + 8] == b"busybox\n"
    data[at:at + 8] = b"busyboy\n"  # the layer still unpacks: only its digest is wrong
    bad = _rewrite(saved, tmp_path / "bad.tar", {layer: bytes(data)})
    _refused(rl2("load", "-i", str(bad), check=False), "digest mismatch")


def test_bad_config_digest_mismatch(rl2: Rl, saved: Path, tmp_path: Path, clean_after: None) -> None:
    _, config, _ = _blob_names(saved)
    data = _members(saved)[config].replace(b'"os":"linux"', b'"os":"LINUX"')
    bad = _rewrite(saved, tmp_path / "bad.tar", {config: data})
    _refused(rl2("load", "-i", str(bad), check=False), "digest mismatch")


def test_bad_diff_id_mismatch(rl2: Rl, tmp_path: Path, small_layer: bytes, clean_after: None) -> None:
    archive = _docker_archive(tmp_path / "d.tar", [small_layer], ["sha256:" + "0" * 64], ["x:1"])
    _refused(rl2("load", "-i", str(archive), check=False), "DiffID")


def test_bad_blob_size_differs_from_descriptor(rl2: Rl, tmp_path: Path, small_layer: bytes,
                                               clean_after: None) -> None:
    manifest, _, blobs = _oci_image([small_layer])
    doc = json.loads(manifest)
    doc["layers"][0]["size"] += 1
    manifest = json.dumps(doc).encode()
    archive = _oci_archive(tmp_path / "a.tar", _index(_desc(OCI_MANIFEST, manifest)), {**blobs, **dict([_blob(manifest)])})
    _refused(rl2("load", "-i", str(archive), check=False), "descriptor says")


def test_bad_unknown_manifest_media_type(rl2: Rl, tmp_path: Path, small_layer: bytes, clean_after: None) -> None:
    manifest, _, blobs = _oci_image([small_layer])
    archive = _oci_archive(tmp_path / "a.tar", _index(_desc("application/vnd.example.thing.v1+json", manifest)), blobs)
    _refused(rl2("load", "-i", str(archive), check=False), "unsupported media type")


def test_bad_unknown_layer_media_type(rl2: Rl, tmp_path: Path, small_layer: bytes, clean_after: None) -> None:
    manifest, _, blobs = _oci_image([small_layer], layer_type="application/vnd.example.blob")
    archive = _oci_archive(tmp_path / "a.tar", _index(_desc(OCI_MANIFEST, manifest)), blobs)
    _refused(rl2("load", "-i", str(archive), check=False), "unknown layer media type")


def test_bad_no_image_for_this_platform(rl2: Rl, tmp_path: Path, small_layer: bytes, clean_after: None) -> None:
    manifest, _, blobs = _oci_image([small_layer])
    nested = json.dumps(_index(_desc(OCI_MANIFEST, manifest, platform={"os": "plan9", "architecture": "mips"}))).encode()
    archive = _oci_archive(tmp_path / "a.tar", _index(_desc(OCI_INDEX, nested)), {**blobs, **dict([_blob(nested)])})
    _refused(rl2("load", "-i", str(archive), check=False), "no image for linux/", "plan9/mips")


def test_bad_malformed_platform_in_a_nested_index(rl2: Rl, tmp_path: Path, small_layer: bytes,
                                                  clean_after: None) -> None:
    manifest, _, blobs = _oci_image([small_layer])
    nested = json.dumps(_index(_desc(OCI_MANIFEST, manifest, platform=f"linux/{_host_arch()}"))).encode()
    archive = _oci_archive(tmp_path / "a.tar", _index(_desc(OCI_INDEX, nested)), {**blobs, **dict([_blob(nested)])})
    _refused(rl2("load", "-i", str(archive), check=False), "is malformed: the platform of entry 1 is not an object")


def test_bad_none_of_the_formats(rl2: Rl, tmp_path: Path, clean_after: None) -> None:
    archive = _tar(tmp_path / "a.tar", {"README": b"hello\n", "data/x.bin": b"\0" * 100})
    _refused(rl2("load", "-i", str(archive), check=False), "not an image archive")


def test_bad_not_a_tar(rl2: Rl, tmp_path: Path, clean_after: None) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not an archive\n" * 100)
    _refused(rl2("load", "-i", str(bad), check=False), "not a tar archive")


def test_bad_empty_stdin(rl2: Rl, clean_after: None) -> None:
    _refused(rl2("load", input=b"", check=False))


def test_bad_escaping_layer(rl2: Rl, tmp_path: Path, small_layer: bytes, clean_after: None) -> None:
    target = f"/tmp/rl-escape-{os.getpid()}"
    evil = _layer_tar({"ok.txt": b"ok", "../../../../../../../.." + target: b"evil"})
    # The good layer first: it is unpacked and committed before the bad one is refused.
    archive = _docker_archive(tmp_path / "d.tar", [small_layer, evil], [_sha(small_layer), _sha(evil)], ["evil:1"])
    _refused(rl2("load", "-i", str(archive), check=False), "outside")
    assert not os.path.exists(target)


def test_bad_second_image_leaves_the_first_unloaded(rl2: Rl, tmp_path: Path, small_layer: bytes,
                                                     busybox_tar: Path, clean_after: None) -> None:
    base = busybox_tar.read_bytes()
    good_cfg = _config([_sha(base)])
    bad_cfg = _config([_sha(b"not it")], comment="bad")
    archive = _tar(tmp_path / "two.tar", {
        f"{_sha(good_cfg)[7:]}.json": good_cfg, f"{_sha(bad_cfg)[7:]}.json": bad_cfg,
        "base/layer.tar": base, "small/layer.tar": small_layer,
        "manifest.json": json.dumps([
            {"Config": f"{_sha(good_cfg)[7:]}.json", "RepoTags": ["good:1"], "Layers": ["base/layer.tar"]},
            {"Config": f"{_sha(bad_cfg)[7:]}.json", "RepoTags": ["bad:1"], "Layers": ["small/layer.tar"]},
        ]).encode()})
    _refused(rl2("load", "-i", str(archive), check=False), "DiffID")


def test_bad_missing_input_file(rl2: Rl, tmp_path: Path) -> None:
    _refused(rl2("load", "-i", str(tmp_path / "nope.tar"), check=False), "no such file")


def test_bad_layer_bytes_for_a_layer_the_store_has(rl2: Rl, tmp_path: Path, busybox_tar: Path,
                                                   small_layer: bytes) -> None:
    rl2("import", str(busybox_tar), "bb")
    base = busybox_tar.read_bytes()
    # A Docker archive names its layer by path, not digest: only the DiffID ties these bytes to the config.
    archive = _docker_archive(tmp_path / "d.tar", [small_layer], [_sha(base)], ["liar:1"])
    _refused(rl2("load", "-i", str(archive), check=False), "DiffID")
