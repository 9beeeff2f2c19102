"""Random operations on our overlay and on the kernel overlay side by side: the same errno for
every step and the same tree after it, and after remounts."""
from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.fs.conftest import skip_unless_installed
from tests.fs.harness import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    WHITEOUT,
    Dir,
    Entry,
    File,
    Mnt,
    Node,
    Tree,
    Worker,
    mount,
    prepare,
    renameat2,
    snapshot,
    umount,
)

NAMES = ("a", "b", "f")
PATHS = sorted("/".join(p) for depth in (1, 2, 3) for p in itertools.product(NAMES, repeat=depth))
IMPLS = ("kernel", "ours")

paths = st.sampled_from(PATHS)
data = st.binary(max_size=64)
entries: st.SearchStrategy[Entry] = st.one_of(st.builds(File, data=data, mode=st.sampled_from([0o644, 0o600, 0o755])),
                                               st.builds(Dir, mode=st.sampled_from([0o755, 0o700])))


def _layer(assigned: dict[str, Entry], whiteouts: bool) -> Tree:
    """A consistent layer from random assignments: an entry under a file is dropped, missing
    parents become directories. The top layer may also hold whiteouts."""
    tree: dict[str, Entry] = {}
    for path in sorted(assigned, key=lambda p: p.count("/")):
        ancestors = [path.rsplit("/", n)[0] for n in range(1, path.count("/") + 1)]
        if any(not isinstance(tree.get(a, Dir()), Dir) for a in ancestors):
            continue
        e = assigned[path]
        if whiteouts and isinstance(e, File) and e.data == b"wh":
            e = WHITEOUT
        tree[path] = e
    return tree


layers = st.tuples(st.dictionaries(paths, entries, max_size=10), st.dictionaries(paths, entries, max_size=10))


# --- run in the worker: one operation on every mount, the errnos and the trees it leaves ---------

def _apply(mounts: list[Mnt], op: str, *args: object) -> tuple[list[int], list[dict[str, Node]]]:
    codes = []
    for m in mounts:
        try:
            _OPS[op](m.merged, *args)
            codes.append(0)
        except OSError as e:
            codes.append(e.errno or -1)
    return codes, [snapshot(m.merged) for m in mounts]


