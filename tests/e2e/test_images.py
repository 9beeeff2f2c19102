"""The image commands as a user types them: import, images, tag, rmi, inspect, history."""
from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl


def _layer_dirs(store_root: Path) -> list[str]:
    d = store_root / "layers"
    return sorted(os.listdir(d)) if d.exists() else []


def test_import_tarball_then_images_lists_it(rl: Rl, busybox_tar: Path) -> None:
    image_id = rl("import", str(busybox_tar), "busybox:latest").out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    out = rl("images").out.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    assert rl("images", "-q").out.split() == [image_id[7:19]]
    rows = [json.loads(line) for line in rl("images", "--format", "json").out.splitlines()]
    assert rows[0]["Repository"] == "busybox" and rows[0]["Tag"] == "latest"
    assert rows[0]["ID"] == image_id[7:19]
    # Go's time.Time.String(), as Docker's images and ps print CreatedAt
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", rows[0]["CreatedAt"]), rows[0]
    assert rl("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").out == f"busybox:latest {image_id[7:19]}\n"


def test_imported_tree_has_the_tarball_contents(rl: Rl, busybox_tar: Path, store: object) -> None:
    rl("import", str(busybox_tar), "bb")
    img = store.resolve("bb")  # type: ignore[attr-defined]
    (layer,) = store.layer_paths(img)  # type: ignore[attr-defined]
    with tarfile.open(busybox_tar) as tf:
        names = {m.name.lstrip("./").rstrip("/") for m in tf.getmembers()} - {""}
    on_disk = {str(p.relative_to(layer)) for p in layer.rglob("*")}
    assert names == on_disk
    assert os.path.islink(layer / "bin" / "sh") or os.path.samefile(layer / "bin" / "sh", layer / "bin" / "busybox")


def test_import_from_stdin_and_directory_give_the_same_image_content(rl: Rl, busybox_tar: Path, tmp_path: Path,
                                                                     store: object) -> None:
    a = rl("import", "-", "from-stdin", input=busybox_tar.read_bytes()).out.strip()
    src = tmp_path / "rootfs"
    src.mkdir()
    with tarfile.open(busybox_tar) as tf:
        for m in tf.getmembers():
            if m.isdev():
                continue
            tf.extract(m, src, set_attrs=False)
    b = rl("import", str(src), "from-dir").out.strip()
    assert a != b  # different creation times, different configs
    la = store.layer_paths(store.resolve("from-stdin"))[0]  # type: ignore[attr-defined]
    lb = store.layer_paths(store.resolve("from-dir"))[0]  # type: ignore[attr-defined]
    names_a = sorted(str(p.relative_to(la)) for p in la.rglob("*"))
    names_b = sorted(str(p.relative_to(lb)) for p in lb.rglob("*"))
    assert names_a == names_b


def test_import_change_sets_config(rl: Rl, busybox_tar: Path) -> None:
    rl("import", "--change", 'CMD ["/bin/sh"]', "-c", "ENV FOO=bar", "-c", "LABEL note=café", "-m", "made by test",
       str(busybox_tar), "withcmd")
    raw = rl("inspect", "withcmd").out
    assert '"note": "café"' in raw, "UTF-8 as it is, as Docker writes it"
    (doc,) = json.loads(raw)
    assert doc["Config"]["Cmd"] == ["/bin/sh"]
    assert doc["Config"]["Env"] == ["FOO=bar"]
    assert doc["Comment"] == "made by test"
    assert doc["RepoTags"] == ["withcmd:latest"]
    assert doc["RootFS"]["Type"] == "layers" and len(doc["RootFS"]["Layers"]) == 1
    # As Go's templates print them: scripts compare these strings.
    assert rl("inspect", "--format", "{{.Config.Cmd}} {{json .Config.Env}} {{.Config.Labels}}", "withcmd").out == \
        '[/bin/sh] ["FOO=bar"] map[note:café]\n'


def test_untagged_import_is_dangling(rl: Rl, busybox_tar: Path) -> None:
    image_id = rl("import", str(busybox_tar)).out.strip()
    assert rl("images").out.splitlines()[1].split()[:3] == ["<none>", "<none>", image_id[7:19]]


