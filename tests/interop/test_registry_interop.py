"""Registry interop: rl pulls what skopeo and podman push, and they pull what rl pushes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rootless.store.store import Store
from tests.conftest import OtherStores, Rl, tree_snapshot
from tests.interop.conftest import Podman, need, run
from tests.registry_fixture import LocalRegistry, registry  # noqa: F401 - the fixture


@pytest.fixture
def rl2(tmp_path: Path, other_store: OtherStores) -> Rl:
    return other_store(tmp_path / "store2")


def _files(root: Path, name: str) -> list[dict[str, tuple]]:  # type: ignore[type-arg]
    with Store(root) as s:
        return [tree_snapshot(p) for p in s.layer_paths(s.resolve(name))]


def _record(root: Path, name: str):  # type: ignore[no-untyped-def]
    with Store(root) as s:
        return s.resolve(name)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_rl_pulls_what_skopeo_pushed_from_an_rl_archive(rl: Rl, rl2: Rl, busybox: str, tmp_path: Path,
                                                       registry: LocalRegistry, compression: str) -> None:  # noqa: F811
    skopeo = need("skopeo")
    archive = tmp_path / "busybox.tar"
    rl("save", "-o", str(archive), "busybox")
    name = f"{registry.host}/skopeo-{compression}/busybox:1"
    # A blob info cache of its own: skopeo would otherwise reuse the other test's gzip blob.
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "skopeo-data")}
    run(skopeo, "copy", "--dest-tls-verify=false", "--dest-compress", "--dest-compress-format", compression,
        f"oci-archive:{archive}", f"docker://{name}", env=env)
    raw = run(skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{name}")
    layer_type = json.loads(raw)["layers"][0]["mediaType"]
    assert layer_type.endswith(f"+{compression}")
    pulled = rl2("pull", name)
    assert pulled.out.strip() == busybox
    img = _record(rl2.root, name)
    digest = json.loads(run(skopeo, "inspect", "--tls-verify=false", f"docker://{name}"))["Digest"]
    assert img.manifest_digest == digest
    assert _files(rl2.root, name) == _files(rl.root, "busybox")
    assert rl2("run", "--rm", name, "echo", "pulled").out == "pulled\n"


def test_rl_pulls_a_docker_schema2_image_pushed_from_a_podman_archive(
        rl2: Rl, podman: Podman, busybox_tar: Path, tmp_path: Path, registry: LocalRegistry) -> None:  # noqa: F811
    skopeo = need("skopeo")
    podman("import", busybox_tar, "localhost/podman-busybox:1")
    archive = tmp_path / "podman.tar"
    podman("save", "--format", "docker-archive", "-o", archive, "localhost/podman-busybox:1")
    name = f"{registry.host}/podman/busybox:1"
    run(skopeo, "copy", "--dest-tls-verify=false", "--format", "v2s2", f"docker-archive:{archive}", f"docker://{name}")
    raw = json.loads(run(skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{name}"))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    pulled = rl2("pull", name)
    img = _record(rl2.root, name)
    assert pulled.out.strip() == img.id
    assert img.id == "sha256:" + podman("image", "inspect", "--format", "{{.ID}}", "localhost/podman-busybox:1").strip()
    assert rl2("run", "--rm", name, "echo", "from podman").out == "from podman\n"


def test_skopeo_and_podman_pull_what_rl_pushed(rl: Rl, busybox: str, podman: Podman, tmp_path: Path,
                                               registry: LocalRegistry) -> None:  # noqa: F811
    skopeo = need("skopeo")
    name = f"{registry.host}/from-rl/busybox:1"
    pushed = rl("push", "busybox", name)  # gzip, as podman pushes
    (line,) = [x for x in pushed.err.splitlines() if ": digest: " in x]
    digest = line.split(": digest: ")[1].split()[0]
    assert json.loads(run(skopeo, "inspect", "--tls-verify=false", f"docker://{name}"))["Digest"] == digest
    run(skopeo, "copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path / 'layout'}:x")
    podman("pull", "--tls-verify=false", name)
    assert podman("image", "inspect", "--format", "{{.Digest}}", name).strip() == digest
    assert podman("image", "inspect", "--format", "{{.ID}}", name).strip() == busybox.removeprefix("sha256:")
