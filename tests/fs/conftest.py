"""Fixtures of the overlay semantic suite: every case runs on ours, the kernel's and fuse-overlayfs."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# check_upper and friends assert in the harness: show their operands as in the tests.
pytest.register_assert_rewrite("tests.fs.harness")

from tests.fs.harness import IMPLS, MAPPING, Overlay, Tree, Worker, check_daemon_log


def skip_unless_installed(impl: str) -> None:
    if impl == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs is not installed")


needs_subuid = pytest.mark.skipif(MAPPING.mode != "subuid",
                                  reason="needs a subordinate id range in /etc/subuid (other owners)")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    skip_unless_installed(request.param)
    bug = request.node.get_closest_marker("fuse_overlayfs_bug")
    if bug is not None and request.param == "fuse-overlayfs":
        # The peer is a reference, not the subject: its known bugs are recorded, and strict, so a
        # fixed fuse-overlayfs makes the case fail until the mark goes.
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"fuse-overlayfs 1.10: {bug.args[0]}"))
    return str(request.param)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path / "ws")
    try:
        yield w
    finally:
        w.close()


MakeOverlay = Callable[..., Overlay]


@pytest.fixture
def make_overlay(impl: str, worker: Worker, tmp_path: Path) -> Iterator[MakeOverlay]:
    """make_overlay([topmost lower, ..., lowest], upper=None) -> the mounted Overlay. After the
    test, a bug our daemon logged fails it, whatever the test saw of the EIO it answered."""
    made: list[Overlay] = []

    def make(lowers: list[Tree], upper: Tree | None = None) -> Overlay:
        made.append(Overlay(worker, impl, tmp_path / "ws" / str(len(made) + 1), lowers, upper))
        return made[-1]

    yield make
    for ov in made:
        if worker.sock is not None:
            worker.call(check_daemon_log, ov.mnt)
