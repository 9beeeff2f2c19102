"""Finding 4 of the isolation audit (descriptors leak into containers) and runc's CVE-2024-21626.

`exec 7<$HOME; rl run --rm busybox sh -c 'echo PWNED >> /proc/self/fd/7/victim'` wrote the host's
~/victim: rl run, rl exec and rl build's RUN steps closed nothing of their caller's before the
container's exec, so the container saw the shell's stray descriptors (7, 251) and reached the
host through them. runc's CVE-2024-21626 is the same hole through the working directory
(`-w /proc/self/fd/N`, with N one of the runtime's own descriptors): the container must fail to
start with one line, or land inside its root. Only `--preserve-fds N` passes descriptors 3..3+N-1,
on purpose, as podman's flag of that name does.
"""
from __future__ import annotations

import os
import pty
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Rl, wait_for
from tests.security.leaks import (AS_USER_AND_ROOT, STRAY_FDS, assert_victim_unchanged, errors, fd_numbers, rl_with_fds, strays,
                                  victim_dir)

# The last command of `sh -c` replaces the shell: `true` keeps $$ the shell's, not ls's own.
ATTACK = "echo PWNED >> /proc/self/fd/7/victim; echo PWNED >> /proc/self/fd/251/victim; echo fds; ls /proc/$$/fd; true"


def _fds_after_marker(out: str) -> set[int]:
    return fd_numbers(out.partition("fds\n")[2])


@pytest.fixture
def box(rl: Rl, busybox: str) -> Iterator[str]:
    """A running container to exec into."""
    rl("run", "-d", "--name", "box", "busybox", "sleep", "1000")
    yield "box"
    rl("rm", "-f", "box")


@pytest.mark.parametrize("mode", [("--rm",), (), ("--init",)], ids=["rm", "logged", "init"])
@pytest.mark.parametrize("who", AS_USER_AND_ROOT)
def test_run_in_the_foreground_gets_no_stray_descriptor(rl: Rl, busybox: str, tmp_path: Path, who: str,
                                                        mode: tuple[str, ...]) -> None:
    host = victim_dir(tmp_path)
    r = rl_with_fds(rl, strays(host), "run", *mode, "busybox", "sh", "-c", ATTACK)
    assert_victim_unchanged(host)
    assert _fds_after_marker(r.out) == {0, 1, 2}, r.out + r.err


def test_run_detached_gets_no_stray_descriptor(rl: Rl, busybox: str, tmp_path: Path) -> None:
    host = victim_dir(tmp_path)
    rl_with_fds(rl, strays(host), "run", "-d", "--name", "bg", "busybox", "sh", "-c", ATTACK)
    assert rl("wait", "bg", timeout=60).code == 0
    out = rl("logs", "bg").out
    assert_victim_unchanged(host)
    assert _fds_after_marker(out) == {0, 1, 2}, out


