"""rl build's layer cache: each step's result is an image in the store, found by the step's key.

The key holds everything that decides what the step makes: the image it starts from (its id
covers the layers and the config: ENV, USER, WORKDIR, SHELL...), the instruction as expanded,
the build args in scope, and for COPY/ADD the content hash of the sources. So a hit is never
stale, and nothing that does not change the result (mtimes, the context's location, a new shell)
makes a miss.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence

from rootless.errors import ImageNotFound
from rootless.store import db as dbmod
from rootless.store.records import ImageRecord
from rootless.store.store import Store


def step_key(parent: str, instruction: Sequence[str], args: Mapping[str, str], content: str = "") -> str:
    doc = json.dumps([parent, list(instruction), sorted(args.items()), content], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


def lookup(store: Store, key: str) -> ImageRecord | None:
    row = store.db.execute("SELECT image_id FROM build_cache WHERE key=?", (key,)).fetchone()
    if row is None:
        return None
    try:
        image = store.image(row[0])
    except ImageNotFound:  # pruned meanwhile: a miss, never a failure
        return None
    # A layer removed by hand (or a crash mid-GC) must make a miss, not a broken image.
    if not all(store.layers.has(c) for c in image.chain_ids):
        return None
    return image


def remember(store: Store, key: str, image: ImageRecord) -> None:
    with dbmod.transaction(store.db):
        store.db.execute("INSERT OR REPLACE INTO build_cache VALUES (?,?,?)", (key, image.id, time.time()))