def test_tag_and_rmi(rl: Rl, busybox: str, store_root: Path) -> None:
    rl("tag", "busybox", "localhost:5000/mine/bb:v1")
    listing = rl("images").out
    assert "localhost:5000/mine/bb" in listing and "busybox" in listing
    short = busybox[7:19]
    r = rl("rmi", short, check=False)
    assert r.code == 2 and "referenced by 2 names" in r.err and len(r.err.splitlines()) == 1
    assert rl("rmi", "localhost:5000/mine/bb:v1").out.strip() == "Untagged: localhost:5000/mine/bb:v1"
    assert len(_layer_dirs(store_root)) == 1
    out = rl("rmi", "busybox").out.splitlines()
    assert out == ["Untagged: busybox:latest", f"Deleted: {busybox}"]
    assert rl("images", "-q").out == ""
    assert _layer_dirs(store_root) == []
    assert os.listdir(store_root / "blobs" / "sha256") == []


def test_rmi_force_removes_all_names(rl: Rl, busybox: str) -> None:
    rl("tag", "busybox", "other")
    out = rl("rmi", "-f", busybox[7:19]).out
    assert "Untagged: busybox:latest" in out and "Untagged: other:latest" in out and f"Deleted: {busybox}" in out


def test_rmi_refuses_an_image_a_container_uses(rl: Rl, busybox: str, store_root: Path) -> None:
    from rootless.store.records import ContainerRecord
    from rootless.store.store import Store

    with Store(store_root) as s:
        s.add_container(ContainerRecord("c" * 64, "web", busybox, "busybox", 0.0, "exited", 0, 0, 0.0, 0.0, "{}"))
    r = rl("rmi", "busybox", check=False)
    assert r.code == 2 and "used by container web" in r.err
    assert rl("images", "-q").out.strip() == busybox[7:19]
    r = rl("rmi", "-f", "busybox")
    assert "Untagged: busybox:latest" in r.out
    # The container still needs the layers: they stay until it is gone.
    assert len(_layer_dirs(store_root)) == 1


def test_rmi_unknown_image(rl: Rl) -> None:
    r = rl("rmi", "nosuchimage", check=False)
    assert r.code == 1 and r.err.strip() == "Error: image not known: nosuchimage"


def test_history(rl: Rl, busybox_tar: Path) -> None:
    image_id = rl("import", "-m", "hello", str(busybox_tar), "bb").out.strip()
    lines = rl("history", "bb").out.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert "rl import" in lines[1] and "hello" in lines[1]
    # Docker's fields: sizes and times human unless -H false, then bytes and RFC 3339
    [row] = [json.loads(x) for x in rl("history", "--format", "json", "bb").out.splitlines()]
    assert row["Size"].endswith("MB") and row["CreatedSince"].endswith(" ago") and row["Comment"] == "hello"
    [row] = [json.loads(x) for x in rl("history", "-H", "false", "--format", "json", "bb").out.splitlines()]
    assert int(row["Size"]) > 1_000_000 and row["CreatedSince"] == row["CreatedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", row["CreatedAt"]), row
    assert rl("history", "--format", "{{.ID}}: {{.Comment}}", "bb").out == f"{image_id[7:19]}: hello\n"
    r = rl("history", "--format", "table {{.ID}}", "bb", check=False)
    assert (r.code, r.out) == (125, "") and "--format 'table {{.ID}}' is not supported" in r.err


def test_inspect_unknown_is_an_error(rl: Rl, busybox: str) -> None:
    r = rl("inspect", "busybox", "nope", check=False)
    assert r.code == 1
    assert json.loads(r.out)[0]["Id"] == busybox
    assert r.err.strip() == "Error: no such object: nope"


