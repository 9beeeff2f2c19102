"""Issue 11, finding 1: the FUSE overlay followed the container's symlinks on the host.

A deleted node kept its parent and name, and the daemon reached it again by that path: after the
container replaced the directory by a symlink to the host, a reopen of the deleted file (through
/proc/self/fd), an xattr call on its descriptor or a copy-up of it went out of the upper layer.
Each case here makes such a swap directly on the mount, with `outside` standing for the host: it
must come out unchanged, and nothing of it may be read through the mount. The kernel overlay is
the reference that is never fooled.
"""
from __future__ import annotations

import os

import pytest

from tests.fs.conftest import MakeOverlay
from tests.fs.harness import File

pytestmark = pytest.mark.parametrize("impl", ["ours", "kernel"])

PRECIOUS = b"precious host data\n"


def _outside(base: str) -> str:
    """The host directory of a case, with its victims: a file `victim` and a directory `d`."""
    outside = os.path.join(os.path.dirname(base), "outside")
    os.makedirs(os.path.join(outside, "d"), exist_ok=True)
    with open(os.path.join(outside, "victim"), "wb") as f:
        f.write(PRECIOUS)
    os.setxattr(os.path.join(outside, "victim"), "user.secret", b"host")
    return outside


HostState = tuple[bytes, int, list[str], list[str]]


def _host_state(outside: str) -> HostState:
    victim = os.path.join(outside, "victim")
    with open(victim, "rb") as f:
        data = f.read()
    return (data, os.stat(victim).st_mode, sorted(os.listxattr(victim)),
            sorted(os.listxattr(os.path.join(outside, "d"))))


def _held_then_swapped(merged: str, size: int = 0) -> tuple[int, str]:
    """/x/victim opened, removed with /x, and /x made a symlink to the host: the open
    descriptor and the host directory."""
    outside = _outside(merged)
    os.mkdir(f"{merged}/x")
    with open(f"{merged}/x/victim", "wb") as f:
        f.truncate(size)
    fd = os.open(f"{merged}/x/victim", os.O_RDONLY)
    os.unlink(f"{merged}/x/victim")
    os.rmdir(f"{merged}/x")
    os.symlink(outside, f"{merged}/x")
    return fd, outside


def _attempt(fn: object, *args: object) -> object:
    """fn(*args), or the errno it failed with: either is fine, the host state is what counts."""
    try:
        return fn(*args)  # type: ignore[operator]
    except OSError as e:
        return e.errno


def _write_through_reopen(merged: str) -> tuple[HostState, HostState]:
    fd, outside = _held_then_swapped(merged)
    before = _host_state(outside)
    reopened = _attempt(os.open, f"/proc/self/fd/{fd}", os.O_WRONLY)
    if isinstance(reopened, int) and reopened > 2 and reopened != fd:
        os.write(reopened, b"PWNED\n")
        os.close(reopened)
    _attempt(os.open, f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    return before, _host_state(outside)


def _read_through_reopen(merged: str) -> bytes:
    fd, _ = _held_then_swapped(merged, size=4096)
    try:
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return f.read()
    except OSError:
        return b""
    finally:
        os.close(fd)


def _attrs_through_descriptor(merged: str) -> tuple[object, HostState, HostState]:
    """xattrs, mode and times of the deleted file, by its descriptor and its /proc path."""
    fd, outside = _held_then_swapped(merged)
    before = _host_state(outside)
    proc = f"/proc/self/fd/{fd}"
    seen = _attempt(os.getxattr, fd, "user.secret")
    _attempt(os.setxattr, fd, "user.pwned", b"1")
    _attempt(os.setxattr, proc, "user.pwned2", b"1")
    _attempt(os.chmod, proc, 0o777)
    _attempt(os.utime, proc, (0, 0))
    _attempt(os.truncate, proc, 0)
    os.close(fd)
    return seen, before, _host_state(outside)


def _deleted_directory(merged: str) -> tuple[HostState, HostState]:
    """/a/d held open, removed with /a, and /a made a symlink to the host, which has a `d`."""
    outside = _outside(merged)
    os.makedirs(f"{merged}/a/d")
    dfd = os.open(f"{merged}/a/d", os.O_RDONLY | os.O_DIRECTORY)
    os.rmdir(f"{merged}/a/d")
    os.rmdir(f"{merged}/a")
    os.symlink(outside, f"{merged}/a")
    before = _host_state(outside)
    _attempt(os.setxattr, dfd, "user.pwned", b"1")
    _attempt(os.chmod, dfd, 0o700)
    os.close(dfd)
    return before, _host_state(outside)


def _lower_file_copied_up(merged: str) -> tuple[HostState, HostState]:
    """A file of the image (lower layer) held open, removed, its directory replaced by a
    symlink to the host, then opened for writing: a copy-up of it went through the symlink."""
    outside = _outside(merged)
    fd = os.open(f"{merged}/x/victim", os.O_RDONLY)
    os.unlink(f"{merged}/x/victim")
    os.rmdir(f"{merged}/x")
    os.symlink(outside, f"{merged}/x")
    before = _host_state(outside)
    reopened = _attempt(os.open, f"/proc/self/fd/{fd}", os.O_WRONLY)
    if isinstance(reopened, int) and reopened > 2 and reopened != fd:
        os.write(reopened, b"PWNED\n")
        os.close(reopened)
    _attempt(os.setxattr, fd, "user.pwned", b"1")
    os.close(fd)
    return before, _host_state(outside)


def test_a_reopened_deleted_file_never_writes_the_host(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{}])
    before, after = ov(_write_through_reopen, ov.p())
    assert after == before and after[0] == PRECIOUS


def test_a_reopened_deleted_file_never_reads_the_host(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{}])
    data = ov(_read_through_reopen, ov.p())
    assert PRECIOUS not in data
    assert data in (b"", bytes(4096))


def test_xattrs_and_attributes_of_a_deleted_file_stay_in_the_overlay(
        make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{}])
    seen, before, after = ov(_attrs_through_descriptor, ov.p())
    assert seen != b"host"
    assert after == before


def test_a_deleted_directory_never_leads_to_the_host(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{}])
    before, after = ov(_deleted_directory, ov.p())
    assert after == before and after[3] == []


def test_a_deleted_lower_file_is_never_copied_up_to_the_host(make_overlay: MakeOverlay) -> None:
    ov = make_overlay([{"x/victim": File(b"from the image\n")}])
    before, after = ov(_lower_file_copied_up, ov.p())
    assert after == before and after[0] == PRECIOUS
