"""Container paths resolve inside the container's root, whatever symlinks the image holds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rootless.errors import RlError
from rootless.runtime.paths import make_target, secure_join


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


def test_make_target_creates_inside_only(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "escape")
    path = make_target(str(root), "/escape/data", True)
    assert path == str(root / str(outside).lstrip("/") / "data")
    assert os.path.isdir(path) and list(outside.iterdir()) == []
    f = make_target(str(root), "/abs/hostname", False)
    assert f == str(root / "etc" / "hostname") and os.path.isfile(f)
