"""The Store: the one entry point to a user's images, layers and blobs."""
from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rootless import killpoint
from rootless.errors import (
    ArchiveError,
    ContainerNotFound,
    DigestMismatch,
    ImageInUse,
    ImageNotFound,
    NameInUse,
    StoreError,
)
from rootless.image import oci
from rootless.image.reference import Reference, looks_like_id, parse
from rootless.store import db as dbmod
from rootless.store.blobs import BlobStore
from rootless.store.layers import LayerStore
from rootless.store.lock import store_lock, store_lock_if_free
from rootless.store.records import ContainerRecord, ImageRecord
from rootless.store.scratch import Scratch, remove_lock_files_of
from rootless.store.trees import remove_tree
from rootless.userns.idmap import IdMapping, detect_mapping
from rootless.values import valueclass

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from rootless.store.unpack import LayerInput, UnpackResult


@valueclass
class LayerSource:
    """One layer of an image being added: where its bytes are and what they should hash to."""

    input: LayerInput | None  # None: the blob must already be in the store
    digest: str | None = None  # expected blob digest (from a manifest), when known
    media_type: str | None = None


@valueclass
class IngestedLayer:
    digest: str
    size: int
    diff_id: str
    chain_id: str
    media_type: str
    skipped_devices: tuple[str, ...]


@valueclass
class GcStats:
    layers: int
    blobs: int
    bytes: int


@valueclass
class RemoveResult:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


