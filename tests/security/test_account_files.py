"""Finding 7 of the isolation audit: `rl exec` hangs on a hostile /etc/passwd.

rl reads the container's /etc/passwd and /etc/group to resolve `-u NAME`, in the container's
mount namespace, with a plain open: a container that makes /etc/passwd a FIFO hung `rl exec -u`
and `rl run -u` for ever, /dev/zero ate rl's memory, a symlink was followed. While it hung, a
container with CAP_SYS_PTRACE read the caller's host environment from /proc/PID/environ of the
joining process. Now such files are refused with one line (exit 125, rl's own error) at once,
and the joining process is not dumpable until its exec.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Rl
from tests.security.leaks import SECRET, WATCHER, errors

PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
GROUP = "root:x:0:\ndaemon:x:1:\n"
HOST_PASSWD = "daemon:x:4242:4242:host:/host-home:/bin/sh\n"


def _etc(tmp_path: Path) -> Path:
    """A directory bind-mounted on the container's /etc: the test plays the container's part in it."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (tmp_path / "host-passwd").write_text(HOST_PASSWD)
    return etc


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with open(path, "a") as f:
        f.truncate(64 << 20)  # sparse: costs no disk


def _host_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent.parent / "host-passwd")


ATTACKS: dict[str, Callable[[Path], None]] = {"fifo": _fifo, "dev-zero": _dev_zero, "huge": _huge,
                                              "host-symlink": _host_link}


def _assert_refused(r: subprocess.CompletedProcess[bytes], name: str) -> None:
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 125 and len(errors(err)) == 1 and f"/etc/{name}" in err, (r.returncode, err)
    assert b"4242" not in r.stdout, "rl read the host's file through the container's symlink"


def _rl(rl: Rl, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """rl ARGS; a hang fails the test by the timeout, rl killed."""
    return subprocess.run([sys.executable, "-m", "rootless", *args], capture_output=True,
                          env={**rl.env, **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("name", ["passwd", "group"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_run_refuses_hostile_account_files(rl: Rl, busybox: str, tmp_path: Path, attack: str, name: str) -> None:
    etc = _etc(tmp_path)
    ATTACKS[attack](etc / name)
    user = "daemon" if name == "passwd" else "root:daemon"
    _assert_refused(_rl(rl, "run", "--rm", "-v", f"{etc}:/etc", "-u", user, "busybox", "id", "-u"), name)
    assert (tmp_path / "host-passwd").read_text() == HOST_PASSWD


@pytest.fixture
def watched(rl: Rl, busybox: str, tmp_path: Path) -> Iterator[Path]:
    """A container with CAP_SYS_PTRACE watching rl's processes (see WATCHER), its /etc the
    directory returned."""
    etc = _etc(tmp_path)
    rl("run", "-d", "--name", "watch", "--cap-add", "SYS_PTRACE", "-v", f"{etc}:/etc", "busybox", "sh", "-c",
       WATCHER, "sh", "/etc/watch.log")
    yield etc
    rl("rm", "-f", "watch")


@pytest.mark.parametrize("name", ["passwd", "group"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_exec_refuses_hostile_account_files(rl: Rl, watched: Path, tmp_path: Path, attack: str, name: str) -> None:
    ATTACKS[attack](watched / name)
    user = "daemon" if name == "passwd" else "root:daemon"
    _assert_refused(_rl(rl, "exec", "-u", user, "watch", "id", "-u"), name)
    assert (tmp_path / "host-passwd").read_text() == HOST_PASSWD


def test_joining_process_keeps_the_host_environment_from_the_container(rl: Rl, watched: Path) -> None:
    """The container stops each joining `rl exec` it sees and reads its /proc/PID/environ: with
    the FIFO, the old rl waited there for ever; now the joining process is not dumpable."""
    _fifo(watched / "passwd")
    caught = 0
    deadline = time.monotonic() + 120
    while caught < 3 and time.monotonic() < deadline:
        p = subprocess.Popen([sys.executable, "-m", "rootless", "exec", "-u", "daemon", "watch", "true"],
                             env={**rl.env, **SECRET}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log = (watched / "watch.log").read_text().splitlines()  # rl exec is refused now, as it should
        assert not [line for line in log if line.startswith(("environ", "exe", "fd-link"))], log
        assert p.returncode == 125, "rl exec hung on the FIFO"
        caught = sum(line.startswith("caught") for line in log)
    assert caught >= 1, "the container never caught a joining process: the test proved nothing"
