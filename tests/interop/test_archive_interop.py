"""rl's archives read by the real tools, and theirs read by rl: podman, skopeo, umoci, oci-image-tool."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl
from tests.interop.conftest import Podman, effective_snapshot, need, run


def _rl_tree(rl: Rl, name: str) -> dict[str, tuple]:  # type: ignore[type-arg]
    from rootless.store.store import Store

    with Store(rl.root) as s:
        (layer,) = s.layer_paths(s.resolve(name))
        return effective_snapshot(layer)


def _record(rl: Rl, name: str):  # type: ignore[no-untyped-def]
    from rootless.store.store import Store

    with Store(rl.root) as s:
        return s.resolve(name)


def _extract(archive: Path, dest: Path) -> Path:
    """The layout in an archive rl wrote (regular files only; Python 3.11.2 has no extraction filters)."""
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if m.isfile():
                (dest / m.name).parent.mkdir(parents=True, exist_ok=True)
                (dest / m.name).write_bytes(tf.extractfile(m).read())  # type: ignore[union-attr]
    return dest


@pytest.fixture
def two_images(rl: Rl, busybox: str, busybox_tar: Path, tmp_path: Path) -> Path:
    """busybox:latest (also named example.com/team/bb:v1) and bb-cmd:1, another config on the same layer."""
    rl("tag", "busybox", "example.com/team/bb:v1")
    rl("import", "-c", 'CMD ["/bin/echo", "hi"]', str(busybox_tar), "bb-cmd:1")
    out = tmp_path / "two.tar"
    rl("save", "-o", str(out), "busybox", "example.com/team/bb:v1", "bb-cmd:1")
    return out


def test_oci_image_tool_validates_the_layout(rl: Rl, two_images: Path, tmp_path: Path) -> None:
    tool = need("oci-image-tool")
    layout = _extract(two_images, tmp_path / "layout")
    # This oci-image-tool (1.0.0-rc1) checks a layout as --type image: "imageLayout" is unimplemented.
    out = run(tool, "validate", "--type", "image", layout)
    assert "Validation succeeded" in out
    rl("save", "--format", "oci-dir", "-o", str(tmp_path / "dir"), "bb-cmd:1")
    assert "Validation succeeded" in run(tool, "validate", "--type", "image", tmp_path / "dir")
    # The tool does look at the blobs: a damaged one fails it.
    config = json.loads((layout / "manifest.json").read_text())[0]["Config"]
    with open(layout / config, "ab") as f:
        f.write(b" ")
    p = subprocess.run([tool, "validate", "--type", "image", str(layout)], capture_output=True, text=True)
    assert p.returncode != 0


def test_podman_loads_an_rl_archive(rl: Rl, busybox: str, podman: Podman, tmp_path: Path) -> None:
    single = tmp_path / "busybox.tar"
    rl("save", "-o", str(single), "busybox")
    out = podman("load", "-i", single)
    assert "Loaded image: docker.io/library/busybox:latest" in out
    (doc,) = json.loads(podman("image", "inspect", "docker.io/library/busybox:latest"))
    assert doc["Id"] == busybox[7:]
    assert doc["Digest"] == _record(rl, "busybox").manifest_digest
    assert effective_snapshot(podman.tree("docker.io/library/busybox:latest")) == _rl_tree(rl, "busybox")


def test_podman_loads_several_images_from_one_rl_archive(rl: Rl, two_images: Path, podman: Podman) -> None:
    out = podman("load", "-i", two_images)
    # podman reads several images through manifest.json, and prefixes names that lack a registry
    # with localhost/ (as for a `docker save` of several images); the ids are what matter.
    assert out.count("Loaded image: ") == 3, out
    ids = {i["Id"] for i in json.loads(podman("images", "--format", "json"))}
    assert ids == {_record(rl, "busybox").id[7:], _record(rl, "bb-cmd:1").id[7:]}
    assert "Loaded image: example.com/team/bb:v1" in out


def test_skopeo_reads_an_rl_archive(rl: Rl, busybox: str, tmp_path: Path) -> None:
    skopeo = need("skopeo")
    archive = tmp_path / "busybox.tar"
    rl("save", "-o", str(archive), "busybox")
    from rootless.store.store import Store

    with Store(rl.root) as s:
        img = s.resolve("busybox")
        manifest = s.manifest_bytes(img)
        config = s.blobs.read(img.id)
    for transport in ("oci-archive", "docker-archive"):
        doc = json.loads(run(skopeo, "inspect", f"{transport}:{archive}"))
        assert doc["Layers"] == list(img.layer_blobs), transport
        assert doc["Os"] == "linux"
    # Byte for byte what the store holds: digests stay valid.
    assert run(skopeo, "inspect", "--raw", f"oci-archive:{archive}").encode() == manifest
    assert run(skopeo, "inspect", "--config", "--raw", f"oci-archive:{archive}").encode() == config
    assert json.loads(run(skopeo, "inspect", f"oci-archive:{archive}"))["Digest"] == img.manifest_digest


def test_umoci_lists_and_unpacks_an_rl_layout(rl: Rl, two_images: Path, tmp_path: Path) -> None:
    umoci = need("umoci")
    layout = tmp_path / "layout"
    rl("save", "--format", "oci-dir", "-o", str(layout), "busybox", "example.com/team/bb:v1")
    assert sorted(run(umoci, "ls", "--layout", layout).split()) == ["latest", "v1"]
    assert sorted(run(umoci, "ls", "--layout", _extract(two_images, tmp_path / "x")).split()) == ["1", "latest", "v1"]
    bundle = tmp_path / "bundle"
    run(umoci, "unpack", "--rootless", "--image", f"{layout}:latest", bundle)
    assert effective_snapshot(bundle / "rootfs") == _rl_tree(rl, "busybox")


@pytest.mark.parametrize("ids", [pytest.param("own", id="own-ids"),
                                 pytest.param("single", id="single-id", marks=pytest.mark.single_id)])
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_rl_loads_what_podman_saves(rl: Rl, podman: Podman, busybox_tar: Path, tmp_path: Path, fmt: str,
                                    ids: str) -> None:
    image_id = podman("import", "-q", busybox_tar, "docker.io/library/busybox:latest").strip()
    archive = tmp_path / f"podman-{fmt}.tar"
    podman("save", "--format", fmt, "-o", archive, "docker.io/library/busybox:latest")
    assert rl("load", "-i", str(archive)).out.strip() == "Loaded image: busybox:latest"
    assert _record(rl, "busybox").id == image_id
    assert _rl_tree(rl, "busybox") == effective_snapshot(podman.tree("docker.io/library/busybox:latest"))


def test_rl_loads_a_podman_multi_image_archive(rl: Rl, podman: Podman, busybox_tar: Path, tmp_path: Path) -> None:
    first = podman("import", "-q", busybox_tar, "docker.io/library/busybox:latest").strip()
    second = podman("import", "-q", "-c", "CMD [\"/bin/true\"]", busybox_tar, "localhost/other:2").strip()
    archive = tmp_path / "multi.tar"
    podman("save", "-m", "--format", "docker-archive", "-o", archive,
           "docker.io/library/busybox:latest", "localhost/other:2")
    out = rl("load", "-i", str(archive)).out.splitlines()
    assert sorted(out) == ["Loaded image: busybox:latest", "Loaded image: localhost/other:2"]
    assert (_record(rl, "busybox").id, _record(rl, "localhost/other:2").id) == (first, second)
    assert len(os.listdir(rl.root / "layers")) == 1
