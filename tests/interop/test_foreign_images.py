"""Images made by other tools, pulled from a registry or loaded, then run: umoci layouts (whose
layer tars end without padding or end-of-archive blocks, as Go's archive/tar writes them when not
closed), pushed by skopeo; what podman and buildah build, pushed and saved in Docker's and the
OCI format; layers gzipped, zstd-compressed and uncompressed."""
from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Rl
from tests.interop.conftest import Podman, need, run
from tests.registry_fixture import LocalRegistry, registry  # noqa: F401 - the fixture

CHECK = "cat /marker /copied; test ! -e /home/user && echo gone"
CHECKED = "built\ncopied\ngone\n"

CONTAINERFILE = """\
FROM localhost/base:1
RUN echo built > /marker && rm -rf /home/user
COPY copied /copied
"""

MEDIA_TYPES = {
    "docker": ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.image.rootfs.diff.tar"),
    "oci": ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.layer.v1.tar"),
}
LAYER_SUFFIX = {"gzip": {"docker": ".gzip", "oci": "+gzip"}, "zstd": {"oci": "+zstd"}}


def _layer_types(skopeo: str, image: str) -> tuple[str, set[str]]:
    """The manifest's media type and its layers' of an image in the registry."""
    raw = json.loads(run(skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{image}"))
    # An OCI manifest may leave its media type out (umoci's do).
    return raw.get("mediaType", MEDIA_TYPES["oci"][0]), {layer["mediaType"] for layer in raw["layers"]}


def _layout_manifest(layout: Path) -> Any:
    (desc,) = json.loads((layout / "index.json").read_text())["manifests"]
    return json.loads((layout / "blobs" / "sha256" / desc["digest"].removeprefix("sha256:")).read_text())


def _layout_layer_types(layout: Path) -> set[str]:
    return {layer["mediaType"] for layer in _layout_manifest(layout)["layers"]}


def _expect(skopeo: str, image: str, fmt: str, compression: str) -> None:
    """The registry holds the kind of image the case is about (the tools pick defaults of their own)."""
    manifest_type, layer_type = MEDIA_TYPES[fmt]
    assert _layer_types(skopeo, image) == (manifest_type, {layer_type + LAYER_SUFFIX[compression][fmt]})


# -- umoci -----------------------------------------------------------------------------------------


def _umoci_layout(tmp_path: Path, busybox_tar: Path) -> tuple[Path, str]:
    """A layout umoci made from busybox's files, two more files and a whiteout, each its own
    layer; returns it with the image's config digest (its id)."""
    umoci = need("umoci")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with tarfile.open(busybox_tar) as tf:
        tf.extractall(rootfs, members=[m for m in tf.getmembers() if not m.isdev()])  # noqa: S202 - our own image
    (tmp_path / "add").mkdir()
    (tmp_path / "add" / "marker").write_text("built\n")
    (tmp_path / "copied").write_text("copied\n")
    layout = tmp_path / "umoci"
    image = f"{layout}:t"
    run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", image)
    run(umoci, "insert", "--rootless", "--image", image, rootfs, "/")
    run(umoci, "insert", "--rootless", "--image", image, tmp_path / "add" / "marker", "/marker")
    run(umoci, "insert", "--rootless", "--image", image, tmp_path / "copied", "/copied")
    run(umoci, "insert", "--rootless", "--image", image, "--whiteout", "/home/user")
    manifest = _layout_manifest(layout)
    # What the corpus is for: umoci's tars stop right after the last member, without padding.
    sizes = []
    for layer in manifest["layers"]:
        with gzip.open(layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")) as f:
            sizes.append(len(f.read()))
    assert any(size % 512 for size in sizes), f"umoci pads its layers now ({sizes}): find another case"
    return layout, manifest["config"]["digest"]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_rl_pulls_and_runs_a_umoci_image_pushed_by_skopeo(rl: Rl, busybox_tar: Path, tmp_path: Path,
                                                          registry: LocalRegistry,  # noqa: F811
                                                          compression: str) -> None:
    skopeo = need("skopeo")
    layout, image_id = _umoci_layout(tmp_path, busybox_tar)
    name = f"{registry.host}/umoci-{compression}/busybox:1"
    recompress = ["--dest-compress", "--dest-compress-format", compression] if compression != "gzip" else []
    # A blob info cache of its own, so that skopeo compresses rather than reuse another test's blob.
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "skopeo-data")}
    run(skopeo, "copy", "--dest-tls-verify=false", *recompress, f"oci:{layout}:t", f"docker://{name}", env=env)
    _expect(skopeo, name, "oci", compression)
    assert rl("pull", "-q", name).out.strip() == image_id
    assert rl("run", "--rm", name, "sh", "-c", CHECK).out == CHECKED


@pytest.mark.parametrize("ids", [pytest.param("own", id="own-ids"),
                                 pytest.param("single", id="single-id", marks=pytest.mark.single_id)])
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_rl_loads_and_runs_a_umoci_layout(rl: Rl, busybox_tar: Path, tmp_path: Path, compression: str,
                                          ids: str) -> None:
    layout, image_id = _umoci_layout(tmp_path, busybox_tar)
    if compression == "none":
        # skopeo decompresses only into its dir transport, and keeps that in an OCI layout if told.
        skopeo, plain = need("skopeo"), tmp_path / "plain"
        run(skopeo, "copy", "--dest-decompress", f"oci:{layout}:t", f"dir:{tmp_path / 'dir'}")
        run(skopeo, "copy", "--dest-oci-accept-uncompressed-layers", f"dir:{tmp_path / 'dir'}", f"oci:{plain}:t")
        assert _layout_layer_types(plain) == {"application/vnd.oci.image.layer.v1.tar"}
        layout = plain
    assert rl("load", "-i", str(layout)).out.strip() == f"Loaded image ID: {image_id}"
    assert rl("run", "--rm", image_id, "sh", "-c", CHECK).out == CHECKED


# -- podman and buildah ----------------------------------------------------------------------------


def _context(tmp_path: Path, podman: Podman, busybox_tar: Path) -> Path:
    podman("import", "-q", busybox_tar, "localhost/base:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    (ctx / "copied").write_text("copied\n")
    return ctx


def _id(podman: Podman, image: str) -> str:
    return "sha256:" + podman("image", "inspect", "--format", "{{.ID}}", image).strip()


@pytest.mark.parametrize("builder", ["podman", "buildah"])
@pytest.mark.parametrize(("fmt", "compression"), [("docker", "gzip"), ("oci", "zstd")])
def test_rl_pulls_and_runs_what_podman_and_buildah_built_and_pushed(
        rl: Rl, podman: Podman, busybox_tar: Path, tmp_path: Path, registry: LocalRegistry,  # noqa: F811
        request: pytest.FixtureRequest, builder: str, fmt: str, compression: str) -> None:
    skopeo = need("skopeo")
    ctx = _context(tmp_path, podman, busybox_tar)
    tool: Podman = request.getfixturevalue(builder)
    tool("build" if builder == "podman" else "bud", "-q", "--network", "host", "--format", fmt,
         "-t", "localhost/theirs:1", ctx, timeout=600)
    name = f"{registry.host}/{builder}-{fmt}-{compression}/theirs:1"
    tool("push", "--tls-verify=false", "--compression-format", compression, "localhost/theirs:1", f"docker://{name}")
    _expect(skopeo, name, fmt, compression)
    assert rl("pull", "-q", name).out.strip() == _id(podman, "localhost/theirs:1")
    assert rl("run", "--rm", name, "sh", "-c", CHECK).out == CHECKED


@pytest.mark.parametrize(("fmt", "how"), [("docker", "docker-archive"), ("oci", "oci-archive"), ("oci", "oci-dir")])
def test_rl_loads_and_runs_what_podman_built_and_saved(rl: Rl, podman: Podman, busybox_tar: Path, tmp_path: Path,
                                                       fmt: str, how: str) -> None:
    ctx = _context(tmp_path, podman, busybox_tar)
    podman("build", "-q", "--network", "host", "--format", fmt, "-t", "localhost/theirs:1", ctx, timeout=600)
    saved = tmp_path / "theirs"
    # Docker archives hold uncompressed layers, and so does this layout: nothing else podman and
    # buildah write does (they gzip what they push, even with buildah push --disable-compression).
    podman("save", "--format", how, *(["--uncompressed"] if how == "oci-dir" else []), "-o", saved,
           "localhost/theirs:1")
    if how == "oci-dir":
        assert _layout_layer_types(saved) == {"application/vnd.oci.image.layer.v1.tar"}
    assert rl("load", "-i", str(saved)).out.strip() == "Loaded image: localhost/theirs:1"
    assert json.loads(rl("inspect", "localhost/theirs:1").out)[0]["Id"] == _id(podman, "localhost/theirs:1")
    assert rl("run", "--rm", "localhost/theirs:1", "sh", "-c", CHECK).out == CHECKED
