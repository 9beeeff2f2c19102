"""Single-id mode (`xattr_permissions=2`): owners and modes live in `user.containers.override_stat`,
so one host id can hold the files of every owner of an image."""
from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fuse_overlay
from fuse_overlay import upperfmt

REPO = Path(__file__).resolve().parents[2]
OVERRIDE = upperfmt.OVERRIDE_XATTR

pytestmark = pytest.mark.skipif(shutil.which("fusermount3") is None, reason="needs fusermount3")


@dataclass(frozen=True)
class Layers:
    lower: Path
    upper: Path
    work: Path
    merged: Path


@pytest.fixture
def layers(tmp_path: Path) -> Layers:
    d = Layers(*(tmp_path / n for n in ("lower", "upper", "work", "merged")))
    for p in (d.lower, d.upper, d.work, d.merged):
        p.mkdir()
    (d.lower / "etc").mkdir()
    shadow = d.lower / "etc" / "shadow"
    shadow.write_text("root:*:19000::::::\n")
    shadow.chmod(0o644)
    os.setxattr(shadow, OVERRIDE, b"0:42:0640")
    (d.lower / "plain").write_text("no override\n")
    # A file of ours in another group: the host user may chmod it through the mount.
    mine = d.lower / "mine"
    mine.write_text("mine\n")
    mine.chmod(0o644)
    os.setxattr(mine, OVERRIDE, f"{os.getuid()}:42:0640".encode())
    return d


@pytest.fixture
def single_id(layers: Layers) -> Iterator[Layers]:
    """The overlay in single-id mode, mounted on the host, where ids pass through unchanged."""
    handle = fuse_overlay.mount([str(layers.lower)], str(layers.upper), str(layers.work),
                                str(layers.merged), options=["xattr_permissions=2"])
    try:
        yield layers
    finally:
        handle.unmount(timeout=30)


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_a_lower_file_shows_the_owner_and_mode_of_its_xattr(single_id: Layers) -> None:
    assert owner_mode(single_id.merged / "etc" / "shadow") == (0, 42, 0o640)
    me = (os.getuid(), os.getgid())
    assert owner_mode(single_id.merged / "plain")[:2] == me
    assert owner_mode(single_id.lower / "etc" / "shadow") == (*me, 0o644)


def test_chmod_is_recorded_in_the_xattr_and_keeps_the_owner(single_id: Layers) -> None:
    os.chmod(single_id.merged / "mine", 0o600)
    assert owner_mode(single_id.merged / "mine") == (os.getuid(), 42, 0o600)
    upper = single_id.upper / "mine"
    value = upperfmt.decode_override(os.getxattr(upper, OVERRIDE))
    assert (value.uid, value.gid, value.perms) == (os.getuid(), 42, 0o600)
    # The real file stays readable by the one host id that serves every owner.
    assert stat.S_IMODE(os.lstat(upper).st_mode) == 0o644
    assert upper.read_text() == "mine\n"


def test_chmod_of_a_file_without_xattr_records_its_real_owner(single_id: Layers) -> None:
    os.chmod(single_id.merged / "plain", 0o4755)
    value = upperfmt.decode_override(os.getxattr(single_id.upper / "plain", OVERRIDE))
    assert (value.uid, value.gid, value.perms) == (os.getuid(), os.getgid(), 0o4755)
    assert owner_mode(single_id.merged / "plain")[2] == 0o4755


def test_the_xattr_is_neither_visible_nor_writable_through_the_mount(single_id: Layers) -> None:
    mine = single_id.merged / "mine"
    assert OVERRIDE not in os.listxattr(mine)
    for call in (lambda: os.getxattr(mine, OVERRIDE),
                 lambda: os.setxattr(mine, OVERRIDE, b"0:0:0777")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EOPNOTSUPP
    assert owner_mode(mine) == (os.getuid(), 42, 0o640)


def test_files_of_the_daemons_own_user_get_no_xattr(single_id: Layers) -> None:
    (single_id.merged / "new").write_text("x")
    os.mkdir(single_id.merged / "newdir")
    os.mkfifo(single_id.merged / "fifo")
    for name in ("new", "newdir", "fifo"):
        assert OVERRIDE not in os.listxattr(single_id.upper / name)


def test_without_the_option_the_xattr_is_ignored(layers: Layers) -> None:
    handle = fuse_overlay.mount([str(layers.lower)], str(layers.upper), str(layers.work),
                                str(layers.merged))
    try:
        assert owner_mode(layers.merged / "etc" / "shadow") == (os.getuid(), os.getgid(), 0o644)
    finally:
        handle.unmount(timeout=30)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_root_of_a_single_id_namespace_chowns_into_the_xattr(layers: Layers) -> None:
    """The runtime's single-id mode: uid 0 inside is the user outside. gid 42 has no mapping,
    so the kernel shows it as the overflow id, and a chown to root is kept in the xattr."""
    m = layers.merged
    script = (f"{sys.executable} -m fuse_overlay -o lowerdir={layers.lower},upperdir={layers.upper},"
              f"workdir={layers.work},xattr_permissions=2 {m} && "
              f"stat -c %u:%g:%a {m}/etc/shadow && chown 0:0 {m}/etc/shadow && "
              f"stat -c %u:%g:%a {m}/etc/shadow && cat {m}/etc/shadow && umount {m}")
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0:65534:640", "0:0:640", "root:*:19000::::::"]
    value = upperfmt.decode_override(os.getxattr(layers.upper / "etc" / "shadow", OVERRIDE))
    assert (value.uid, value.gid, value.perms) == (0, 0, 0o640)
