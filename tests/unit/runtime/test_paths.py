"""Container paths resolve inside the container's root, whatever symlinks the image holds."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.errors import RlError
from rootless.runtime import mountfd
from rootless.runtime.paths import secure_join


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr" / "lib").mkdir(parents=True)
    os.symlink("/etc", r / "abs")  # absolute: must mean the container's /etc
    os.symlink("../../../../..", r / "up")  # climbs: must stop at the root
    os.symlink("usr/lib", r / "lib")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return r


def test_plain_and_relative_links(root: Path) -> None:
    assert secure_join(str(root), "/etc/passwd") == str(root / "etc" / "passwd")
    assert secure_join(str(root), "lib/x") == str(root / "usr" / "lib" / "x")


def test_absolute_link_stays_inside(root: Path) -> None:
    assert secure_join(str(root), "/abs/hosts") == str(root / "etc" / "hosts")


def test_dotdot_and_climbing_links_stop_at_root(root: Path) -> None:
    assert secure_join(str(root), "/../../../etc") == str(root / "etc")
    assert secure_join(str(root), "/up/etc/shadow") == str(root / "etc" / "shadow")


def test_link_loops_are_an_error(root: Path) -> None:
    with pytest.raises(RlError, match="too many levels"):
        secure_join(str(root), "/loop1/x")


def _where(fd: int, root: Path) -> str:
    """The path fd stands for, relative to root ("" for root itself); closes fd."""
    try:
        st = os.fstat(fd)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in ["", *dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                sp = os.lstat(p)
                if (sp.st_dev, sp.st_ino) == (st.st_dev, st.st_ino):
                    return os.path.relpath(p, root)
        raise AssertionError("not under root")
    finally:
        os.close(fd)


@pytest.fixture
def root_fd(root: Path) -> Iterator[int]:
    fd = mountfd.open_root(str(root))
    yield fd
    os.close(fd)


def test_open_target_creates_inside_only(root: Path, root_fd: int, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "escape")
    created: list[str] = []
    fd = mountfd.open_target(root_fd, "/escape/data", True, created)
    assert _where(fd, root) == str(outside).lstrip("/") + "/data"
    assert created == [str(outside).lstrip("/") + "/data"] and list(outside.iterdir()) == []
    fd = mountfd.open_target(root_fd, "/abs/hostname", False, created)
    assert _where(fd, root) == "etc/hostname" and (root / "etc" / "hostname").is_file()
    assert created[-1] == "etc/hostname"


@pytest.mark.parametrize("target, where", [("/etc", "etc"), ("/lib", "usr/lib"), ("/up/etc", "etc"),
                                           ("/../../abs", "etc")])
def test_open_target_resolves_existing_and_missing_alike(root: Path, root_fd: int, target: str,
                                                         where: str) -> None:
    assert _where(mountfd.open_target(root_fd, target, True), root) == where  # openat2
    assert _where(mountfd.open_target(root_fd, target + "/new", True), root) == where + "/new"  # the walk


@pytest.mark.parametrize("target", ["/", "/up", "/abs/.."])
def test_open_target_refuses_the_root(root_fd: int, target: str) -> None:
    with pytest.raises(RlError, match="container's root directory"):
        mountfd.open_target(root_fd, target, True)


def test_open_target_link_loops_and_files_on_the_way(root: Path, root_fd: int) -> None:
    with pytest.raises(RlError, match="too many levels"):
        mountfd.open_target(root_fd, "/loop1/x", True)
    (root / "etc" / "f").write_text("")
    with pytest.raises(RlError, match="/etc/f is not a directory"):
        mountfd.open_target(root_fd, "/etc/f/x", True)


def test_real_dir_refuses_a_symlink(root: Path, root_fd: int) -> None:
    os.symlink("/", root / "proc")
    with pytest.raises(RlError, match="cannot mount on /proc"):
        mountfd.real_dir(root_fd, "proc")
    created: list[str] = []
    os.close(mountfd.real_dir(root_fd, "sys", created))
    assert created == ["sys"] and (root / "sys").is_dir()
