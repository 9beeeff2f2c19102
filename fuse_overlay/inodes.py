"""The inodes the kernel knows: a dentry-like tree of nodes with numbers stable for the mount.

An inode number is tied to the real file that backs an entry, keyed by (layer, st_dev, st_ino);
a copy-up registers the upper file under the number of the lower one, so a file keeps its number
when it moves to the upper layer, and hard links in the upper layer share one node.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Any

from fuse_overlay.merge import Found

ROOT_INO = 1

Key = tuple[int, int, int]


class Node:
    """One inode. `parent`/`name` is its primary name (any of them for a hard-linked file);
    `layers` is (layer,) for a non-directory and the merged layers of a directory. Once
    `deleted`, `parent`/`name` are stale: the real file is reached through `fd` only."""

    __slots__ = ("attrs", "deleted", "fd", "handles", "ino", "is_dir", "key", "layers", "links",
                 "lookups", "name", "parent")

    def __init__(self, ino: int, parent: Node | None, name: str, is_dir: bool,
                 layers: tuple[int, ...], key: Key | None) -> None:
        self.ino = ino
        self.parent = parent
        self.name = name
        self.is_dir = is_dir
        self.layers = layers
        self.lookups = 0
        # Every (parent ino, name) the kernel may reach a non-directory through.
        self.links: set[tuple[int, str]] = set() if parent is None else {(parent.ino, name)}
        # Open file handles on this node, for copy-up to move them to the upper file.
        self.handles: set[int] = set()
        self.key = key
        self.deleted = False
        # An O_PATH descriptor of the real file of a deleted node the kernel can still reach.
        self.fd: int | None = None
        # The reply attributes of a lower entry, built once (`fuse_overlay.ops` keeps it).
        self.attrs: Any = None

    @property
    def layer(self) -> int:
        return self.layers[0]

    def path(self) -> str:
        if self.parent is None:
            return ""
        return self.parent.path() + "/" + self.name

    def child_path(self, name: str) -> str:
        return self.path() + "/" + name

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Inodes:
    def __init__(self, root_layers: tuple[int, ...]) -> None:
        self.root = Node(ROOT_INO, None, "", True, root_layers, None)
        self.root.lookups = 1
        self.nodes: dict[int, Node] = {ROOT_INO: self.root}
        # Never shrinks while the real file lives, so a forgotten entry gets its number back.
        self._ino_of: dict[Key, int] = {}
        self._next = ROOT_INO + 1

    def get(self, ino: int) -> Node:
        """The node of a number the kernel sends: ESTALE for one we dropped (a bug elsewhere,
        or a forget that crossed the request)."""
        node = self.nodes.get(ino)
        if node is None:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        return node

    def node_for(self, parent: Node, name: str, found: Found) -> Node:
        """The node of `parent/name`, made or refreshed from what resolution found."""
        key = (found.layers[0], found.st.st_dev, found.st.st_ino)
        ino = self._ino_of.get(key)
        if ino is None:
            ino = self._next
            self._next += 1
            self._ino_of[key] = ino
        node = self.nodes.get(ino)
        is_dir = stat.S_ISDIR(found.st.st_mode)
        if node is None or node.is_dir != is_dir:
            if node is not None:
                node.close()
            node = Node(ino, parent, name, is_dir, found.layers, key)
            self.nodes[ino] = node
            return node
        node.layers = found.layers
        node.deleted = False
        node.close()
        if is_dir or node.parent is None:
            node.parent, node.name = parent, name
        if not is_dir:
            node.links.add((parent.ino, name))
        return node

    def register(self, node: Node, layer: int, st_dev: int, st_ino: int) -> None:
        """Record that `node` is now backed by this real file (after a copy-up). The file it
        leaves behind is no longer this node: another lower hard link of it becomes a node of
        its own, as copy-up breaks lower hard links in the kernel overlay too."""
        if node.key is not None:
            self._ino_of.pop(node.key, None)
        key = (layer, st_dev, st_ino)
        self._ino_of[key] = node.ino
        node.key = key

    def unlinked(self, node: Node, parent: Node, name: str, last: bool,
                 fd: int | None = None) -> None:
        """`parent/name` no longer leads to `node`; `last` when no name leads to it any more,
        and `fd` then the descriptor it keeps of its real file (closed with the node)."""
        node.links.discard((parent.ino, name))
        if not last:
            if fd is not None:
                os.close(fd)
            if node.parent is parent and node.name == name and node.links:
                pino, pname = next(iter(node.links))
                node.parent, node.name = self.nodes.get(pino, parent), pname
            return
        node.deleted = True
        node.close()
        node.fd = fd
        if node.key is not None:
            # The filesystem may give the real inode number to a new file.
            self._ino_of.pop(node.key, None)
            node.key = None
        self._maybe_drop(node)

    def renamed(self, node: Node, old_parent: Node, old_name: str, parent: Node, name: str) -> None:
        node.links.discard((old_parent.ino, old_name))
        if not node.is_dir:
            node.links.add((parent.ino, name))
        node.parent, node.name = parent, name

    def forget(self, ino: int, count: int) -> None:
        node = self.nodes.get(ino)
        if node is None or node is self.root:
            return
        node.lookups -= count
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        # Directories stay: their children point at them, and there are few of them. A deleted
        # directory goes once the kernel forgets it.
        if (node.lookups <= 0 and not node.handles and (not node.is_dir or node.deleted)
                and self.nodes.get(node.ino) is node):
            del self.nodes[node.ino]
            node.close()
