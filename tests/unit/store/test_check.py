"""`rl system check`'s store side: each kind of damage a crash (or a disk) can leave, made in a real
store, is found, and --repair leaves a store that checks clean and still works."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.image.reference import parse
from rootless.store import check
from rootless.store.records import ContainerRecord, ImageRecord
from rootless.store.scratch import Scratch
from rootless.store.store import LayerSource, Store
from rootless.store.unpack import LayerInput


def _layer_tar(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        info.mtime = 0
        tf.addfile(info, io.BytesIO(content))
    path = tmp_path / f"layer-{hashlib.sha256(content).hexdigest()[:8]}.tar"
    path.write_bytes(buf.getvalue())
    return path, "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


def _add_image(store: Store, tmp_path: Path, name: str, content: bytes) -> ImageRecord:
    tar, diff_id = _layer_tar(tmp_path, content)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    with store.adding():
        layers = store.ingest_layers([LayerSource(LayerInput(str(tar)))], [diff_id])
        return store.commit_image(config, layers, [parse(name)])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s
        s.remove_trees([p for p in s.root.iterdir() if not p.name.startswith("rl.db")])


@pytest.fixture
def image(store: Store, tmp_path: Path) -> ImageRecord:
    return _add_image(store, tmp_path, "one:latest", b"hello\n")


def _add_container(store: Store, image: ImageRecord, with_dir: bool = True) -> str:
    cid = os.urandom(32).hex()
    store.add_container(ContainerRecord(cid, f"c{cid[:6]}", image.id, "one", time.time(), "exited", 0, 0, 0.0,
                                        0.0, json.dumps({})))
    if with_dir:
        (store.root / "containers" / cid).mkdir(parents=True)
    return cid


def _remove_container(store: Store) -> object:
    def remove(cid: str) -> None:
        store.remove_container(cid)
        store.remove_trees([store.root / "containers" / cid])

    return remove


def _repair(store: Store, problems: list[check.Problem], force: bool = False) -> list[check.Problem]:
    return check.repair(store, problems, force, lambda: None, _remove_container(store))


def _kinds(problems: list[check.Problem]) -> list[tuple[str, str]]:
    return sorted((p.kind, p.fix) for p in problems)


def test_a_store_that_works_checks_clean(store: Store, image: ImageRecord) -> None:
    _add_container(store, image)
    assert check.check(store) == []


def test_a_blob_whose_content_changed_is_found_and_its_image_removed(store: Store, image: ImageRecord) -> None:
    path = store.blobs.path(image.layer_blobs[0])
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    assert check.check(store, quick=True) == []  # --quick does not hash
    problems = check.check(store)
    assert _kinds(problems) == [("blob", check.REMOVE_PATH), ("image", check.DROP_IMAGE)]
    assert "hashes to" in problems[0].line() or "hashes to" in problems[1].line()
    assert _repair(store, problems) == []
    assert check.check(store) == []
    assert store.images() == []


def test_temporary_and_foreign_files_among_blobs_are_removed(store: Store, image: ImageRecord) -> None:
    (store.blobs.dir / "tmp-123").write_bytes(b"half a blob")
    problems = check.check(store)
    assert [(p.kind, p.subject) for p in problems] == [("blob", str(store.blobs.dir / "tmp-123"))]
    assert _repair(store, problems) == []
    assert check.check(store) == []
    assert store.resolve("one:latest").id == image.id


def test_a_layer_record_without_its_tree_takes_its_image(store: Store, image: ImageRecord) -> None:
    store.remove_trees([store.layers.path(image.chain_ids[0])])
    problems = check.check(store)
    assert _kinds(problems) == [("image", check.DROP_IMAGE), ("layer", check.DROP_LAYER)]
    assert _repair(store, problems) == []
    assert check.check(store) == []


def test_a_tree_without_a_record_and_content_no_image_uses_are_collected(store: Store, image: ImageRecord,
                                                                        tmp_path: Path) -> None:
    other = _add_image(store, tmp_path, "two:latest", b"two\n")
    # What `rl rmi two` killed after its transaction, before the collector ran, leaves.
    with store.db:
        store.db.execute("DELETE FROM images WHERE id=?", (other.id,))
    orphan = store.layers.dir / ("ab" * 32)
    orphan.mkdir()
    (orphan / "half").write_bytes(b"x")
    problems = check.check(store)
    assert _kinds(problems) == [("blob", check.COLLECT)] * 3 + [("layer", check.COLLECT)] * 2
    assert _repair(store, problems) == []
    assert check.check(store) == []
    assert not orphan.exists()
    assert store.resolve("one:latest").id == image.id


def test_scratch_of_dead_processes_and_lone_lock_files_go_but_live_scratch_stays(store: Store,
                                                                                image: ImageRecord) -> None:
    tmp = store.scratch.tmp_root
    dead = tmp / "999999-deadbeef"
    (dead / "layer-1").mkdir(parents=True)
    (dead / "layer-1" / "half-unpacked").write_bytes(b"x")
    (tmp / "999998-cafe.lock").write_bytes(b"")
    live = Scratch(tmp)  # another process's, with its lock held
    live.new_path("blob").write_bytes(b"in progress")
    problems = check.check(store)
    assert sorted(p.subject for p in problems) == [str(tmp / "999998-cafe.lock"), str(dead)]
    assert all(p.kind == "scratch" for p in problems)
    assert _repair(store, problems) == []
    assert check.check(store) == []
    assert live.dir.is_dir() and not dead.exists()
    live.close(lambda p: store.remove_trees([p]))


def test_container_directories_and_records_without_each_other(store: Store, image: ImageRecord) -> None:
    lost = _add_container(store, image, with_dir=False)
    orphan = store.root / "containers" / ("cd" * 32)
    (orphan / "upper").mkdir(parents=True)
    problems = check.check(store)
    assert {(p.subject, p.fix) for p in problems} == {(lost, check.DROP_CONTAINER),
                                                      (str(orphan), check.REMOVE_PATH)}
    assert _repair(store, problems) == []
    assert check.check(store) == []
    assert store.containers() == []


def test_a_damaged_image_a_container_uses_goes_only_with_force(store: Store, image: ImageRecord) -> None:
    cid = _add_container(store, image)
    store.blobs.remove(image.manifest_digest)
    problems = check.check(store)
    assert [(p.kind, p.needs_force) for p in problems] == [("image", True)]
    assert "--force" in problems[0].line()
    left = _repair(store, problems)
    assert left == problems
    assert store.container(cid).image_id == image.id
    assert _repair(store, check.check(store), force=True) == []
    assert check.check(store) == []
    assert store.containers() == [] and store.images() == []
