"""The peer tools, run as the test user: podman on a scratch store, and the OCI command line tools.

A test that needs a tool that is not installed is skipped; any other trouble with a tool fails it.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Rl, tree_snapshot

OVERRIDE_XATTR = "user.containers.override_stat"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(*args: str | Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)
    assert p.returncode == 0, f"{' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def effective_snapshot(root: Path) -> dict[str, tuple]:  # type: ignore[type-arg]
    """tree_snapshot with the modes a container sees: in single-id mode rl keeps directories
    writable on disk and the real mode in an xattr, as fuse-overlayfs reads it."""
    snap = tree_snapshot(root)
    for rel, (mode, size, target) in snap.items():
        try:
            value = os.getxattr(root / rel, OVERRIDE_XATTR, follow_symlinks=False).decode()
        except OSError:
            continue
        perms = int(value.split(":")[2], 8)
        snap[rel] = (stat.S_IFMT(mode) | perms, size, target)
    return snap


def _has_subuid_range() -> bool:
    # podman reads /etc/subuid itself, whatever RL_IDMAP asks of rl.
    from rootless.userns.idmap import SUBUID_FILE, read_subid_file

    uid = os.getuid()
    return read_subid_file(SUBUID_FILE, pwd.getpwuid(uid).pw_name, uid) is not None


@dataclass(frozen=True)
class Podman:
    """podman on a private store; every call carries the storage options (see the peers notes)."""

    base: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, *args: str | Path, timeout: float = 300) -> str:
        return run(*self.base, *args, timeout=timeout, env=self.env)

    def tree(self, image: str) -> Path:
        """Where podman keeps the files of an image (vfs: one directory per layer, the top one whole)."""
        path = Path(self("unshare", *self.base, "image", "mount", image).strip())
        self("unshare", *self.base, "image", "umount", image)
        return path


# buildah leaves the mount points of its RUN containers in the image; BuildKit and rl do not.
BUILDAH_MOUNT_POINTS = ("/run directory 0:0 755",)
# The runtime writes these for each container: their contents differ by design.
RUNTIME_FILES = ("/etc/hostname", "/etc/hosts")
# Every path of the image but /proc, /sys and /dev, in three batches that run as fast on Debian's
# ten thousand files as on busybox's hundred: the stat line of each, the target of each symlink,
# the content hash of each regular file. Both tools' find, xargs, stat and md5sum understand them.
_FIND = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o"
LISTING = (f"{_FIND} -print0 | xargs -0 stat -c '%n|%F|%u:%g|%a|%h|%s'; echo '@links'; "
           f"{_FIND} -type l -print0 | xargs -0 -r stat -c '%n|%N'; echo '@hashes'; "
           f"{_FIND} -type f -print0 | xargs -0 -r md5sum")


def listing(rl: Rl, image: str) -> list[str]:
    """One line a path, `path type uid:gid mode`, then ` -> target` for a symlink and
    ` links size md5` for a regular file. A directory's link count is left out: overlay file
    systems report 1."""
    out = rl("run", "--rm", "-u", "0", "--entrypoint", "sh", image, "-c", LISTING).out
    stats, rest = out.split("@links\n", 1)
    links, hashes = rest.split("@hashes\n", 1)
    targets = dict(ln.split("|", 1) for ln in links.splitlines())
    digests = {path: digest for digest, path in (ln.split("  ", 1) for ln in hashes.splitlines())}
    lines = []
    for ln in stats.splitlines():
        path, kind, owner, mode, nlink, size = ln.split("|")
        line = f"{path} {kind} {owner} {mode}"
        if kind == "symbolic link":
            line += f" -> {targets[path]}"
        elif kind.startswith("regular"):
            line += f" {nlink} {size}" + ("" if path in RUNTIME_FILES else f" {digests[path]}")
        if line not in BUILDAH_MOUNT_POINTS:
            lines.append(line)
    assert any(ln.startswith("/ directory ") for ln in lines), f"no listing of {image}: {out[:500]}"
    return sorted(lines)


def build_both(rl: Rl, podman: Podman, ctx: Path, tmp_path: Path, bases: tuple[str, ...] = ("busybox",),
               fmt: str = "oci") -> str:
    """Build `ctx` as the image `mine` with rl and with podman on rl's `bases`; podman's image is
    loaded into rl's store, and its id returned, so that both are looked at by the same tools."""
    rl("save", "-o", str(tmp_path / "base.tar"), *bases)
    podman("load", "-q", "-i", str(tmp_path / "base.tar"))
    rl("build", "-t", "mine", str(ctx))
    podman("build", "-q", "--network", "host", "--format", fmt, "-t", "theirs", str(ctx), timeout=600)
    podman("save", "--format", f"{fmt}-archive", "-o", str(tmp_path / "theirs.tar"), "theirs")
    rl("load", "-i", str(tmp_path / "theirs.tar"))
    return next(json.loads(n)["ID"] for n in rl("images", "--format", "json").out.split("\n")
                if n and "theirs" in json.loads(n)["Repository"])


@contextmanager
def podman_on(tmp_path: Path, driver: str) -> Iterator[Podman]:
    """podman on a private store under tmp_path, with the storage driver `driver`."""
    exe = need("podman")
    # Short paths: podman refuses a runroot longer than 50 characters and puts sockets under both.
    runtime = Path(tempfile.mkdtemp(prefix="rl-podman-", dir="/tmp"))
    os.chmod(runtime, 0o700)
    base = [exe, "--root", str(tmp_path / "podman-root"), "--runroot", str(runtime / "run"),
            "--storage-driver", driver, "--cgroup-manager=cgroupfs"]
    if not _has_subuid_range():
        # One id only: podman cannot chown files to their owners, so it must not try.
        base += ["--storage-opt", f"{driver}.ignore_chown_errors=true"]
    # Its own blob info cache too: a shared one lets a push reuse another test's blob in the
    # registry, whatever compression the test asked for.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime / "xdg"), "XDG_DATA_HOME": str(tmp_path / "podman-data")}
    (runtime / "xdg").mkdir(mode=0o700)
    env.pop("RL_ROOT", None)
    p = Podman(tuple(base), env)
    try:
        yield p
    finally:
        # Files podman made for other ids are only removable inside its user namespace.
        subprocess.run([*base, "unshare", "rm", "-rf", str(tmp_path / "podman-root"), str(runtime / "run")],
                       env=env, capture_output=True, timeout=120)
        # Rootless podman leaves a pause process per XDG_RUNTIME_DIR to hold its user namespace.
        try:
            os.kill(int((runtime / "xdg" / "libpod" / "tmp" / "pause.pid").read_text()), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman on vfs: the driver that changes nothing on the way, for comparing stores."""
    with podman_on(tmp_path, "vfs") as p:
        yield p


@pytest.fixture
def podman_overlay(tmp_path: Path) -> Iterator[Podman]:
    """podman on the kernel overlay: builds on Debian take a layer's changes, not a copy of the
    whole tree per step as on vfs (a minute per Dockerfile)."""
    with podman_on(tmp_path, "overlay") as p:
        yield p


@pytest.fixture
def buildah(podman: Podman) -> Podman:
    """buildah on podman's store, with the same options: each sees the other's images."""
    return Podman((need("buildah"), *podman.base[1:]), podman.env)
