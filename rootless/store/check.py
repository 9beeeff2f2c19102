"""`rl system check`: what a crash (kill -9, a full disk, a power cut) can leave in a store, found
and, where that is safe, repaired.

Content enters the store as temp files in a scratch dir renamed into place, then a database row
makes it reachable; removal goes the other way. So a crash leaves scratch dirs, content that no
row reaches, or (only when something else went wrong: a disk error, a hand in the store) rows
whose content is missing or damaged. The check runs with the store lock held exclusively, as the
collector does, so no command adding content is half-way through while it looks.
"""
from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from rootless.store import db as dbmod
from rootless.store.blobs import CHUNK
from rootless.store.lock import store_lock
from rootless.store.scratch import remove_lock_files_of
from rootless.values import valueclass

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from rootless.store.store import Store

# What --repair does about a problem.
REMOVE_PATH = "remove-path"  # a leftover file or tree: subject is its path
COLLECT = "collect"  # content no image uses: the collector (`rl system prune` without images) takes it
DROP_LAYER = "drop-layer"  # a layer record without its tree: subject is the chain id
DROP_IMAGE = "drop-image"  # an image whose content is missing or damaged: subject is its id
DROP_CONTAINER = "drop-container"  # a container record without its directory: subject is its id
REAP = "reap"  # a container record whose rl or supervisor was killed: the runtime brings it up to date
NONE = "none"  # nothing rl can do (a damaged database)


@valueclass
class Problem:
    kind: str  # blob, layer, image, container, scratch, database
    subject: str  # a digest, chain id, image or container id, or a path
    detail: str
    fix: str
    # Repair leaves it unless forced: an image that containers use goes only with them.
    needs_force: bool = False

    def line(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"


def check(store: Store, quick: bool = False) -> list[Problem]:
    """Every problem found; `quick` skips hashing every blob."""
    with store_lock(store.root, exclusive=True):
        problems = _database(store, quick)
        if problems:
            return problems  # nothing else can be trusted
        problems += _scratch(store)
        bad_blobs, found = _blobs(store, quick)
        problems += found
        problems += _layers(store)
        problems += _images(store, bad_blobs)
        problems += _container_dirs(store)
    return problems


def repair(store: Store, problems: Iterable[Problem], force: bool, reap: Callable[[], None],
           remove_container: Callable[[str], None]) -> list[Problem]:
    """Fix what is safe (with `force` also images that containers use, and those containers);
    returns the problems left. Containers are the runtime's business: reap brings every record up
    to date, remove_container removes one (its processes, record and directory) by id."""
    problems = list(problems)
    if any(p.fix == REAP for p in problems):
        reap()
    left: list[Problem] = []
    paths: list[Path] = []
    collect = False
    for p in problems:
        if p.fix == REAP:
            continue
        if p.fix == NONE or (p.needs_force and not force):
            left.append(p)
        elif p.fix == REMOVE_PATH:
            paths.append(Path(p.subject))
        elif p.fix == COLLECT:
            collect = True
        elif p.fix == DROP_LAYER:
            with dbmod.transaction(store.db):
                store.db.execute("DELETE FROM layers WHERE chain_id=?", (p.subject,))
        elif p.fix == DROP_CONTAINER:
            remove_container(p.subject)
        elif p.fix == DROP_IMAGE:
            for (cid,) in store.db.execute("SELECT id FROM containers WHERE image_id=?", (p.subject,)).fetchall():
                remove_container(cid)
            with dbmod.transaction(store.db):
                store.db.execute("DELETE FROM build_cache WHERE image_id=?", (p.subject,))
                store.db.execute("DELETE FROM tags WHERE image_id=?", (p.subject,))
                store.db.execute("DELETE FROM images WHERE id=?", (p.subject,))
            collect = True  # its layers and blobs, unless another image has them
    with store_lock(store.root, exclusive=True):
        store.remove_trees(paths)
        remove_lock_files_of([p for p in paths if p.parent == store.scratch.tmp_root])
    if collect or paths:
        store.gc()
    return left


# ---- the checks ---------------------------------------------------------------------------------


def _database(store: Store, quick: bool) -> list[Problem]:
    pragma = "quick_check" if quick else "integrity_check"
    rows = [r[0] for r in store.db.execute(f"PRAGMA {pragma}").fetchall()]
    if rows == ["ok"]:
        return []
    return [Problem("database", str(store.root / "rl.db"), f"damaged: {r}", NONE) for r in rows[:5]]


def _scratch(store: Store) -> list[Problem]:
    """Scratch dirs of processes that are gone (half-written blobs, half-unpacked layers, trees
    on their way out) and lock files left without their dir."""
    tmp = store.scratch.tmp_root
    out = [Problem("scratch", str(d), "left by a process that is gone", REMOVE_PATH)
           for d in store.scratch.stale()]
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".lock") or name.removesuffix(".lock") in names:
            continue
        if not _held(tmp / name):
            out.append(Problem("scratch", str(tmp / name), "a lock file of a scratch dir that is gone",
                               REMOVE_PATH))
    return out


