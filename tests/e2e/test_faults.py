"""Faults: rl killed with SIGKILL at successive points of run, build, pull, push, commit and rmi; a
FUSE daemon killed under a running container; a full disk during a build. Whatever happened, the
store checks clean (`rl system check`, at worst after --repair), nothing of a container is left
running, a --rm container or a build step leaves no record and no writable layer, and the
command run again succeeds.

Two kinds of kill points: the named moments in the code (rootless/killpoint.py, chosen by
RL_TEST_KILL_AT) that the command passes, and times after its start, growing by a sixteenth of
what it takes unkilled until it completes first. Each test says how many of each landed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import OtherStores, Rl, wait_for
from tests.registry_fixture import LocalRegistry, registry  # noqa: F401 - the fixture

TOKEN = "rl-faults-token"  # in the command line of every container process these tests start


def _procs_with(needle: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(name))
    return found


def _mounts_under(root: Path) -> list[str]:
    """Mount points under the store in any mount namespace we can see."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            lines = Path(f"/proc/{name}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        found.update(line.split()[4] for line in lines if str(root) in line.split()[4])
    return sorted(found)


def _nothing_left_running(rl: Rl) -> None:
    wait_for(lambda: not _procs_with(TOKEN.encode()), 60, "the container processes of a killed rl to end")
    wait_for(lambda: not _fuse_daemons(rl), 60, "the FUSE daemons of a killed rl's containers to exit")


def _fuse_daemons(rl: Rl) -> list[int]:
    return [p for p in _procs_with(b"fuse_overlay") if str(rl.root).encode() in Path(f"/proc/{p}/cmdline").read_bytes()]


def _containers(rl: Rl) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in rl("ps", "-a", "--format", "json").out.splitlines()]


def _store_checks_clean(rl: Rl) -> None:
    """Clean, or clean after --repair; then clean for sure."""
    first = rl("system", "check", check=False, timeout=600)
    if first.code != 0:
        assert first.code == 1 and "Traceback" not in first.err, first
        rl("system", "check", "--repair", timeout=600)
    again = rl("system", "check", check=False, timeout=600)
    assert again.code == 0 and again.out == "", f"{first.out}\nafter --repair:\n{again.out}{again.err}"


def _container_dirs(rl: Rl) -> list[str]:
    d = rl.root / "containers"
    return sorted(os.listdir(d)) if d.is_dir() else []


def _timed(rl: Rl, *args: str) -> float:
    at = time.monotonic()
    rl(*args, timeout=600)
    return time.monotonic() - at


