"""runc's CVE-2019-5736: the container opens the runtime's binary through /proc/PID/exe.

runc's joining process showed the host's runc as /proc/PID/exe to the container, which opened it
and overwrote it. rl's processes inside a container are the host's Python running rl: pid 1
under --init (for the container's life), and the joining process of `rl exec` (until its exec).
A container that stops them as it sees them (CAP_SYS_PTRACE, same ids) must not open their exe,
descriptors or environment; the host's interpreter and rl's files stay as they were. pid 1 of
--init stays dumpable (rl exec opens its namespaces), so its exe can be named but not written,
and it has no host environment left to read.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Rl
from tests.security.leaks import AS_USER_AND_ROOT, SECRET, WATCHER, watch_log


def _runtime_digest() -> str:
    """The host's interpreter and every file of rl's: what the attack would overwrite."""
    h = hashlib.sha256()
    files = [Path(os.path.realpath(sys.executable))]
    for pkg in ("rootless", "native", "fuse_overlay"):
        files += sorted((REPO / pkg).rglob("*.py"))
    for f in files:
        h.update(str(f).encode() + f.read_bytes())
    return h.hexdigest()


def _wait_caught(rl: Rl, pid: str | None, minimum: int, poke: list[str] | None) -> list[str]:
    """The watcher's log once it caught `minimum` processes (pid `pid` if given), running
    `rl exec poke...` with the host secret in its environment meanwhile, if given."""
    deadline = time.monotonic() + 120
    while True:
        if poke:
            subprocess.run([sys.executable, "-m", "rootless", "exec", *poke], env={**rl.env, **SECRET},
                           capture_output=True, timeout=60)
        log = watch_log(rl, "watch")
        caught = [line for line in log if line.startswith("caught") and (pid is None or line.split()[1] == pid)]
        if len(caught) >= minimum or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def _reached(log: list[str], *what: str) -> list[str]:
    return [line for line in log if line.startswith(what)]


@pytest.mark.parametrize("who", AS_USER_AND_ROOT)
def test_exec_joining_process_is_out_of_reach(rl: Rl, busybox: str, who: str) -> None:
    before = _runtime_digest()
    rl("run", "-d", "--name", "watch", "--cap-add", "SYS_PTRACE", "busybox", "sh", "-c", WATCHER)
    try:
        log = _wait_caught(rl, None, 3, ["watch", "true"])
        assert _reached(log, "caught"), "the container never caught a joining process: the test proved nothing"
        assert _reached(log, "environ", "exe", "fd-link") == [], log
    finally:
        rl("rm", "-f", "watch")
    assert _runtime_digest() == before


@pytest.mark.parametrize("who", AS_USER_AND_ROOT)
def test_init_pid1_is_out_of_reach(rl: Rl, busybox: str, who: str) -> None:
    before = _runtime_digest()
    rl("run", "-d", "--init", "--name", "watch", "--cap-add", "SYS_PTRACE", "busybox", "sh", "-c", WATCHER,
       env=SECRET)
    try:
        log = _wait_caught(rl, "1", 1, None)
        assert _reached(log, "caught 1"), log
        # Dumpable, so its exe (not writable) and descriptors (the container's stdio) show.
        assert _reached(log, "environ", "exe-writable") == [], log
        assert {line.split()[2] for line in _reached(log, "fd-link")} <= {"0", "1", "2"}, log
        r = rl("exec", "watch", "sh", "-c", "cat /proc/1/environ; : >> /proc/1/exe", check=False)
        # Its environment is wiped (NULs where the host's was). Root's pid 1 could have its exe
        # opened for writing but for the kernel's refusal of a running program's file.
        assert set(r.out) <= {"\0"}, r
        why = "Text file busy" if who == "root" else "Permission denied"
        assert (r.code, r.err) == (1, f"sh: can't create /proc/1/exe: {why}\n"), r
    finally:
        rl("rm", "-f", "watch")
    assert _runtime_digest() == before
