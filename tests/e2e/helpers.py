"""Helpers that several e2e test modules share: a terminal to run rl in, a container kept running
in the foreground, and archives with chosen owners."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
from pathlib import Path

from tests.conftest import Rl, wait_for



# pid 1 leaves on SIGTERM, which `rl run` forwards: the test can stop it cleanly.
WAITING = "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"


def start_container(rl: Rl, driver: str | None, name: str, *run_args: str,
                    script: str = WAITING) -> subprocess.Popen[bytes]:
    """A foreground `rl run` in the background (on `driver`, or rl's default one), returned once
    `rl exec` can enter it."""
    chosen = ("--storage-driver", driver) if driver else ()
    p = rl.popen(*chosen, "run", "--name", name, *run_args, "busybox", "sh", "-c", script,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    if p.stdout.readline() != b"ready\n":
        p.kill()
        raise AssertionError(f"rl run failed: {p.stderr.read().decode(errors='replace')}")
    wait_for(lambda: rl("exec", name, "true", check=False).code == 0, 60, f"rl exec to enter {name}")
    return p


def stop_container(rl: Rl, p: subprocess.Popen[bytes], name: str) -> None:
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    rl("rm", name)


def run_in_terminal(rl: Rl, args: list[str], keys: tuple[bytes, ...] = (), size: tuple[int, int] = (33, 111),
                    resize: tuple[int, int] | None = None) -> tuple[bytes, int]:
    """Run `rl ARGS` with a real terminal of the given size as its stdio, typing keys a little apart
    (and resizing the terminal before the last), and return what the terminal showed and the code."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve(sys.executable, [sys.executable, "-m", "rootless", *args], rl.env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    shown = b""

    def read_for(seconds: float) -> bool:
        nonlocal shown
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: rl exited and closed the terminal
                    return False
                if not data:
                    return False
                shown += data
        return True

    for i, key in enumerate(keys):
        read_for(1.0)
        if resize and i == len(keys) - 1:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *resize, 0, 0))
            os.kill(pid, signal.SIGWINCH)  # what the terminal sends its foreground group
            read_for(0.3)
        os.write(fd, key)
    while read_for(0.5):
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    
    return shown, os.waitstatus_to_exitcode(status)


def make_archive(path: Path, entries: list[tuple[str, bytes, int, int, int, str]]) -> None:
    """A gzipped tar of (name, type, mode, uid, gid, content) entries."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, uid, gid, content in entries:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1700000000
            ti.uname = ti.gname = "someone"  # ids count, never names (as Docker)
            ti.size = len(content) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(content.encode()) if kind == tarfile.REGTYPE else None)


# A name longer than the 100 bytes of a plain tar header.
LONG = "static/" + "n" * 120
