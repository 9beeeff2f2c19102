"""podman, as the test user, with our FUSE overlay as its overlay mount_program: the container
sees the image, writes to it (copy-up, new files, deletes) and podman cleans the mount up."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.interop.conftest import Podman, need

REPO = Path(__file__).resolve().parents[2]


def _daemons_under(path: Path) -> list[int]:
    """Pids of our daemon still serving a mount under `path`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fuse_overlay" in cmd and any(str(path).encode() in a for a in cmd):
            found.append(int(name))
    return found


@pytest.fixture
def podman_fuse(tmp_path: Path) -> Iterator[tuple[Podman, Path, Path]]:
    """podman on a private overlay store whose mount_program is our daemon, behind a wrapper that
    logs its arguments; yields (podman, the log, the store root)."""
    exe = need("podman")
    log = tmp_path / "mount_program.log"
    wrapper = tmp_path / "rl-fuse-overlay"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                       f"PYTHONPATH={REPO} exec {sys.executable} -m fuse_overlay \"$@\"\n")
    wrapper.chmod(0o755)
    # Short paths: podman refuses a runroot longer than 50 characters.
    runtime = Path(tempfile.mkdtemp(prefix="rl-podman-", dir="/tmp"))
    os.chmod(runtime, 0o700)
    (runtime / "xdg").mkdir(mode=0o700)
    root = tmp_path / "podman-root"
    base = [exe, "--root", str(root), "--runroot", str(runtime / "run"), "--storage-driver", "overlay",
            "--storage-opt", f"overlay.mount_program={wrapper}", "--cgroup-manager=cgroupfs"]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime / "xdg")}
    env.pop("RL_ROOT", None)
    try:
        yield Podman(tuple(base), env), log, root
    finally:
        subprocess.run([*base, "rm", "-af"], check=False, env=env, capture_output=True, timeout=120)
        subprocess.run([*base, "unshare", "rm", "-rf", str(root), str(runtime / "run")],
                       check=False, env=env, capture_output=True, timeout=120)
        try:
            os.kill(int((runtime / "xdg" / "libpod" / "tmp" / "pause.pid").read_text()), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        shutil.rmtree(runtime, ignore_errors=True)
        for pid in _daemons_under(root):
            os.kill(pid, signal.SIGKILL)


SCRIPT = """
set -e
if [ -e /new-file ]; then
    echo again; cat /new-file; grep -c appended /etc/passwd; test ! -e /etc/group && echo gone; exit 0
fi
cat /etc/hostname.img
echo appended >> /etc/passwd
tail -n 1 /etc/passwd
echo new > /new-file
cat /new-file
rm /etc/group
test ! -e /etc/group
mkdir -p /data/sub && echo deep > /data/sub/f && mv /data/sub/f /data/g && cat /data/g
ls /bin/busybox
"""


def test_podman_runs_a_container_on_our_overlay(podman_fuse: tuple[Podman, Path, Path], busybox_tar: Path,
                                                tmp_path: Path) -> None:
    podman, log, root = podman_fuse
    image = tmp_path / "image.tar"
    # The image's own file, to check the container reads the lower layer.
    shutil.copy(busybox_tar, image)
    marker = tmp_path / "marker"
    (marker / "etc").mkdir(parents=True)
    (marker / "etc" / "hostname.img").write_text("from the image\n")
    subprocess.run(["tar", "-rf", str(image), "-C", str(marker), "etc/hostname.img"], check=True)
    podman("import", str(image), "localhost/rl-busybox:latest")
    out = podman("run", "--cgroups=disabled", "--network", "none", "--name", "c1", "localhost/rl-busybox:latest",
                 "sh", "-c", SCRIPT, timeout=120)
    assert out.split() == ["from", "the", "image", "appended", "new", "deep", "/bin/busybox"]
    assert "lowerdir=" in log.read_text(), "podman did not mount the rootfs with our mount_program"
    # The changes persist in the container's upper layer: a second start (a new mount) sees them.
    assert podman("start", "--attach", "c1", timeout=120).split() == ["again", "new", "1", "gone"]
    podman("rm", "c1")
    # The daemon learns of the unmount from its next read of /dev/fuse: it leaves soon after,
    # not before podman returns.
    wait_for(lambda: not _daemons_under(root), 15, "the daemon to exit after its unmount")
