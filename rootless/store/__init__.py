"""The per-user image store: SQLite metadata, content-addressed blobs, unpacked layers."""