def _held(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _blobs(store: Store, quick: bool) -> tuple[set[str], list[Problem]]:
    """(digests whose file is not their content, problems): files that are not blobs, blobs whose
    content hashes to another digest, and blobs no image uses."""
    out: list[Problem] = []
    bad: set[str] = set()
    try:
        names = os.listdir(store.blobs.dir)
    except FileNotFoundError:
        return bad, out
    used = store.used_blobs()
    for name in names:
        path = store.blobs.dir / name
        st = os.lstat(path)
        if len(name) != 64 or set(name) - set("0123456789abcdef"):
            out.append(Problem("blob", str(path), "not a blob (a temporary or foreign file)", REMOVE_PATH))
            continue
        digest = "sha256:" + name
        if not stat.S_ISREG(st.st_mode):
            bad.add(digest)
            out.append(Problem("blob", digest, "not a regular file", REMOVE_PATH))
        elif not quick and (actual := _hash_file(path)) != digest:
            bad.add(digest)
            out.append(Problem("blob", digest, f"its content hashes to {actual}", REMOVE_PATH))
        elif digest not in used:
            out.append(Problem("blob", digest, "no image uses it (left by an interrupted pull or removal)",
                               COLLECT))
    return bad, out


def _hash_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _layers(store: Store) -> list[Problem]:
    """Layer records without their tree, trees without a record or an image, and records no image uses."""
    out: list[Problem] = []
    records = {r[0] for r in store.db.execute("SELECT chain_id FROM layers")}
    used = {r[0] for r in store.db.execute("SELECT chain_id FROM image_layers")}
    try:
        names = os.listdir(store.layers.dir)
    except FileNotFoundError:
        names = []
    trees = set()
    for name in names:
        path = store.layers.dir / name
        if len(name) != 64 or not stat.S_ISDIR(os.lstat(path).st_mode):
            out.append(Problem("layer", str(path), "not a layer tree", REMOVE_PATH))
            continue
        trees.add("sha256:" + name)
    for chain in sorted(records - trees):
        out.append(Problem("layer", chain, "its record has no unpacked tree", DROP_LAYER))
    for chain in sorted(trees - used):
        why = "no image uses it" if chain in records else "a tree without a record, that no image uses"
        out.append(Problem("layer", chain, f"{why} (left by an interrupted pull or removal)", COLLECT))
    return out


def _images(store: Store, bad_blobs: set[str]) -> list[Problem]:
    out: list[Problem] = []
    records = {r[0] for r in store.db.execute("SELECT chain_id FROM layers")}
    users: dict[str, int] = {}
    for (image_id,) in store.db.execute("SELECT image_id FROM containers"):
        users[image_id] = users.get(image_id, 0) + 1
    for img in store.images():
        missing = [d for d in (img.id, img.manifest_digest, *img.layer_blobs)
                   if d in bad_blobs or not store.blobs.has(d)]
        lost = [c for c in img.chain_ids if c not in records or not store.layers.has(c)]
        if not missing and not lost:
            continue
        what = [f"blob {d} missing or damaged" for d in missing] + [f"layer {c} missing" for c in lost]
        name = ", ".join(img.tags) or img.short_id
        n = users.get(img.id, 0)
        detail = f"({name}) {'; '.join(what)}"
        if n:
            detail += f"; {n} container{'s' if n > 1 else ''} use{'' if n > 1 else 's'} it (--force removes them)"
        out.append(Problem("image", img.id, detail, DROP_IMAGE, needs_force=n > 0))
    return out


def _container_dirs(store: Store) -> list[Problem]:
    out: list[Problem] = []
    for d in store.orphan_container_dirs():
        out.append(Problem("container", str(d), "a directory without a record (left by a create or removal "
                           "that was cut short)", REMOVE_PATH))
    cdirs = store.root / "containers"
    for (cid,) in store.db.execute("SELECT id FROM containers ORDER BY id").fetchall():
        if not (cdirs / cid).is_dir():
            out.append(Problem("container", cid, "its record has no directory", DROP_CONTAINER))
    return out
