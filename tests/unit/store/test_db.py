"""Opening a store made by an older rl upgrades it in place."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from rootless.store import db


def test_schema_1_store_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "rl.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE images (id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created REAL NOT NULL, "
                "added REAL NOT NULL)")
    old.execute("INSERT INTO images VALUES ('sha256:x', 'sha256:y', 1.0, 2.0)")
    old.execute("CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, image_id TEXT NOT NULL, "
                "created REAL NOT NULL, state TEXT NOT NULL, config TEXT NOT NULL)")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    conn = db.connect(path)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(containers)")]
    assert "status" in cols and "spec" in cols
    assert conn.execute("SELECT id FROM images").fetchall() == [("sha256:x",)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
