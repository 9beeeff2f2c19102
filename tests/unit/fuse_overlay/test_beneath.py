"""The descriptor walk of fuse_overlay.beneath (issue 11, finding 1): a path below a layer's
root never crosses a symlink nor leaves the root, with openat2 and with the O_NOFOLLOW walk
used where the kernel lacks it."""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuse_overlay import beneath


@pytest.fixture(params=["openat2", "walk"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        # What a kernel before 5.6 leaves: the component-by-component walk.
        monkeypatch.setattr(beneath, "_has_openat2", False)
    return str(request.param)


@pytest.fixture
def layer(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A layer's root (descriptor and path) and, beside it, the host it must never reach."""
    root, host = tmp_path / "layer", tmp_path / "host"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("in the layer")
    host.mkdir()
    (host / "f").write_text("on the host")
    (root / "to-host").symlink_to(host)
    (root / "relative-out").symlink_to("../host")
    (root / "d" / "link").symlink_to("f")
    fd = beneath.open_root(str(root))
    yield fd, root, host
    os.close(fd)


def _errno(fn: object, *args: object) -> int:
    try:
        os.close(fn(*args))  # type: ignore[operator]
    except OSError as e:
        return e.errno or -1
    return 0


def test_a_path_below_the_root_opens(walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, _, _ = layer
    fd = beneath.open_in(root_fd, "/d/f", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"in the layer"
    finally:
        os.close(fd)
    with beneath.opened(root_fd, "") as fd:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)


@pytest.mark.parametrize("path", ["/to-host/f", "/relative-out/f", "/../host/f", "/d/../../host/f"])
def test_nothing_outside_the_root_is_reached(walk: str, layer: tuple[int, Path, Path],
                                             path: str) -> None:
    root_fd, _, _ = layer
    assert _errno(beneath.open_in, root_fd, path, os.O_RDONLY) in (errno.ENOENT, errno.ELOOP)
    with pytest.raises(OSError):
        beneath.lstat(root_fd, path)


def test_a_final_symlink_is_the_link_itself(walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, _, _ = layer
    assert stat.S_ISLNK(beneath.lstat(root_fd, "/to-host").st_mode)
    with beneath.opened(root_fd, "/d/link") as fd:
        assert os.readlink("", dir_fd=fd) == "f"
    assert _errno(beneath.open_in, root_fd, "/d/link", os.O_RDONLY) == errno.ELOOP


def test_parent_gives_the_directory_and_the_name(walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, root, _ = layer
    with beneath.parent(root_fd, "/d/new") as (dir_fd, name):
        assert name == "new"
        os.mkdir(name, dir_fd=dir_fd)
    assert (root / "d" / "new").is_dir()
    with pytest.raises(OSError) as e, beneath.parent(root_fd, "/to-host/new"):
        pass
    assert e.value.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


def test_the_proc_path_reaches_the_file_and_not_a_link_target(
        walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, root, _ = layer
    with beneath.opened(root_fd, "/d/f") as fd:
        os.setxattr(beneath.proc(fd), "user.t", b"1")
    assert os.getxattr(root / "d" / "f", "user.t") == b"1"
    with beneath.opened(root_fd, "/d/link") as fd:
        with pytest.raises(OSError):
            os.getxattr(beneath.proc(fd), "user.t")


def _deep(root_fd: int, depth: int) -> str:
    """Directories `depth` levels of 200-byte names below the root; the path of the last."""
    names = [chr(ord("a") + i % 26) * 200 for i in range(depth)]
    fd = os.dup(root_fd)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, beneath.DIR_PATH, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return "/" + "/".join(names)


def test_a_path_longer_than_path_max_opens_in_pieces(walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, _, _ = layer
    deep = _deep(root_fd, 30)  # 6030 bytes: no single system call takes it
    with beneath.parent(root_fd, deep + "/f") as (dir_fd, name):
        with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=dir_fd), "w") as f:
            f.write("deep")
    fd = beneath.open_in(root_fd, deep + "/f", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"deep"
    finally:
        os.close(fd)


def test_a_symlink_past_path_max_leads_nowhere(walk: str, layer: tuple[int, Path, Path]) -> None:
    root_fd, _, host = layer
    deep = _deep(root_fd, 30)
    with beneath.parent(root_fd, deep + "/out") as (dir_fd, name):
        os.symlink(str(host), name, dir_fd=dir_fd)
    assert _errno(beneath.open_in, root_fd, deep + "/out/f", os.O_RDONLY) in (errno.ENOENT, errno.ELOOP)
    # A symlink where the pieces join: the end of the first one.
    first = deep[: deep.rindex("/", 0, beneath.PATH_MAX)]
    with beneath.parent(root_fd, first) as (dir_fd, name):
        os.rename(name, "moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.symlink(str(host), name, dir_fd=dir_fd)
    assert _errno(beneath.open_in, root_fd, deep + "/f", os.O_RDONLY) in (
        errno.ENOENT, errno.ELOOP, errno.ENOTDIR)
