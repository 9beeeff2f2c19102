"""`rl run` and `rl build` pull what they need from a registry, as --pull says."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import OtherStores, Rl
from tests.registry_fixture import LocalRegistry, registry  # noqa: F401 - the fixture


def test_run_pulls_a_missing_image(rl: Rl, busybox: str, registry: LocalRegistry,  # noqa: F811
                                   tmp_path: Path, other_store: OtherStores) -> None:
    name = f"{registry.host}/pp/busybox:1"
    rl("push", "-q", "busybox", name)
    fresh = other_store(tmp_path / "fresh")
    r = fresh("run", "--rm", "--pull=never", name, "true", check=False)
    assert r.code == 125 and "image not known" in r.err
    r = fresh("run", "--rm", name, "echo", "pulled and ran")
    assert r.out == "pulled and ran\n" and "Unable to find image" in r.err and "Pulling from" in r.err
    r = fresh("run", "--rm", name, "true")
    assert "Pulling" not in r.err, "an image in the store is not pulled again"
    assert "Pulling from" in fresh("run", "--rm", "--pull=always", name, "true").err


def test_build_pulls_its_base_image(rl: Rl, busybox: str, registry: LocalRegistry,  # noqa: F811
                                   tmp_path: Path, other_store: OtherStores) -> None:
    name = f"{registry.host}/pp/base:1"
    rl("push", "-q", "busybox", name)
    fresh = other_store(tmp_path / "fresh")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {name}\nRUN echo built > /b\nCOPY --from={name} /bin/busybox /bb\n")
    r = fresh("build", "--pull=never", "-t", "x", str(ctx), check=False)
    assert r.code == 1 and "--pull=never" in r.err
    fresh("build", "-t", "x", str(ctx))
    assert fresh("run", "--rm", "x", "cat", "/b").out == "built\n"


def test_manifest_inspect_prints_what_the_registry_has(rl: Rl, busybox: str, registry: LocalRegistry) -> None:  # noqa: F811
    import json

    name = f"{registry.host}/pp/inspected:1"
    rl("push", "-q", "busybox", name)
    doc = json.loads(rl("manifest", "inspect", name).out)
    assert doc["schemaVersion"] == 2 and doc["config"]["digest"] == busybox
    r = rl("manifest", "inspect", f"{registry.host}/pp/missing:1", check=False)
    assert r.code == 125 and len(r.err.strip().splitlines()) == 1