def _kill_stepping(rl: Rl, args: tuple[str, ...], prepare: Callable[[int], tuple[str, ...]] | None,
                   after: Callable[[], None], what: str) -> int:
    """Run the command again and again, SIGKILLed a little later each time, until it completes;
    `after` checks the store after each run. Returns how many runs were killed."""
    full = _timed(rl, *(prepare(-1) if prepare else args))
    after()
    step = max(full / 16, 0.01)
    kills = 0
    for i in range(60):
        argv = prepare(i) if prepare else args
        with rl.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
            try:
                p.wait(timeout=step * (i + 1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                killed = True
            else:
                killed = False
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                assert p.returncode == 0, f"rl {' '.join(argv)} after {kills} killed runs: {err}"
        kills += killed
        after()
        if not killed:
            break
    else:
        pytest.fail(f"{what} never completed within 60 steps of {step:.2f}s")
    sys.stderr.write(f"faults: {what}: killed at {kills} points ({step:.2f}s apart)\n")
    assert kills >= 2, f"{what}: only {kills} kills landed before it completed"
    return kills


# Named kill points, in the order a command passes them.
CONTAINER_POINTS = ("create-dir", "create-record", "run-started", "run-exited", "remove-record")
STORE_POINTS = ("store-layer-tree", "store-image-blobs")
REMOVE_POINTS = ("rmi-untagged", "gc-trash")


def _kill_at(rl: Rl, argv: Callable[[int], tuple[str, ...]], points: tuple[str, ...], after: Callable[[], None],
             what: str) -> int:
    """Run the command killed at each named point; returns how many it passed (it died there:
    SIGKILL, or for a point in a detached supervisor, the CLI said so)."""
    reached = []
    for i, point in enumerate(points):
        args = argv(i)
        r = rl(*args, check=False, timeout=600, env={"RL_TEST_KILL_AT": point})
        if r.code == -signal.SIGKILL or "supervisor died" in r.err:
            reached.append(point)
        else:
            assert r.code == 0, f"rl {' '.join(args)} with RL_TEST_KILL_AT={point}: {r}"
        after()
    sys.stderr.write(f"faults: {what}: killed at {len(reached)} named points ({', '.join(reached)})\n")
    return len(reached)


def _kill_run_rm(rl: Rl, what: str) -> None:
    def after() -> None:
        assert _containers(rl) == [], "a --rm container outlived its killed rl"
        assert _container_dirs(rl) == [], "a --rm container's writable layer outlived its killed rl"
        _nothing_left_running(rl)
        _store_checks_clean(rl)

    argv = ("run", "--rm", "busybox", "sh", "-c", "echo hi > /f; sleep 0.3", TOKEN)
    _kill_stepping(rl, argv, None, after, what)
    assert _kill_at(rl, lambda i: argv, CONTAINER_POINTS, after, what) == len(CONTAINER_POINTS)


def test_kill_rl_run_rm_at_every_step(rl: Rl, busybox: str) -> None:
    _kill_run_rm(rl, "rl run --rm")


@pytest.mark.single_id
def test_kill_rl_run_rm_at_every_step_in_single_id_mode(rl: Rl, busybox: str) -> None:
    """On the FUSE overlay, whose daemon must go too."""
    _kill_run_rm(rl, "rl run --rm (single-id)")


def test_kill_rl_run_d_at_every_step(rl: Rl, busybox: str) -> None:
    def after() -> None:
        for c in _containers(rl):
            # Created (killed before it started) or started: never said to run without running.
            assert c["State"] in ("created", "running", "exited"), c
            rl("rm", "-f", c["ID"])
        _nothing_left_running(rl)
        assert _container_dirs(rl) == []
        _store_checks_clean(rl)

    argv = ("run", "-d", "busybox", "sh", "-c", "sleep 0.3", TOKEN)
    _kill_stepping(rl, argv, None, after, "rl run -d")
    points = ("create-dir", "create-record", "detach-forked", "supervisor-started")
    assert _kill_at(rl, lambda i: argv, points, after, "rl run -d") == len(points)


def test_kill_rl_run_d_rm_at_every_step(rl: Rl, busybox: str) -> None:
    def after() -> None:
        for c in _containers(rl):
            # Only one its supervisor runs (or is about to): it removes it.
            assert c["State"] in ("created", "running"), f"a --rm container outlived its killed rl: {c}"
            rl("wait", c["ID"], check=False)
        wait_for(lambda: _containers(rl) == [] and _container_dirs(rl) == [], 60,
                 "the supervisor to remove the --rm container of a killed rl")
        _nothing_left_running(rl)
        _store_checks_clean(rl)

    argv = ("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.3", TOKEN)
    _kill_stepping(rl, argv, None, after, "rl run -d --rm")
    # run-exited kills the supervisor after rl returned: passed, but not counted by _kill_at.
    points = ("create-dir", "create-record", "detach-forked", "supervisor-started", "run-exited")
    assert _kill_at(rl, lambda i: argv, points, after, "rl run -d --rm") >= 4


def test_kill_rl_build_at_every_step(rl: Rl, busybox: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM busybox\nRUN echo a > /a; sleep 0.2 # {TOKEN}\nRUN echo b > /b # {TOKEN}\n")

    def after() -> None:
        assert _containers(rl) == [], "a build step container is listed"
        assert _container_dirs(rl) == [], "a build step container outlived the next command"
        _nothing_left_running(rl)
        _store_checks_clean(rl)

    argv = ("build", "--no-cache", "-q", "-t", "built", str(tmp_path / "ctx"))
    _kill_stepping(rl, argv, None, after, "rl build")
    points = CONTAINER_POINTS + STORE_POINTS
    assert _kill_at(rl, lambda i: argv, points, after, "rl build") == len(points)
    assert rl("run", "--rm", "built", "cat", "/a", "/b").out == "a\nb\n"


def test_kill_rl_commit_at_every_step(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "src", "busybox", "sh", "-c", "echo made > /made")

    def after() -> None:
        assert [c["Names"] for c in _containers(rl)] == ["src"]
        _store_checks_clean(rl)

    _kill_stepping(rl, ("commit", "src", "committed"), None, after, "rl commit")

    def again(i: int) -> tuple[str, ...]:
        rl("system", "prune", "-a", "-f")  # every commit so far, so that its layer is new again
        return ("commit", "src", "committed")

    assert _kill_at(rl, again, STORE_POINTS, after, "rl commit") == len(STORE_POINTS)
    rl("commit", "src", "committed")
    assert rl("run", "--rm", "committed", "cat", "/made").out == "made\n"


def test_kill_rl_rmi_at_every_step(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "src", "busybox", "sh", "-c", "echo made > /made")

    def prepare(i: int) -> tuple[str, ...]:
        if rl("images", "-q", "victim", check=False).out.strip() == "":
            rl("commit", "src", "victim")
        return ("rmi", "victim")

    def after() -> None:
        _store_checks_clean(rl)
        assert rl("run", "--rm", "busybox", "true").code == 0

    _kill_stepping(rl, (), prepare, after, "rl rmi")
    assert _kill_at(rl, prepare, REMOVE_POINTS, after, "rl rmi") == len(REMOVE_POINTS)
    assert "victim" not in rl("images").out


def test_kill_rl_push_and_pull_at_every_step(rl: Rl, busybox: str, tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                                             other_store: OtherStores) -> None:
    dst = other_store(tmp_path / "pulled")
    pushes = iter(range(1000))

    def push(i: int) -> tuple[str, ...]:
        return ("push", "busybox", f"{registry.host}/faults/push{next(pushes)}:1")

    _kill_stepping(rl, (), push, lambda: _store_checks_clean(rl), "rl push")
    name = f"{registry.host}/faults/pull:1"
    rl("push", "busybox", name)

    def pull(i: int) -> tuple[str, ...]:
        if dst("images", "-q", name, check=False).out.strip():
            dst("rmi", name)
        return ("pull", "-q", name)

    _kill_stepping(dst, (), pull, lambda: _store_checks_clean(dst), "rl pull")
    assert _kill_at(dst, pull, STORE_POINTS, lambda: _store_checks_clean(dst), "rl pull") == len(STORE_POINTS)
    assert dst("run", "--rm", name, "true").code == 0
    dst("rmi", name)
    _store_checks_clean(dst)


def _fuse_daemon_killed_under_a_running_container(rl: Rl) -> None:
    cid = rl("--storage-driver", "fuse-overlay", "run", "-d", "busybox", "sh", "-c",
             "while true; do cat /bin/busybox > /dev/null; sleep 0.1; done", TOKEN).out.strip()
    (daemon,) = _fuse_daemons(rl)
    os.kill(daemon, signal.SIGKILL)
    rl("stop", "-t", "2", cid, timeout=120)
    rl("rm", cid, timeout=120)
    _nothing_left_running(rl)
    assert _mounts_under(rl.root) == []
    assert _container_dirs(rl) == []
    _store_checks_clean(rl)
    r = rl("--storage-driver", "fuse-overlay", "run", "--rm", "--hostname", "h", "busybox", "cat", "/etc/hostname")
    assert r.out == "h\n"


def test_fuse_daemon_killed_under_a_running_container(rl: Rl, busybox: str) -> None:
    _fuse_daemon_killed_under_a_running_container(rl)


@pytest.mark.as_root
def test_fuse_daemon_killed_under_a_running_container_as_root(rl: Rl, busybox: str) -> None:
    _fuse_daemon_killed_under_a_running_container(rl)


@pytest.mark.as_root
def test_full_disk_during_a_build(other_store: OtherStores, busybox_tar: Path, tmp_path: Path) -> None:
    """A 32 MB store filled by a RUN: a one-line error, and a store that still works."""
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(root)], check=True)
    try:
        small = other_store(root / "store")
        small("import", str(busybox_tar), "busybox:latest")
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text(
            "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=40; echo filled\n")
        r = small("build", "-t", "big", str(tmp_path / "ctx"), check=False, timeout=600)
        assert r.code == 125, r  # the store, not the step, failed: rl's own error
        errors = [line for line in r.err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in r.err and "internal error" not in r.err, r.err
        assert "full" in errors[0] or "No space left" in errors[0], errors[0]
        sys.stderr.write(f"faults: full disk: exit {r.code}, {errors[0]}\n")
        assert _containers(small) == [] and _container_dirs(small) == []
        _nothing_left_running(small)
        _store_checks_clean(small)
        assert small("run", "--rm", "busybox", "echo", "ok").out == "ok\n"
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
