"""Finding 3 of the isolation audit: another user takes over rl's runtime directory.

Without XDG_RUNTIME_DIR (su, cron, ssh without logind) rl keeps its state in /tmp/rl-UID, a name
anyone can take first. rl wrote its probe cache there through whatever it found: symlinks named
like the temporary file made the victim's `rl run` overwrite any file of the victim's, and a fake
cache forced the victim onto another storage driver and put escape sequences into `rl info`.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from rootless.runtime.storage import probe_cache_name
from tests.conftest import Rl

_ESCAPE = "\x1b]0;owned\x07\x1b[2J"


def _plant_links(runtime: Path, victim: Path, root: Path) -> None:
    """Symlinks to the victim under every name rl's next temporary file may take (its pid comes
    soon after the last one given out)."""
    first = int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout)
    for mode in ("subuid", "single"):
        for pid in range(first, first + 20000):
            (runtime / f"{probe_cache_name(root, mode).removesuffix('.json')}.{pid}").symlink_to(victim)


def _plant_result(runtime: Path, root: Path) -> None:
    """A fake probe result: the kernel overlay "does not work", said with escape sequences."""
    for mode in ("subuid", "single"):
        path = runtime / probe_cache_name(root, mode)
        path.write_text(json.dumps({"ok": False, "detail": _ESCAPE}))
        path.chmod(0o666)


def _probe_and_remember(rl: Rl, env: dict[str, str], tmp_path: Path) -> None:
    """Commands that consult the remembered kernel overlay probe: `rl run` with the default
    driver (with a subordinate range), `rl export` of a FUSE overlay container (in single-id mode).
    A cache file that makes them hang fails the test by its timeout."""
    rl("run", "--name", "probed", "busybox", "true", env=env, timeout=60)
    rl("export", "-o", str(tmp_path / "probed.tar"), "probed", env=env, timeout=60)
    rl("rm", "probed", env=env)


def _attack(rl: Rl, runtime: Path, env: dict[str, str], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    _plant_links(runtime, victim, rl.root)
    _probe_and_remember(rl, env, tmp_path)
    assert victim.read_text() == "precious\n", "rl wrote through the attacker's symlink"
    _plant_result(runtime, rl.root)
    info = rl("info", env=env).out
    assert "\x1b" not in info, "rl info printed the attacker's escape sequences"
    assert "runtime state:    none, the runtime directory" in info
    assert _ESCAPE not in rl("info", "--format", "json", env=env).out


def test_a_runtime_dir_open_to_all_is_refused(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """A runtime directory others can write (here the attacker's 0777 /tmp/rl-UID stand-in,
    XDG_RUNTIME_DIR/rl) is not used: the planted symlinks and the fake result stay unread."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    runtime = xdg / "rl"
    runtime.mkdir()
    runtime.chmod(0o777)
    _attack(rl, runtime, {"XDG_RUNTIME_DIR": str(xdg)}, tmp_path)


def test_a_runtime_dir_that_is_a_symlink_is_refused(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """/tmp/rl-UID made a symlink to a directory of the attacker's choosing."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (xdg / "rl").symlink_to(elsewhere)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    _plant_links(elsewhere, victim, rl.root)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    _probe_and_remember(rl, env, tmp_path)
    assert victim.read_text() == "precious\n"
    assert "is not a directory" in rl("info", env=env).out


def test_hostile_cache_files_in_our_own_dir_are_ignored(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """Even in a runtime directory of our own, a cache file is input: a FIFO (which would hang a
    plain read), a huge file, a symlink and text with control characters are all ignored."""
    xdg = tmp_path / "xdg"
    runtime = xdg / "rl"
    runtime.mkdir(parents=True, mode=0o700)
    xdg.chmod(0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    for mode in ("subuid", "single"):
        os.mkfifo(runtime / probe_cache_name(rl.root, mode))
    _probe_and_remember(rl, env, tmp_path)
    for make in (lambda p: p.write_bytes(b" " * (1 << 20) + b'{"ok": false, "detail": "x"}'),
                 lambda p: p.symlink_to("/dev/zero"),
                 lambda p: p.write_text(json.dumps({"ok": False, "detail": _ESCAPE}))):
        for mode in ("subuid", "single"):
            path = runtime / probe_cache_name(rl.root, mode)
            path.unlink()
            make(path)
        _probe_and_remember(rl, env, tmp_path)
        assert "\x1b" not in rl("info", env=env).out
    # The next probe result rl remembers is its own, a regular file of ours.
    shutil.rmtree(runtime)
    runtime.mkdir(mode=0o700)
    _probe_and_remember(rl, env, tmp_path)
    cached = sorted(p.name.split("-")[0] for p in runtime.iterdir())
    assert cached == ["overlay", "seccomp"]  # the probe result and the compiled seccomp filter
    for entry in runtime.iterdir():
        st = entry.lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


@pytest.mark.as_root
def test_root_without_xdg_refuses_a_tmp_dir_of_another_user(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """The attack as it happens: root's `rl` without XDG_RUNTIME_DIR, and /tmp/rl-0 made first by
    another user (nobody here), 0777, full of symlinks to a file of root's."""
    runtime = Path("/tmp/rl-0")
    if runtime.exists() or runtime.is_symlink():
        pytest.fail(f"{runtime} exists: the test needs the name to itself")
    runtime.mkdir()
    try:
        os.chown(runtime, 65534, 65534)
        runtime.chmod(0o777)
        env = {k: v for k, v in rl.env.items() if k != "XDG_RUNTIME_DIR"}
        _attack(Rl(rl.root, env), runtime, {}, tmp_path)
        assert "owner 65534" in Rl(rl.root, env)("info").out
    finally:
        shutil.rmtree(runtime)