class Store:
    def __init__(self, root: Path, mapping: IdMapping | None = None) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StoreError(f"cannot create the store at {self.root}: {e.strerror}") from e
        self._mapping = mapping
        self.blobs = BlobStore(self.root)
        self.layers = LayerStore(self.root)
        self.scratch = Scratch(self.root / "tmp")
        self.db = dbmod.connect(self.root / "rl.db")

    # ---- plumbing -------------------------------------------------------------------------

    @property
    def mapping(self) -> IdMapping:
        if self._mapping is None:
            self._mapping = detect_mapping()
        return self._mapping

    @property
    def owners(self) -> str:
        return "real" if self.mapping.mode == "subuid" else "xattr"

    def in_userns(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run fn where the store's files can be owned and removed: the user namespace, if any."""
        if self.mapping.mode == "subuid":
            from rootless.userns.enter import run_in_userns

            return run_in_userns(self.mapping, fn, *args)
        return fn(*args)

    def remove_trees(self, paths: Sequence[Path]) -> None:
        paths = [p for p in paths if os.path.lexists(p)]
        if not paths:
            return
        if self.mapping.mode == "subuid":
            # Most trees (an empty upper dir after `rl run --rm`) hold only the user's own files:
            # removing them here saves entering a user namespace, two setuid helpers and a fork.
            left = []
            for p in paths:
                try:
                    remove_tree(p)
                except OSError:
                    left.append(p)  # files of subordinate ids: removed inside the namespace
            paths = left
            if not paths:
                return

        def remove_all(names: list[str]) -> None:
            for n in names:
                remove_tree(n)

        self.in_userns(remove_all, [str(p) for p in paths])

    def close(self) -> None:
        self.scratch.close(lambda p: self.remove_trees([p]))
        self.db.close()

    @contextmanager
    def detached(self) -> Iterator[None]:
        """Around an os.fork() whose child goes on without this Store (it opens its own). No SQLite
        connection may cross the fork: the child's copy would share this process's lock
        bookkeeping, and our closing ours could then checkpoint and drop the WAL it writes to. So
        the connection is closed before the fork and opened anew after it, in the parent."""
        self.db.close()
        try:
            yield
        finally:
            self.db = dbmod.connect(self.root / "rl.db")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def adding(self) -> Iterator[None]:
        """Held while content is written that no image references yet."""
        with store_lock(self.root, exclusive=False):
            yield

    # ---- adding content -------------------------------------------------------------------

    def ingest_layers(self, sources: Sequence[LayerSource], expected_diff_ids: Sequence[str] | None
                      ) -> list[IngestedLayer]:
        """Bring every layer's blob and unpacked tree into the store (call inside adding())."""
        if expected_diff_ids is not None and len(expected_diff_ids) != len(sources):
            raise ArchiveError(f"the image config lists {len(expected_diff_ids)} layers but the manifest "
                               f"has {len(sources)}")
        from rootless.store.unpack import LayerInput, UnpackJob, run_jobs

        chains = oci.chain_ids(list(expected_diff_ids)) if expected_diff_ids is not None else None
        jobs: list[UnpackJob] = []
        job_of: dict[int, int] = {}
        for i, src in enumerate(sources):
            blob_known = src.digest is not None and self.blobs.has(src.digest)
            layer_known = chains is not None and self._layer_present(chains[i])
            if blob_known and layer_known:
                continue
            if src.input is None and not blob_known:
                raise ArchiveError(f"layer {src.digest} is missing")
            inp = LayerInput(str(self.blobs.path(src.digest))) if blob_known else src.input
            assert inp is not None
            dest = None
            if not layer_known:
                d = self.scratch.new_path("layer")
                d.mkdir(mode=0o755)
                dest = str(d)
            blob_tmp = None if blob_known else str(self.scratch.new_path("blob"))
            job_of[i] = len(jobs)
            jobs.append(UnpackJob(inp, blob_tmp, dest, self.owners, src.digest))
        results = self.in_userns(run_jobs, jobs) if jobs else []
        out: list[IngestedLayer] = []
        diff_ids: list[str] = []
        for i, src in enumerate(sources):
            r: UnpackResult | None = results[job_of[i]] if i in job_of else None
            job = jobs[job_of[i]] if i in job_of else None
            digest = src.digest if r is None else r.digest
            assert digest is not None
            if src.digest is not None and digest != src.digest:
                raise DigestMismatch(f"layer {i + 1}", src.digest, digest)
            if r is not None:
                diff_id = r.diff_id
                if expected_diff_ids is not None and diff_id != expected_diff_ids[i]:
                    raise DigestMismatch(f"the uncompressed layer {i + 1} (DiffID)", expected_diff_ids[i], diff_id)
            else:
                assert expected_diff_ids is not None
                diff_id = expected_diff_ids[i]
            diff_ids.append(diff_id)
            chain_id = oci.chain_ids(diff_ids)[-1]
            if job is not None and job.blob_tmp is not None:
                os.chmod(job.blob_tmp, 0o644)
                self.blobs.dir.mkdir(parents=True, exist_ok=True)
                os.rename(job.blob_tmp, self.blobs.path(digest))
            size = r.size if r is not None else self.blobs.size(digest)
            if job is not None and job.dest is not None:
                assert r is not None
                self.layers.commit(Path(job.dest), chain_id)
                killpoint.reached("store-layer-tree")
                parent = oci.chain_ids(diff_ids)[-2] if i > 0 else None
                with dbmod.transaction(self.db):
                    self.db.execute("INSERT OR IGNORE INTO layers VALUES (?,?,?,?,?)",
                                    (chain_id, diff_id, parent, r.diff_size, time.time()))
            media_type = src.media_type or oci.OCI_LAYER_FOR.get(r.compression if r else "none", oci.MT_OCI_LAYER)
            out.append(IngestedLayer(digest, size, diff_id, chain_id, media_type,
                                     r.skipped_devices if r else ()))
        return out

    def _layer_present(self, chain_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM layers WHERE chain_id=?", (chain_id,)).fetchone()
        return row is not None and self.layers.has(chain_id)

    def commit_image(self, config_bytes: bytes, layers: Sequence[IngestedLayer], tags: Sequence[Reference],
                     manifest_bytes: bytes | None = None, config_media_type: str = oci.MT_OCI_CONFIG) -> ImageRecord:
        """Record an image whose layers are ingested (call inside adding())."""
        config = oci.parse_config(config_bytes)
        if oci.diff_ids(config) != [x.diff_id for x in layers]:
            raise ArchiveError("the image config's diff_ids do not match its layers")
        image_id = self.blobs.put(config_bytes, self.scratch.new_path("config"), what="image config")
        if manifest_bytes is None:
            manifest_bytes = oci.Manifest(
                oci.MT_OCI_MANIFEST,
                oci.Descriptor(config_media_type, image_id, len(config_bytes)),
                tuple(oci.Descriptor(x.media_type, x.digest, x.size) for x in layers),
            ).to_bytes()
        else:
            m = oci.Manifest.parse(manifest_bytes)
            if m.config.digest != image_id:
                raise DigestMismatch("image config", m.config.digest, image_id)
        manifest_digest = self.blobs.put(manifest_bytes, self.scratch.new_path("manifest"), what="manifest")
        created = _parse_time(config.get("created"))
        killpoint.reached("store-image-blobs")
        with dbmod.transaction(self.db):
            self.db.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?)",
                            (image_id, manifest_digest, created, time.time()))
            self.db.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
            self.db.executemany("INSERT INTO image_layers VALUES (?,?,?,?)",
                                [(image_id, i, x.chain_id, x.digest) for i, x in enumerate(layers)])
            for t in tags:
                self.db.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (str(t), image_id))
        return self.image(image_id)

    def set_manifest(self, image: ImageRecord, manifest_bytes: bytes) -> ImageRecord:
        """Describe an image by another manifest of the same config and layers (e.g. Docker's
        media types instead of OCI's); call inside adding()."""
        m = oci.Manifest.parse(manifest_bytes)
        if m.config.digest != image.id or tuple(d.digest for d in m.layers) != image.layer_blobs:
            raise ArchiveError("the new manifest does not describe the same image")
        digest = self.blobs.put(manifest_bytes, self.scratch.new_path("manifest"), what="manifest")
        with dbmod.transaction(self.db):
            self.db.execute("UPDATE images SET manifest_digest=? WHERE id=?", (digest, image.id))
        return self.image(image.id)

    # ---- reading --------------------------------------------------------------------------

    def image(self, image_id: str) -> ImageRecord:
        row = self.db.execute("SELECT id, manifest_digest, created, added FROM images WHERE id=?",
                              (image_id,)).fetchone()
        if row is None:
            raise ImageNotFound(image_id)
        return self._record(row)

    def _record(self, row: tuple) -> ImageRecord:  # type: ignore[type-arg]
        image_id = row[0]
        tags = tuple(r[0] for r in self.db.execute("SELECT name FROM tags WHERE image_id=? ORDER BY name",
                                                   (image_id,)))
        layers = self.db.execute(
            "SELECT il.chain_id, il.blob_digest, COALESCE(l.size, 0) FROM image_layers il "
            "LEFT JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id=? ORDER BY il.idx",
            (image_id,)).fetchall()
        return ImageRecord(image_id, row[1], row[2], row[3], tags, tuple(x[0] for x in layers),
                           tuple(x[1] for x in layers), sum(x[2] for x in layers))

    def images(self, intermediate: bool = True) -> list[ImageRecord]:
        """Newest first; without `intermediate`, not the untagged images `rl build` keeps as its
        cache (what `docker images` hides too, unless -a)."""
        sql = "SELECT id, manifest_digest, created, added FROM images"
        if not intermediate:
            sql += (" WHERE id IN (SELECT image_id FROM tags)"
                    " OR id NOT IN (SELECT image_id FROM build_cache)")
        rows = self.db.execute(sql + " ORDER BY added DESC")
        return [self._record(r) for r in rows.fetchall()]

    def resolve(self, name: str) -> ImageRecord:
        """An image by name[:tag], name@digest, full or short id."""
        if looks_like_id(name):
            h = name.removeprefix("sha256:")
            rows = self.db.execute("SELECT id, manifest_digest, created, added FROM images WHERE id LIKE ?",
                                   (f"sha256:{h}%",)).fetchall()
            if len(rows) == 1:
                return self._record(rows[0])
            if len(rows) > 1:
                raise StoreError(f"image id prefix {name!r} is ambiguous: give more characters")
            if name.startswith("sha256:"):
                raise ImageNotFound(name)
        ref = parse(name)
        if ref.digest is not None:
            rows = self.db.execute("SELECT id, manifest_digest, created, added FROM images WHERE manifest_digest=?",
                                   (ref.digest,)).fetchall()
            if not rows:
                raise ImageNotFound(name)
            return self._record(rows[0])
        row = self.db.execute("SELECT image_id FROM tags WHERE name=?", (str(ref),)).fetchone()
        if row is None:
            raise ImageNotFound(name)
        return self.image(row[0])

    def manifest(self, image: ImageRecord) -> oci.Manifest:
        return oci.Manifest.parse(self.blobs.read(image.manifest_digest))

    def manifest_bytes(self, image: ImageRecord) -> bytes:
        return self.blobs.read(image.manifest_digest)

    def config(self, image: ImageRecord) -> dict:  # type: ignore[type-arg]
        return oci.parse_config(self.blobs.read(image.id))

    def layer_paths(self, image: ImageRecord) -> list[Path]:
        """Lowest layer first."""
        return [self.layers.path(c) for c in image.chain_ids]

    # ---- tags and removal -----------------------------------------------------------------

    def tag(self, image: ImageRecord, ref: Reference) -> None:
        with dbmod.transaction(self.db):
            if self.db.execute("SELECT 1 FROM images WHERE id=?", (image.id,)).fetchone() is None:
                raise ImageNotFound(image.id)
            self.db.execute("INSERT OR REPLACE INTO tags VALUES (?,?)", (str(ref), image.id))

    def remove_image(self, name: str, force: bool = False) -> RemoveResult:
        """`rl rmi`: untag a name, and delete the image once no name and no container keeps it."""
        image = self.resolve(name)
        by_name = not (looks_like_id(name) and
                       image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:")))
        untagged: list[str] = []
        deleted: list[str] = []
        with dbmod.transaction(self.db):
            users = [r[0] for r in self.db.execute("SELECT name FROM containers WHERE image_id=?", (image.id,))]
            tags = [r[0] for r in self.db.execute("SELECT name FROM tags WHERE image_id=?", (image.id,))]
            if by_name:
                ref = str(parse(name))
                remaining = [t for t in tags if t != ref]
                if users and not remaining and not force:
                    raise ImageInUse(f"image {name} is used by container {users[0]}: remove the container "
                                     "first or use -f")
                self.db.execute("DELETE FROM tags WHERE name=?", (ref,))
                untagged.append(ref)
            else:
                if len(tags) > 1 and not force:
                    raise ImageInUse(f"image {image.short_id} is referenced by {len(tags)} names "
                                     f"({', '.join(_familiar(t) for t in tags)}): remove them one by one or use -f")
                if users and not force:
                    raise ImageInUse(f"image {image.short_id} is used by container {users[0]}: remove the "
                                     "container first or use -f")
                self.db.execute("DELETE FROM tags WHERE image_id=?", (image.id,))
                untagged.extend(tags)
                remaining = []
            if not remaining and not users:
                self.db.execute("DELETE FROM images WHERE id=?", (image.id,))
                deleted.append(image.id)
        if deleted:
            killpoint.reached("rmi-untagged")
            self.gc()
        return RemoveResult(tuple(untagged), tuple(deleted))

    def prune_images(self, all_unused: bool) -> list[str]:
        """Delete dangling images (no tag), or with all_unused every image no container uses."""
        with dbmod.transaction(self.db):
            sql = ("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM containers)" +
                   ("" if all_unused else " AND id NOT IN (SELECT image_id FROM tags)"))
            ids = [r[0] for r in self.db.execute(sql)]
            for i in ids:
                self.db.execute("DELETE FROM tags WHERE image_id=?", (i,))
                self.db.execute("DELETE FROM images WHERE id=?", (i,))
        return ids

    def used_blobs(self) -> set[str]:
        """Every blob an image lists: configs, manifests, layers."""
        used = {r[0] for r in self.db.execute("SELECT blob_digest FROM image_layers")}
        for r in self.db.execute("SELECT id, manifest_digest FROM images"):
            used.update(r)
        return used

    def gc(self) -> GcStats:
        """Remove layers and blobs that no image uses, and scratch left by dead processes."""
        with store_lock(self.root, exclusive=True):
            stale = self.scratch.stale()
            with dbmod.transaction(self.db):
                used_layers = {r[0] for r in self.db.execute("SELECT chain_id FROM image_layers")}
                known_layers = {r[0]: r[1] for r in self.db.execute("SELECT chain_id, size FROM layers")}
                dead_layers = [c for c in known_layers if c not in used_layers]
                self.db.executemany("DELETE FROM layers WHERE chain_id=?", [(c,) for c in dead_layers])
                used_blobs = self.used_blobs()
            freed = sum(known_layers[c] for c in dead_layers)
            on_disk = set(self.layers.on_disk())
            doomed = [c for c in on_disk if c not in used_layers]
            trash: list[Path] = []
            for d in self.orphan_container_dirs():
                t = self.scratch.new_path("trash")
                os.rename(d, t)
                trash.append(t)
            doomed_paths = [self.layers.path(c) for c in doomed]
            doomed_paths += [p for c, p in self.layers.shifted_on_disk() if c not in used_layers]
            for p in doomed_paths:
                t = self.scratch.new_path("trash")
                try:
                    os.rename(p, t)
                    trash.append(t)
                except FileNotFoundError:
                    pass
            killpoint.reached("gc-trash")
            self.remove_trees(trash + stale)
            remove_lock_files_of(stale)
            blobs = 0
            for d in self.blobs.all():
                if d not in used_blobs:
                    try:
                        freed += self.blobs.size(d)
                    except FileNotFoundError:
                        continue
                    self.blobs.remove(d)
                    blobs += 1
            return GcStats(len(doomed), blobs, freed)

    # ---- containers (records only; the runtime owns their life) ----------------------------

    def orphan_container_dirs(self) -> list[Path]:
        """Container directories without a record: what a create or a removal cut short (rl killed)
        left. Call with the store lock held exclusively: a create holds it shared until its record
        exists."""
        known = {r[0] for r in self.db.execute("SELECT id FROM containers")}
        cdirs = self.root / "containers"
        try:
            names = os.listdir(cdirs)
        except FileNotFoundError:
            return []
        return [cdirs / n for n in sorted(names) if n not in known]

    def tidy(self) -> None:
        """Remove what killed rl processes left: container directories without a record, scratch
        dirs of processes that are gone. Now, unless a command holds the store lock (then the
        next command will)."""
        with store_lock_if_free(self.root) as free:
            if free:
                stale = self.scratch.stale()
                self.remove_trees(self.orphan_container_dirs() + stale)
                remove_lock_files_of(stale)

    def container_name_taken(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM containers WHERE name=?", (name,)).fetchone() is not None

    def add_container(self, rec: ContainerRecord) -> None:
        try:
            with dbmod.transaction(self.db):
                self.db.execute("INSERT INTO containers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                (rec.id, rec.name, rec.image_id, rec.image_name, rec.created, rec.status,
                                 rec.pid, rec.exit_code, rec.started, rec.finished, rec.spec, rec.pid_start,
                                 rec.init_pid, rec.init_start))
        except sqlite3.IntegrityError as e:
            raise NameInUse(rec.name) from e

    def containers(self) -> list[ContainerRecord]:
        return [ContainerRecord(*r) for r in self.db.execute("SELECT * FROM containers ORDER BY created")]

    def container(self, ref: str) -> ContainerRecord:
        """A container by name, full id or unique id prefix."""
        row = self.db.execute("SELECT * FROM containers WHERE name=? OR id=?", (ref, ref)).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute("SELECT * FROM containers WHERE id LIKE ?", (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise StoreError(f"container id prefix {ref!r} is ambiguous: give more characters")
            row = rows[0] if rows else None
        if row is None:
            raise ContainerNotFound(ref)
        return ContainerRecord(*row)

    def update_container(self, container_id: str, **fields: object) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        with dbmod.transaction(self.db):
            self.db.execute(f"UPDATE containers SET {cols} WHERE id=?", (*fields.values(), container_id))

    def remove_container(self, container_id: str) -> None:
        with dbmod.transaction(self.db):
            self.db.execute("DELETE FROM containers WHERE id=?", (container_id,))

    # Compare-and-set changes: each happens only if nobody changed the record since its caller
    # read `rec` (a supervisor that just finished may have written the real exit code meanwhile, or
    # another rl reaped the container), and returns whether it did.

    def claim_container(self, rec: ContainerRecord, pid: int, pid_start: int) -> bool:
        """Name another process (pid, start ticks) as the container's owner, if the owner is still
        the process `rec` names (whatever its status)."""
        with dbmod.transaction(self.db):
            return self.db.execute("UPDATE containers SET pid=?, pid_start=? WHERE id=? AND pid=? AND pid_start=?",
                                   (pid, pid_start, rec.id, rec.pid, rec.pid_start)).rowcount == 1

    def remove_container_if_unchanged(self, rec: ContainerRecord) -> bool:
        with dbmod.transaction(self.db):
            return self.db.execute(f"DELETE FROM containers {_UNCHANGED}", _unchanged(rec)).rowcount == 1

    def mark_exited_if_unchanged(self, rec: ContainerRecord, exit_code: int) -> bool:
        with dbmod.transaction(self.db):
            return self.db.execute(
                f"UPDATE containers SET status='exited', pid=0, exit_code=?, finished=? {_UNCHANGED}",
                (exit_code, time.time(), *_unchanged(rec))).rowcount == 1

    # ---- rl build's cache -----------------------------------------------------------------

    def cached_build_step(self, key: str) -> ImageRecord | None:
        """The image a build step with this cache key made, if it is still whole."""
        row = self.db.execute("SELECT image_id FROM build_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            image = self.image(row[0])
        except ImageNotFound:  # pruned meanwhile: a miss, never a failure
            return None
        # A layer removed by hand (or a crash mid-GC) must make a miss, not a broken image.
        if not all(self.layers.has(c) for c in image.chain_ids):
            return None
        return image

    def record_build_step(self, key: str, image: ImageRecord) -> None:
        with dbmod.transaction(self.db):
            self.db.execute("INSERT OR REPLACE INTO build_cache VALUES (?,?,?)", (key, image.id, time.time()))

    # ---- accounting -----------------------------------------------------------------------

    def layer_sizes(self) -> dict[str, int]:
        """The unpacked size of every layer, by chain id."""
        return dict(self.db.execute("SELECT chain_id, size FROM layers").fetchall())

    def disk_usage(self) -> dict[str, int]:
        layers = sum(r[0] for r in self.db.execute("SELECT COALESCE(SUM(size), 0) FROM layers"))
        blobs = 0
        for d in self.blobs.all():
            try:
                blobs += self.blobs.size(d)
            except FileNotFoundError:
                pass
        return {"layers": layers, "blobs": blobs}


_UNCHANGED = "WHERE id=? AND status=? AND pid=? AND pid_start=?"


def _unchanged(rec: ContainerRecord) -> tuple[str, str, int, int]:
    return rec.id, rec.status, rec.pid, rec.pid_start


def _familiar(name: str) -> str:
    try:
        return parse(name).familiar()
    except Exception:  # noqa: BLE001 - a stored name always parses; this only shortens it
        return name


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def _parse_time(value: object) -> float:
    """RFC 3339 with up to nanoseconds (Go writes 9 digits; Python parses 6)."""
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        return 0.0
    from datetime import datetime

    base, frac, tz = m.groups()
    tz = "+00:00" if tz in (None, "Z") else tz
    return datetime.fromisoformat(f"{base}.{(frac or '0')[:6]:0<6}{tz}").timestamp()
