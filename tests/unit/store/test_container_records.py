"""The Store's compare-and-set changes of container records, and its connection across a fork."""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.store.records import ContainerRecord
from rootless.store.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as s:
        yield s


def _running(store: Store, name: str = "web") -> ContainerRecord:
    rec = ContainerRecord(os.urandom(32).hex(), name, "sha256:" + "a" * 64, "img", time.time(), "running",
                          4242, None, time.time(), 0.0, "{}", 777)
    store.add_container(rec)
    return rec


# What another process may have written since the caller read the record.
CHANGES = {"status": {"status": "exited", "exit_code": 3}, "pid": {"pid": 4343}, "pid_start": {"pid_start": 778}}


def test_a_record_nobody_changed_is_marked_exited(store: Store) -> None:
    rec = _running(store)
    assert store.mark_exited_if_unchanged(rec, 137)
    now = store.container(rec.id)
    assert (now.status, now.pid, now.exit_code) == ("exited", 0, 137)
    assert now.finished > 0


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_record_changed_meanwhile_is_not_marked_exited(store: Store, change: str) -> None:
    rec = _running(store)
    store.update_container(rec.id, **CHANGES[change])
    before = store.container(rec.id)
    assert not store.mark_exited_if_unchanged(rec, 137)
    assert store.container(rec.id) == before


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_record_changed_meanwhile_is_not_removed(store: Store, change: str) -> None:
    rec = _running(store)
    store.update_container(rec.id, **CHANGES[change])
    assert not store.remove_container_if_unchanged(rec)
    assert store.container(rec.id).id == rec.id
    assert store.remove_container_if_unchanged(store.container(rec.id))
    assert store.containers() == []


@pytest.mark.parametrize("change", ["pid", "pid_start"])
def test_a_container_is_claimed_only_from_the_owner_its_claimant_saw(store: Store, change: str) -> None:
    rec = _running(store)
    assert store.claim_container(rec, 5000, 9)
    now = store.container(rec.id)
    assert (now.pid, now.pid_start) == (5000, 9)
    store.update_container(rec.id, **CHANGES[change])
    assert not store.claim_container(now, 6000, 10)
    assert store.container(rec.id).pid != 6000


def test_container_name_taken(store: Store) -> None:
    _running(store, "web")
    assert store.container_name_taken("web")
    assert not store.container_name_taken("db")


def test_the_connection_does_not_cross_a_fork_and_comes_back_after(store: Store) -> None:
    with store.detached():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                try:
                    store.db.execute("SELECT 1")
                except sqlite3.ProgrammingError:  # closed: the parent's connection is not ours
                    with Store(store.root) as own:
                        _running(own, "from-the-child")
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [c.name for c in store.containers()] == ["from-the-child"]
