"""The command line of `python -m fuse_overlay`: fuse-overlayfs's option names, clear refusals."""
from __future__ import annotations

import re

import pytest

from fuse_overlay.options import OptionsError, parse_args


def test_the_options_of_a_podman_style_command_line() -> None:
    c = parse_args(["-f", "-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,fsync=0,noacl",
                    "-o", "squash_to_uid=5,squash_to_gid=6,xattr_permissions=2", "/m"])
    assert c.lowerdirs == ("/l1", "/l2")
    assert (c.upperdir, c.workdir, c.mountpoint) == ("/u", "/w", "/m")
    assert c.foreground and not c.fsync and c.xattr_permissions
    assert (c.squash_uid, c.squash_gid) == (5, 6)


def test_squash_to_root_and_attached_o() -> None:
    c = parse_args(["-olowerdir=/l,upperdir=/u,workdir=/w,squash_to_root", "/m"])
    assert (c.squash_uid, c.squash_gid) == (0, 0)
    assert not c.foreground


def test_ro_needs_no_upper_and_ignores_one() -> None:
    c = parse_args(["-o", "lowerdir=/l,upperdir=/u,workdir=/w,ro", "/m"])
    assert c.read_only and c.upperdir is None and c.workdir is None


def test_ready_fd_and_debug() -> None:
    c = parse_args(["-d", "--ready-fd", "7", "-o", "lowerdir=/l,ro", "/m"])
    assert c.ready_fd == 7 and c.debug and c.foreground


@pytest.mark.parametrize(("argv", "says"), [
    (["-o", "lowerdir=/l,upperdir=/u,workdir=/w,bogus=1", "/m"], "'bogus=1'"),
    (["-o", "upperdir=/u,workdir=/w", "/m"], "lowerdir"),
    (["-o", "lowerdir=/l,upperdir=/u", "/m"], "workdir"),
    (["-o", "lowerdir=/l"], "MOUNTPOINT"),
    (["-o", "lowerdir=/l,ro", "/m", "/n"], "MOUNTPOINT"),
    (["-o", "lowerdir=/l,ro,squash_to_uid=x", "/m"], "squash_to_uid"),
    (["--ready-fd"], "--ready-fd"),
    (["-x", "/m"], "-x"),
])
def test_a_wrong_command_line_says_what_is_wrong(argv: list[str], says: str) -> None:
    with pytest.raises(OptionsError, match=re.escape(says)) as e:
        parse_args(argv)
    assert "\n" not in str(e.value)
