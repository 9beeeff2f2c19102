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
from collections.abc import Mapping, Sequence


def step_key(parent: str, instruction: Sequence[str], args: Mapping[str, str], content: str = "") -> str:
    doc = json.dumps([parent, list(instruction), sorted(args.items()), content], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()