def test_system_df_and_prune(rl: Rl, busybox_tar: Path, store_root: Path) -> None:
    rl("import", str(busybox_tar), "keep")
    dangling = rl("import", "-c", "CMD x", str(busybox_tar)).out.strip()
    df = rl("system", "df").out.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "2", "0"]
    out = rl("system", "prune", "-f").out
    assert f"deleted: {dangling}" in out and "Total reclaimed space:" in out
    assert rl("images", "-q").out.split() != [] and len(rl("images", "-q").out.split()) == 1
    out = rl("system", "prune", "-f", "-a").out
    assert rl("images", "-q").out == ""
    assert _layer_dirs(store_root) == []


def test_prune_asks_first(rl: Rl, busybox_tar: Path) -> None:
    rl("import", str(busybox_tar))
    r = rl("system", "prune", input=b"n\n")
    assert "Are you sure" in r.out
    assert rl("images", "-q").out != ""


def test_info_reports_mapping_and_driver(rl: Rl) -> None:
    info = json.loads(rl("info", "--format", "json").out)
    assert info["idMapping"]["mode"] in ("subuid", "single")
    assert info["storage"]["driver"] in ("overlay", "fuse-overlay", "vfs")
    assert info["store"]["root"] == str(rl.root)
    text = rl("info").out
    assert "id mapping:" in text and "storage driver:" in text and "kernel overlay:" in text


@pytest.mark.single_id
def test_info_in_single_id_mode_says_what_breaks(rl: Rl) -> None:
    info = json.loads(rl("info", "--format", "json").out)
    assert info["idMapping"]["mode"] == "single"
    fuse = info["storage"]["fuse"]["usable"]
    assert info["storage"]["driver"] == ("fuse-overlay" if fuse else "vfs")
    assert "single-id mode" in rl("info").out


@pytest.mark.single_id
def test_single_id_import_keeps_owners_in_xattrs(rl: Rl, busybox_tar: Path, store: object) -> None:
    rl("import", str(busybox_tar), "bb")
    (layer,) = store.layer_paths(store.resolve("bb"))  # type: ignore[attr-defined]
    shadow = layer / "etc" / "shadow"
    assert shadow.stat().st_uid == os.getuid()
    assert os.getxattr(shadow, "user.containers.override_stat").decode().startswith("0:42:")
    home = layer / "home" / "user"
    assert os.getxattr(home, "user.containers.override_stat").decode().startswith("1000:1000:")


@pytest.mark.needs_subuid
def test_subuid_import_keeps_real_owners(rl: Rl, busybox_tar: Path, store: object) -> None:
    from rootless.userns.idmap import detect_mapping

    m = detect_mapping()
    if m.mode != "subuid":
        pytest.skip("this user has no subordinate range")
    rl("import", str(busybox_tar), "bb")
    (layer,) = store.layer_paths(store.resolve("bb"))  # type: ignore[attr-defined]
    st = (layer / "home" / "user").stat()
    assert (st.st_uid, st.st_gid) == (m.host_uid(1000), m.host_gid(1000))
    assert (layer / "etc" / "shadow").stat().st_gid == m.host_gid(42)
    assert (layer / "bin" / "busybox").stat().st_uid == os.getuid()


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_import_of_compressed_tarballs_keeps_the_compressed_blob(rl: Rl, busybox_tar: Path, tmp_path: Path,
                                                                 store: object, kind: str) -> None:
    import gzip

    import zstandard

    data = busybox_tar.read_bytes()
    packed = gzip.compress(data) if kind == "gzip" else zstandard.ZstdCompressor().compress(data)
    src = tmp_path / f"rootfs.tar.{kind}"
    src.write_bytes(packed)
    rl("import", str(src), "packed")
    img = store.resolve("packed")  # type: ignore[attr-defined]
    manifest = store.manifest(img)  # type: ignore[attr-defined]
    (layer,) = manifest.layers
    assert layer.media_type == f"application/vnd.oci.image.layer.v1.tar+{kind}"
    assert store.blobs.read(layer.digest) == packed  # type: ignore[attr-defined]
    import hashlib

    (doc,) = json.loads(rl("inspect", "packed").out)
    assert doc["RootFS"]["Layers"] == ["sha256:" + hashlib.sha256(data).hexdigest()]
    assert (store.layer_paths(img)[0] / "bin" / "busybox").is_file()  # type: ignore[attr-defined]
