"""The fuse-overlay storage driver as a user meets it: chosen when it should be, one daemon per
container that goes away with it, and a daemon that dies takes its container down loudly."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import Rl, kernel_allows_overlay, wait_for


def _daemons_serving(rl: Rl) -> list[int]:
    """Pids of FUSE overlay daemons whose mount point is in this test's store."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fuse_overlay" in cmdline and any(str(rl.root).encode() in a for a in cmdline):
            found.append(int(name))
    return found


def test_one_daemon_per_container_gone_with_it(rl: Rl, busybox: str) -> None:
    cid = rl("--storage-driver", "fuse-overlay", "run", "-d", "busybox", "sleep", "1000").out.strip()
    assert len(_daemons_serving(rl)) == 1
    assert rl("exec", cid, "sh", "-c", "echo hi > /f && cat /f").out == "hi\n"
    rl("stop", "-t", "1", cid)
    wait_for(lambda: not _daemons_serving(rl), 20, "the daemon to exit with its container")
    rl("rm", cid)


def test_daemon_killed_fails_the_container_loudly(rl: Rl, busybox: str) -> None:
    cid = rl("--storage-driver", "fuse-overlay", "run", "-d", "busybox", "sleep", "1000").out.strip()
    (daemon,) = _daemons_serving(rl)
    os.kill(daemon, signal.SIGKILL)
    assert rl("wait", cid, timeout=30).out == "125\n"
    logs = rl("logs", cid)
    assert "FUSE overlay of this container stopped" in logs.err and "fuse-overlay.log" in logs.err
    rl("rm", cid)
    assert not _daemons_serving(rl)


def test_info_says_which_driver_and_why(rl: Rl) -> None:
    info = json.loads(rl("info", "--format", "json").out)
    assert info["storage"]["driver"] in ("overlay", "fuse-overlay", "vfs") and info["storage"]["reason"]
    forced = json.loads(rl("--storage-driver", "fuse-overlay", "info", "--format", "json").out)
    assert forced["storage"]["driver"] == "fuse-overlay"


@pytest.mark.single_id
def test_single_id_mode_uses_the_fuse_overlay_and_shows_real_owners(rl: Rl, busybox: str) -> None:
    info = json.loads(rl("info", "--format", "json").out)
    assert info["storage"]["driver"] == "fuse-overlay", info["storage"]
    assert "single-id" in info["storage"]["reason"]
    # The image's /etc/shadow is root:shadow 0640. With one mapped id only root can be shown as
    # itself: the group (42) is not mapped, so the kernel shows the overflow id.
    out = rl("run", "--rm", "busybox", "stat", "-c", "%u %a", "/etc/shadow").out
    assert out == "0 640\n"
    assert rl("run", "--rm", "busybox", "stat", "-c", "%g", "/etc/shadow").out == "65534\n"
    r = rl("run", "--rm", "busybox", "sh", "-c", "touch /x && chmod 600 /x && stat -c '%u %a' /x")
    assert r.out == "0 600\n"


def test_the_default_driver_is_the_kernel_overlay_where_the_kernel_allows_it(rl: Rl, busybox: str,
                                                                              tmp_path: Path) -> None:
    """Every test without --storage-driver runs on what the remembered probe says: here the
    probe runs afresh (an empty runtime dir) and its answer is checked against the kernel's."""
    allowed = kernel_allows_overlay(tmp_path / "oracle")
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg), "RL_STORAGE_DRIVER": ""}
    mounts = rl("run", "--rm", "busybox", "cat", "/proc/mounts", env=env).out
    root_type = next(line.split()[2] for line in mounts.splitlines() if line.split()[1] == "/")
    assert (root_type == "overlay") is allowed, (allowed, root_type)
    [remembered] = (xdg / "rl").glob("overlay-probe-*.json")
    assert json.loads(remembered.read_text())["ok"] is allowed
    storage = json.loads(rl("info", "--format", "json", env=env).out)["storage"]
    assert storage["kernelOverlay"]["usable"] is allowed
    assert storage["driver"] == ("overlay" if allowed else "fuse-overlay"), storage