def test_run_with_a_terminal_gets_no_stray_descriptor(rl: Rl, busybox: str, tmp_path: Path) -> None:
    host = victim_dir(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve("/bin/bash", ["bash", "-c", 'exec 7<"$1" 251<"$1"; shift; exec "$@"', "bash", str(host),
                                    sys.executable, "-m", "rootless", "run", "--rm", "-it", "busybox", "sh", "-c",
                                    ATTACK], rl.env)
        finally:
            os._exit(127)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: rl exited and closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(fd)
    os.waitpid(pid, 0)
    assert_victim_unchanged(host)
    assert _fds_after_marker(shown.decode(errors="replace").replace("\r", "")) == {0, 1, 2}, shown


@pytest.mark.parametrize("who", AS_USER_AND_ROOT)
def test_exec_gets_no_stray_descriptor(rl: Rl, box: str, tmp_path: Path, who: str) -> None:
    host = victim_dir(tmp_path)
    for how, detach in (("attached", ()), ("detached", ("-d",))):
        # The list appears whole (mv) once the exec is done: the detached one is waited for.
        r = rl_with_fds(rl, strays(host), "exec", *detach, box, "sh", "-c",
                        f"exec > /fds.$$; {ATTACK}; mv /fds.$$ /{how}-fds")
        assert r.code == 0, r.err
    for how in ("attached", "detached"):
        out = wait_for(lambda: rl("exec", box, "cat", f"/{how}-fds", check=False).out, 30,
                       f"the {how} exec's list of its descriptors")
        assert _fds_after_marker(out) == {0, 1, 2}, out
    assert_victim_unchanged(host)


def test_build_run_steps_get_no_stray_descriptor(rl: Rl, busybox: str, tmp_path: Path) -> None:
    host = victim_dir(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN exec > /build-fds; {ATTACK}\n")
    r = rl_with_fds(rl, strays(host), "build", "-t", "leaky", str(ctx))
    assert r.code == 0, r.err
    assert_victim_unchanged(host)
    assert _fds_after_marker(rl("run", "--rm", "leaky", "cat", "/build-fds").out) == {0, 1, 2}


def _preserved(tmp_path: Path) -> dict[int, Path]:
    (tmp_path / "three").write_text("three\n")
    (tmp_path / "four").write_text("four\n")
    return {3: tmp_path / "three", 4: tmp_path / "four", **strays(victim_dir(tmp_path))}


READ_PRESERVED = "cat <&3; cat <&4; echo fds; ls /proc/$$/fd; true"


def test_preserve_fds_passes_exactly_the_descriptors_asked_for(rl: Rl, box: str, tmp_path: Path) -> None:
    opened = _preserved(tmp_path)
    for args in (("run", "--rm", "--preserve-fds", "2", "busybox"), ("exec", "--preserve-fds", "2", box)):
        r = rl_with_fds(rl, opened, *args, "sh", "-c", READ_PRESERVED)
        assert r.code == 0, r.err
        assert r.out.startswith("three\nfour\nfds\n") and _fds_after_marker(r.out) == {0, 1, 2, 3, 4}, r.out
    rl_with_fds(rl, opened, "run", "-d", "--name", "kept", "--preserve-fds", "2", "busybox", "sh", "-c",
                READ_PRESERVED)
    assert rl("wait", "kept", timeout=60).code == 0
    out = rl("logs", "kept").out
    assert out.startswith("three\nfour\nfds\n") and _fds_after_marker(out) == {0, 1, 2, 3, 4}, out
    assert_victim_unchanged(tmp_path / "host-dir")


def test_preserve_fds_refuses_a_descriptor_that_is_not_open(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "three").write_text("three\n")
    r = rl_with_fds(rl, {3: tmp_path / "three"}, "run", "--rm", "--preserve-fds", "2", "busybox", "true")
    assert r.code == 125 and errors(r.err) == [r.err.splitlines()[-1]] and "descriptor 4 is not open" in r.err, r.err


def _escapes(tmp_path: Path) -> list[str]:
    """Files named like the probe anywhere under the test's directory: the store and the host's."""
    found = []
    for dirpath, _dirs, files in os.walk(tmp_path, onerror=lambda _e: None):
        found += [os.path.join(dirpath, f) for f in files if f == "escape-probe"]
    return found


PROBE = "touch escape-probe; pwd"


@pytest.mark.parametrize("who", AS_USER_AND_ROOT)
def test_cve_2024_21626_working_directory_through_a_descriptor(rl: Rl, box: str, tmp_path: Path, who: str) -> None:
    """-w /proc/self/fd/N for every N rl or its caller may hold: fail with one line or stay inside."""
    host = victim_dir(tmp_path)
    for n in range(3, 24):
        workdir = f"/proc/self/fd/{n}"
        for args in (("run", "--rm", "-w", workdir, "busybox"), ("exec", "-w", workdir, box)):
            r = rl_with_fds(rl, strays(host), *args, "sh", "-c", PROBE)
            assert (r.code in (125, 126) and len(errors(r.err)) == 1) or r.code == 0, (args, r)
        assert _escapes(tmp_path) == [], n
    for fd in STRAY_FDS:
        r = rl_with_fds(rl, strays(host), "run", "--rm", "-w", f"/proc/self/fd/{fd}", "busybox", "sh", "-c", PROBE)
        assert r.code == 125 and r.err.startswith("Error: cannot use the working directory"), r
        r = rl_with_fds(rl, strays(host), "exec", "-w", f"/proc/self/fd/{fd}/", box, "sh", "-c", PROBE)
        assert r.code == 126 and r.err.startswith("Error: cannot use the working directory"), r
    assert_victim_unchanged(host)
    assert _escapes(tmp_path) == []


def test_cve_2024_21626_preserved_directory_is_no_working_directory(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """A directory passed with --preserve-fds is the caller's to read, but not a way to start outside."""
    host = victim_dir(tmp_path)
    r = rl_with_fds(rl, {3: host}, "run", "--rm", "--preserve-fds", "1", "-w", "/proc/self/fd/3", "busybox",
                    "sh", "-c", PROBE)
    assert r.code == 125 and errors(r.err) == [
        "Error: cannot use the working directory /proc/self/fd/3: it is outside the container"], r
    assert_victim_unchanged(host)


def test_stray_descriptors_are_not_in_proc(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """What /proc shows of the command: 0, 1 and 2, no host path among their targets."""
    host = victim_dir(tmp_path)
    r = rl_with_fds(rl, strays(host), "run", "--rm", "busybox", "sh", "-c",
                    "for f in /proc/self/fd/*; do readlink $f; done")
    assert str(host) not in r.out and str(tmp_path) not in r.out, r.out
