"""Issue 11, finding 1 (critical): the FUSE overlay followed the container's symlinks on the host.

A container opened /x/victim, removed it and /x, and made /x a symlink to a host directory; a
reopen of the deleted file through /proc/self/fd then made the daemon open upper/x/victim by
path, through that symlink: `echo PWNED > /proc/self/fd/3` overwrote the host's victim, and
`cat /proc/self/fd/3` read any host file the user could read. Root runs rl on this driver by
default, so there it was a host root compromise; a RUN step of `rl build` did the same, and a
file of a lower layer was copied up through the symlink into the host directory.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Rl

PRECIOUS = "precious host data\n"

# The container's side: /x/victim held open as fd 3, its names gone, /x a symlink to HOST.
_SWAP = "exec 3</x/victim && rm /x/victim && rmdir /x && ln -s {host} /x && {payload}"
_MAKE = "mkdir /x && touch /x/victim && truncate -s 4096 /x/victim"
_PAYLOADS = {
    "write": "echo PWNED > /proc/self/fd/3",
    "truncate": "truncate -s 0 /proc/self/fd/3",
    "read": "cat /proc/self/fd/3",
}


def _host(tmp_path: Path) -> Path:
    """The host directory the container points /x at, with its victim."""
    host = tmp_path / "home"
    host.mkdir()
    (host / "victim").write_text(PRECIOUS)
    return host


def _attack(rl: Rl, busybox: str, tmp_path: Path, payload: str) -> str:
    host = _host(tmp_path)
    script = _MAKE + " && " + _SWAP.format(host=host, payload=_PAYLOADS[payload])
    r = rl("--storage-driver", "fuse-overlay", "run", "--rm", "busybox", "sh", "-c", script,
           check=False)
    assert (host / "victim").read_text() == PRECIOUS, "the container wrote the host's file"
    assert sorted(p.name for p in host.iterdir()) == ["victim"]
    assert "precious" not in r.out, "the container read the host's file"
    return r.out


@pytest.mark.parametrize("payload", sorted(_PAYLOADS))
def test_a_deleted_file_reopened_through_proc_stays_in_the_container(
        rl: Rl, busybox: str, tmp_path: Path, payload: str) -> None:
    _attack(rl, busybox, tmp_path, payload)


@pytest.mark.single_id
@pytest.mark.parametrize("payload", ["write", "read"])
def test_the_same_in_single_id_mode(rl: Rl, busybox: str, tmp_path: Path, payload: str) -> None:
    _attack(rl, busybox, tmp_path, payload)


@pytest.mark.as_root
@pytest.mark.parametrize("payload", ["write", "read"])
def test_the_same_as_root(rl: Rl, busybox: str, tmp_path: Path, payload: str) -> None:
    """Root's rl runs on this driver by default: the victim stands for /root or /etc."""
    _attack(rl, busybox, tmp_path, payload)


def test_a_run_step_of_a_build_stays_in_the_container(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """A RUN step on the upper file, and one on a file of the layer below (an earlier step's),
    whose copy-up went through the symlink into the host directory."""
    host = _host(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN mkdir /x && echo from the image > /x/victim\n"
        f"RUN {_SWAP.format(host=host, payload=_PAYLOADS['write'])} || true\n"
        f"RUN rm /x && {_MAKE} && {_SWAP.format(host=host, payload=_PAYLOADS['write'])} || true\n")
    rl("--storage-driver", "fuse-overlay", "build", "-t", "escape:1", str(ctx))
    assert (host / "victim").read_text() == PRECIOUS, "the build wrote the host's file"
    assert sorted(p.name for p in host.iterdir()) == ["victim"]
