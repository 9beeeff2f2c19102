"""Named volumes: a row of the `volumes` table and the directory `volumes/NAME/_data`.

The row is the truth. Directories are staged in the store's scratch and renamed into place, and
renamed back out to be removed, inside the transaction that inserts or deletes the row, so the
directory and the row change together for every other rl process (they all take the write lock
first). A crash can leave a directory without a row, which is garbage: `create` replaces it and
`prune` removes it; or a row whose directory went to scratch, which `create` makes again.
"""
from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

from rootless.errors import UsageError, VolumeError
from rootless.runtime.spec import ContainerSpec
from rootless.store import db as dbmod
from rootless.store.lock import store_lock
from rootless.store.store import Store
from rootless.values import valueclass

# Docker's pattern for local volume names, which also keeps every name a single path component.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_MAX_NAME = 255  # a directory name
# Beside _data: the image's content was copied in (or the volume held data), never copy again.
_POPULATED = "populated"


@valueclass
class VolumeRecord:
    name: str
    created: float
    labels: dict[str, str]


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise UsageError(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
                         f"at most {_MAX_NAME} characters")


def volume_dir(store: Store, name: str) -> Path:
    return store.root / "volumes" / name


def data_path(store: Store, name: str) -> Path:
    return volume_dir(store, name) / "_data"


def is_populated(store: Store, name: str) -> bool:
    return (volume_dir(store, name) / _POPULATED).exists()


def mark_populated(store: Store, name: str) -> None:
    (volume_dir(store, name) / _POPULATED).touch(mode=0o600)


def _record(row: tuple) -> VolumeRecord:  # type: ignore[type-arg]
    return VolumeRecord(row[0], row[1], json.loads(row[2]))


def create(store: Store, name: str | None = None, labels: dict[str, str] | None = None) -> VolumeRecord:
    """The volume NAME (a random 64-hex name when None), made if it does not exist yet; an
    existing one is returned as it is, labels unchanged, as Docker does."""
    name = name or os.urandom(32).hex()
    check_name(name)
    vdir = volume_dir(store, name)
    row = store.db.execute("SELECT name, created, labels FROM volumes WHERE name=?", (name,)).fetchone()
    if row is not None and vdir.is_dir():
        return _record(row)
    staged = store.scratch.new_path("volume")
    staged.mkdir(mode=0o700)
    (staged / "_data").mkdir(mode=0o755)
    vdir.parent.mkdir(exist_ok=True, mode=0o700)
    trash: list[Path] = [staged]
    try:
        with dbmod.transaction(store.db):
            row = store.db.execute("SELECT name, created, labels FROM volumes WHERE name=?", (name,)).fetchone()
            if row is None or not vdir.is_dir():
                if os.path.lexists(vdir):  # a crash's leftover: the row is the truth
                    trash.append(store.scratch.new_path("trash"))
                    os.rename(vdir, trash[-1])
                os.rename(staged, vdir)
                if row is None:
                    row = (name, time.time(), json.dumps(labels or {}, sort_keys=True))
                    store.db.execute("INSERT INTO volumes VALUES (?,?,?)", row)
    finally:
        store.remove_trees(trash)
    return _record(row)


def get(store: Store, name: str) -> VolumeRecord:
    row = store.db.execute("SELECT name, created, labels FROM volumes WHERE name=?", (name,)).fetchone()
    if row is None:
        raise VolumeError(f"no such volume: {name}")
    return _record(row)


def exists(store: Store, name: str) -> bool:
    return store.db.execute("SELECT 1 FROM volumes WHERE name=?", (name,)).fetchone() is not None


def list_volumes(store: Store) -> list[VolumeRecord]:
    return [_record(r) for r in store.db.execute("SELECT name, created, labels FROM volumes ORDER BY name")]


def users(store: Store) -> dict[str, list[str]]:
    """Volume name -> names of the containers, running or not, whose spec mounts it."""
    out: dict[str, list[str]] = {}
    for rec in store.containers():
        for m in ContainerSpec.from_json(rec.spec).mounts:
            if m.volume:
                out.setdefault(m.volume, []).append(rec.name)
    return out


def remove(store: Store, name: str) -> None:
    """Delete a volume and its data; refused while a container uses it."""
    trash = store.scratch.new_path("trash")
    with dbmod.transaction(store.db):
        get(store, name)
        used_by = users(store).get(name)
        if used_by:
            raise VolumeError(f"volume {name} is in use by container {used_by[0]}: remove the container first")
        store.db.execute("DELETE FROM volumes WHERE name=?", (name,))
        _move_out(volume_dir(store, name), trash)
    store.remove_trees([trash])


def prune(store: Store) -> list[tuple[str, int]]:
    """Delete every volume no container uses, and directories a crash left without a row;
    returns the names of the volumes deleted with the bytes their files held."""
    root = store.root / "volumes"
    doomed: list[tuple[str, Path]] = []
    # Exclusive: an `rl run` holds the store lock shared from making its volumes until its
    # container record exists, so a volume it just made is never taken for an unused one.
    with store_lock(store.root, exclusive=True), dbmod.transaction(store.db):
        used = users(store)
        names = [r[0] for r in store.db.execute("SELECT name FROM volumes") if r[0] not in used]
        store.db.executemany("DELETE FROM volumes WHERE name=?", [(n,) for n in names])
        known = {r[0] for r in store.db.execute("SELECT name FROM volumes")}
        orphans = [n for n in (os.listdir(root) if root.is_dir() else []) if n not in known and n not in names]
        for n in names + orphans:
            trash = store.scratch.new_path("trash")
            if _move_out(root / n, trash):
                doomed.append((n, trash))
    sizes = store.in_userns(tree_sizes, [str(t) for _, t in doomed]) if doomed else []
    store.remove_trees([t for _, t in doomed])
    size_of = {n: s for (n, _), s in zip(doomed, sizes)}
    return [(n, size_of.get(n, 0)) for n in names]


def _move_out(vdir: Path, trash: Path) -> bool:
    try:
        os.rename(vdir, trash)
    except FileNotFoundError:
        return False
    return True


def tree_sizes(paths: list[str]) -> list[int]:
    """Bytes of the files of each tree, hard links once, as Docker counts reclaimed space (in the
    user namespace: a volume's directories may belong to subordinate ids and be closed to us)."""
    out = []
    for p in paths:
        seen: set[tuple[int, int]] = set()
        total = 0
        for dirpath, dirnames, filenames in os.walk(p):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                if not stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
        out.append(total)
    return out