def _create(root: str, path: str, content: bytes) -> None:
    fd = os.open(os.path.join(root, path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def _write(root: str, path: str, offset: int, content: bytes) -> None:
    fd = os.open(os.path.join(root, path), os.O_WRONLY)
    try:
        os.pwrite(fd, content, offset)
    finally:
        os.close(fd)


_OPS = {
    "create": _create,
    "write": _write,
    "truncate": lambda root, path, size: os.truncate(os.path.join(root, path), size),
    "rename": lambda root, src, dst: os.rename(os.path.join(root, src), os.path.join(root, dst)),
    "unlink": lambda root, path: os.unlink(os.path.join(root, path)),
    "mkdir": lambda root, path: os.mkdir(os.path.join(root, path)),
    "rmdir": lambda root, path: os.rmdir(os.path.join(root, path)),
    "link": lambda root, src, dst: os.link(os.path.join(root, src), os.path.join(root, dst)),
    "chmod": lambda root, path, mode: os.chmod(os.path.join(root, path), mode),
    "symlink": lambda root, target, path: os.symlink(target, os.path.join(root, path)),
    "renameat2": lambda root, src, dst, flags: renameat2(os.path.join(root, src), os.path.join(root, dst), flags),
}


def _setup(root: str, lowers: list[Tree]) -> list[Mnt]:
    mounts = []
    for impl in IMPLS:
        base = os.path.join(root, impl)
        prepare(base, lowers, None)
        m = Mnt(impl, tuple(os.path.join(base, f"lower{i}") for i in range(len(lowers))),
                os.path.join(base, "upper"), os.path.join(base, "work"), os.path.join(base, "merged"))
        mount(m)
        mounts.append(m)
    return mounts


def _remount_all(mounts: list[Mnt]) -> list[dict[str, Node]]:
    for m in mounts:
        umount(m)
        mount(m)
    return [snapshot(m.merged) for m in mounts]


def _unmount_all(mounts: list[Mnt]) -> None:
    for m in mounts:
        umount(m)


# --- the machine ---------------------------------------------------------------------------------

class OverlayMachine(RuleBasedStateMachine):
    worker: Worker
    workspace: Path
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.mounts: list[Mnt] = []
        self.remounted = False

    @initialize(lowers=layers)
    def mount_both(self, lowers: tuple[dict[str, Entry], dict[str, Entry]]) -> None:
        trees = [_layer(lowers[0], whiteouts=True), _layer(lowers[1], whiteouts=False)]
        root = str(self.workspace / str(next(self.counter)))
        self.mounts = self.worker.call(_setup, root, trees)

    def _step(self, op: str, *args: object) -> None:
        codes, trees = self.worker.call(_apply, self.mounts, op, *args)
        names = {c: errno.errorcode.get(c, str(c)) for c in codes}
        assert codes[0] == codes[1], f"{op}{args}: kernel {names[codes[0]]}, ours {names[codes[1]]}"
        assert trees[0] == trees[1], f"after {op}{args}"

    @rule(path=paths, content=data)
    def create(self, path: str, content: bytes) -> None:
        self._step("create", path, content)

    @rule(path=paths, offset=st.integers(0, 100), content=data)
    def write(self, path: str, offset: int, content: bytes) -> None:
        self._step("write", path, offset, content)

    @rule(path=paths, size=st.integers(0, 100))
    def truncate(self, path: str, size: int) -> None:
        self._step("truncate", path, size)

    @rule(src=paths, dst=paths)
    def rename(self, src: str, dst: str) -> None:
        self._step("rename", src, dst)

    @rule(path=paths)
    def unlink(self, path: str) -> None:
        self._step("unlink", path)

    @rule(path=paths)
    def mkdir(self, path: str) -> None:
        self._step("mkdir", path)

    @rule(path=paths)
    def rmdir(self, path: str) -> None:
        self._step("rmdir", path)

    @rule(src=paths, dst=paths)
    def link(self, src: str, dst: str) -> None:
        self._step("link", src, dst)

    @rule(path=paths, mode=st.sampled_from([0o600, 0o644, 0o755, 0o700, 0o4755, 0o000]))
    def chmod(self, path: str, mode: int) -> None:
        self._step("chmod", path, mode)

    @rule(link_target=paths, path=paths)
    def symlink(self, link_target: str, path: str) -> None:
        self._step("symlink", link_target, path)

    @rule(src=paths, dst=paths, flags=st.sampled_from([RENAME_NOREPLACE, RENAME_EXCHANGE]))
    def renameat2(self, src: str, dst: str, flags: int) -> None:
        self._step("renameat2", src, dst, flags)

    # Once per example at most: a remount costs more than all the other steps together.
    @precondition(lambda self: not self.remounted)
    @rule()
    def remount(self) -> None:
        self.remounted = True
        trees = self.worker.call(_remount_all, self.mounts)
        assert trees[0] == trees[1], "after remounting"

    def teardown(self) -> None:
        if not self.mounts:
            return
        try:
            trees = self.worker.call(_remount_all, self.mounts)
            assert trees[0] == trees[1], "after remounting"
        finally:
            self.worker.call(_unmount_all, self.mounts)


def test_ours_matches_the_kernel_overlay(worker: Worker, tmp_path: Path) -> None:
    skip_unless_installed("ours")
    OverlayMachine.worker = worker
    OverlayMachine.workspace = tmp_path / "ws"
    run_state_machine_as_test(OverlayMachine, settings=settings(
        max_examples=30, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


pytestmark = pytest.mark.timeout(600)
