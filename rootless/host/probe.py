"""Probes of the host's abilities: each tries the real thing rather than guessing from versions."""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

from rootless.userns.idmap import IdMapping
from rootless.values import valueclass


@valueclass
class Ability:
    ok: bool
    detail: str


def user_xattrs(directory: Path) -> Ability:
    try:
        with tempfile.NamedTemporaryFile(dir=directory) as f:
            os.setxattr(f.name, "user.rl.probe", b"1")
    except OSError as e:
        return Ability(False, f"{directory} does not keep user xattrs ({e.strerror})")
    return Ability(True, f"{directory} keeps user xattrs")


def _try_overlay(base: str) -> None:
    import native

    native.unshare(native.CLONE_NEWNS)
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    for d in ("lower/d", "upper", "work", "merged"):
        os.makedirs(os.path.join(base, d))
    open(os.path.join(base, "lower/d/f"), "w").close()
    native.mount("overlay", os.path.join(base, "merged"), "overlay", 0,
                 f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work,userxattr")
    # Without userxattr support this is where EIO shows up: deleting a lower entry.
    os.unlink(os.path.join(base, "merged/d/f"))
    os.rmdir(os.path.join(base, "merged/d"))
    native.umount2(os.path.join(base, "merged"), native.MNT_DETACH)


def kernel_overlay(mapping: IdMapping, scratch: Path) -> Ability:
    from rootless.errors import RlError
    from rootless.userns.enter import run_in_userns

    scratch.mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix="overlay-probe-", dir=scratch)
    try:
        run_in_userns(mapping, _try_overlay, base)
        return Ability(True, f"kernel overlayfs mounts in a user namespace (kernel {platform.release()}, userxattr)")
    except RlError as e:
        return Ability(False, f"kernel overlayfs is not usable in a user namespace: {e}")
    finally:
        try:
            from rootless.userns.enter import run_in_userns as again

            again(mapping, shutil.rmtree, base, True)
        except Exception:  # noqa: BLE001 - best effort cleanup of a probe
            shutil.rmtree(base, ignore_errors=True)


def fuse() -> Ability:
    if not os.path.exists("/dev/fuse"):
        return Ability(False, "/dev/fuse does not exist (load the fuse module)")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return Ability(False, "/dev/fuse is not readable and writable by you (an administrator can "
                              "run 'chmod 666 /dev/fuse', as most distributions ship it)")
    helper = shutil.which("fusermount3") or shutil.which("fusermount")
    if helper is None:
        return Ability(False, "fusermount3 is missing (install the 'fuse3' package)")
    import importlib.util

    if importlib.util.find_spec("pyfuse3") is None:
        return Ability(False, "the pyfuse3 module is not installed")
    return Ability(True, f"/dev/fuse is usable, {helper} found")


def network_helpers() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in ("pasta", "slirp4netns")}


def tun() -> Ability:
    if not os.path.exists("/dev/net/tun"):
        return Ability(False, "/dev/net/tun does not exist: only --network host or none work")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return Ability(False, "/dev/net/tun is not readable and writable by you: pasta and slirp4netns "
                              "cannot work, so only --network host or none do (an administrator can run "
                              "'chmod 666 /dev/net/tun')")
    return Ability(True, "/dev/net/tun is usable")


def cgroups() -> Ability:
    try:
        own = Path("/proc/self/cgroup").read_text().strip().splitlines()
    except OSError:
        return Ability(False, "no cgroup information")
    v2 = [line.split(":", 2)[2] for line in own if line.startswith("0::")]
    if not v2 or not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return Ability(False, "no cgroup v2: --memory, --cpus and --pids-limit cannot work here")
    path = Path("/sys/fs/cgroup") / v2[0].lstrip("/")
    if os.access(path, os.W_OK) and os.access(path / "cgroup.subtree_control", os.W_OK):
        return Ability(True, f"cgroup v2 delegated at {path}")
    return Ability(False, "cgroup v2 is not delegated to you (no systemd user session): --memory, "
                          "--cpus and --pids-limit cannot work here")
