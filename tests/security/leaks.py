"""Helpers of the security tests that start rl the way a shell with open descriptors would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Result, Rl

# Each attack as the user and, where root's use of rl is exposed, as root (single-id: the
# container's root is the host's).
AS_USER_AND_ROOT = ["user", pytest.param("root", marks=pytest.mark.as_root)]

# What a shell leaves open: a directory the user had at hand (the brief's `exec 7<$HOME`) and a
# high number of the kind bash keeps for itself.
STRAY_FDS = (7, 251)
VICTIM_TEXT = "precious\n"


def victim_dir(tmp_path: Path) -> Path:
    """A host directory holding the victim file, which the container may reach only by a leak."""
    d = tmp_path / "host-dir"
    d.mkdir(exist_ok=True)
    (d / "victim").write_text(VICTIM_TEXT)
    return d


def rl_with_fds(rl: Rl, opened: dict[int, Path], *args: str, timeout: float = 120,
                env: dict[str, str] | None = None) -> Result:
    """`rl ARGS` started by bash with descriptor N open on path P for each N: P in `opened`."""
    redirs = " ".join(f'{fd}<"${i + 1}"' for i, fd in enumerate(opened))
    script = f"exec {redirs}; shift {len(opened)}; exec \"$@\""
    p = subprocess.run(["bash", "-c", script, "bash", *map(str, opened.values()), sys.executable, "-m", "rootless",
                        *args], capture_output=True, env={**rl.env, **(env or {})}, timeout=timeout)
    return Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))


def strays(directory: Path) -> dict[int, Path]:
    return {fd: directory for fd in STRAY_FDS}


def fd_numbers(text: str) -> set[int]:
    """The descriptor numbers an `ls /proc/$$/fd` printed (one a line or on one line)."""
    return {int(w) for w in text.split() if w.isdigit()}


def errors(stderr: str) -> list[str]:
    """The lines of rl's stderr but its single-id warning (said once per store): one, for an error."""
    return [line for line in stderr.splitlines() if not line.startswith("Warning:")]


def assert_victim_unchanged(directory: Path) -> None:
    assert (directory / "victim").read_text() == VICTIM_TEXT, "the container wrote to the host's file"
    assert sorted(os.listdir(directory)) == ["victim"], "the container made files in the host's directory"


# Run inside a container with CAP_SYS_PTRACE (`sh -c WATCHER sh [LOG]`): stops every process of
# rl's (the host's Python, whose comm is python*) it sees in /proc, tries what CVE-2019-5736 and
# finding 7 did through it, writes what worked to LOG (/watch.log), and lets it go. Builtins only in the scan: it must be quick
# to catch a joining process between its fork and its exec.
WATCHER = r"""
log=${1:-/watch.log}
: > $log
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    read -r comm < $d/comm 2>/dev/null || continue
    case "$comm" in python*) ;; *) continue;; esac
    kill -STOP $p 2>/dev/null || continue
    # The stop lands when the process next leaves the kernel (maybe from its exec): wait for it
    # (a while: pid 1 ignores the stop, as any signal its namespace sends it without a handler).
    state= n=0
    while [ "$state" != T ] && [ $((n += 1)) -lt 500 ] && read -r _pid _comm state _rest < $d/stat 2>/dev/null; do :; done
    read -r comm < $d/comm 2>/dev/null
    case "$comm" in python*) ;; *) kill -CONT $p; continue;; esac
    echo "caught $p" >> $log
    grep -q RL_SECRET $d/environ 2>/dev/null && echo "environ $p" >> $log
    readlink $d/exe >/dev/null 2>&1 && echo "exe-link $p" >> $log
    (: >> $d/exe) 2>/dev/null && echo "exe-writable $p" >> $log
    for f in $d/fd/*; do readlink $f >/dev/null 2>&1 && echo "fd-link $p ${f##*/}" >> $log; done
    kill -CONT $p
  done
done
"""
SECRET = {"RL_SECRET": "hunter2-of-the-host"}


def watch_log(rl: Rl, name: str) -> list[str]:
    return rl("exec", name, "cat", "/watch.log").out.splitlines()
