"""runc CVE-2021-30465: a symlink swapped in under a mount target.

rl resolved a mount target inside the container's root to a path string, then made its missing
components and mounted on it by that name: the kernel resolved the name again, in the host's view.
Another container sharing a named volume can swap a directory of the volume for a symlink in
between, and rl then made directories and files (and mounts) wherever the symlink pointed on the
host. The racer here runs on the host in the volume's directory, standing in for the other
container (anything that can write to the volume will do); it swaps a directory and a symlink to a
host directory with renameat2(RENAME_EXCHANGE), as fast as it can.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Rl

STARTS = 100

_RACER = """
import os, sys
import native
fd = os.open(".", os.O_PATH | os.O_DIRECTORY)
print("ready", flush=True)
while True:
    native.renameat2("a", "a.link", native.RENAME_EXCHANGE, fd, fd)
"""


def _targets(src: Path, srcfile: Path) -> list[str]:
    """Mounts to make inside the racing directory: each is a chance for the race per start."""
    return [a for i in range(4) for a in ("-v", f"{src}:/vol/a/b/c{i}", "-v", f"{srcfile}:/vol/a/b/f{i}")]


def _race(rl: Rl, tmp_path: Path) -> None:
    host = tmp_path / "host"  # the victim: nothing may appear in it
    (host / "b").mkdir(parents=True)
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "srcfile").write_text("file\n")
    rl("volume", "create", "shared")
    data = Path(json.loads(rl("volume", "inspect", "shared").out)[0]["Mountpoint"])
    (data / "a" / "b").mkdir(parents=True)
    (data / "a.link").symlink_to(host)
    racer = subprocess.Popen([sys.executable, "-c", _RACER], cwd=data, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert racer.stdout is not None and racer.stdout.readline() == b"ready\n"
        started = 0
        for i in range(1, STARTS + 1):
            r = rl("run", "--rm", "-v", "shared:/vol", *_targets(src, tmp_path / "srcfile"), "busybox", "true",
                   check=False)
            started += r.code == 0
            made = sorted(os.listdir(host / "b"))
            assert made == [], f"start {i} of {STARTS} made {made} in the host's {host / 'b'}"
            assert os.listdir(host) == ["b"]
        assert started > 0, "no container started while the racer ran"
    finally:
        racer.kill()
        racer.wait()


def test_a_swapped_symlink_never_redirects_a_mount_target(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """STARTS containers start with mounts inside a volume whose directory `a` another container
    keeps swapping with a symlink to a host directory: nothing appears in that directory."""
    _race(rl, tmp_path)


@pytest.mark.as_root
def test_a_swapped_symlink_never_redirects_a_mount_target_of_root(rl: Rl, busybox: str,
                                                                  tmp_path: Path) -> None:
    """The same as root, whose containers' root is the host's root: what they make on the host
    could be anywhere."""
    _race(rl, tmp_path)


@pytest.mark.parametrize("link", ["/", "HOST", "../../../../../../../../../HOST"])
def test_a_volume_target_that_is_a_symlink_stays_inside(rl: Rl, busybox: str, tmp_path: Path,
                                                        hostile_image, link: str) -> None:  # type: ignore[no-untyped-def]
    """An image whose /data is a symlink to its root or to a host path (absolute or relative):
    the volume is mounted inside the container's root or refused with a one-line error, and the
    host directory the link names is untouched."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim").write_text("precious\n")
    hostile_image("trap", {"data": link.replace("HOST", str(host).lstrip("/") if link != "HOST" else str(host))})
    r = rl("run", "--rm", "-v", "vol:/data", "trap", "sh", "-c", "echo x > /data/written && ls /data",
           check=False)
    assert sorted(os.listdir(host)) == ["victim"] and (host / "victim").read_text() == "precious\n"
    if link == "/":
        assert r.code == 125 and "container's root directory" in r.err and len(r.err.splitlines()) == 1, r
    else:
        assert r.code == 0 and r.out == "written\n", r
        data = Path(json.loads(rl("volume", "inspect", "vol").out)[0]["Mountpoint"])
        assert (data / "written").read_text() == "x\n"
