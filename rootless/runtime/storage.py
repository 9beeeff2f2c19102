"""Which storage driver a container gets, and preparing its root file system on the host side."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rootless.errors import UsageError
from rootless.paths import runtime_dir
from rootless.store.store import Store

DRIVERS = ("overlay", "fuse-overlay", "vfs")


@dataclass(frozen=True)
class DriverChoice:
    name: str
    reason: str


def kernel_overlay_usable(store: Store) -> tuple[bool, str]:
    """Probed once per kernel and id mode, then remembered in the runtime dir (the probe forks a
    user namespace and mounts, which would cost every `rl run`)."""
    cache = runtime_dir() / f"overlay-probe-{os.uname().release}-{store.mapping.mode}.json"
    try:
        d = json.loads(cache.read_text())
        return bool(d["ok"]), str(d["detail"])
    except (OSError, ValueError, KeyError):
        pass
    from rootless.host import probe

    ability = probe.kernel_overlay(store.mapping, store.scratch.dir)
    xattrs = probe.user_xattrs(store.root)
    ok = ability.ok and xattrs.ok
    detail = ability.detail if not ability.ok or xattrs.ok else xattrs.detail
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = cache.with_suffix(f".{os.getpid()}")
        tmp.write_text(json.dumps({"ok": ok, "detail": detail}))
        os.rename(tmp, cache)
    except OSError:
        pass
    return ok, detail


def choose_driver(store: Store, requested: str | None) -> DriverChoice:
    requested = requested or os.environ.get("RL_STORAGE_DRIVER") or None
    if requested:
        if requested not in DRIVERS:
            raise UsageError(f"unknown storage driver {requested!r}: use one of {', '.join(DRIVERS)}")
        if requested == "fuse-overlay":
            raise UsageError("the fuse-overlay storage driver is not available yet: use overlay or vfs")
        return DriverChoice(requested, "chosen by --storage-driver or RL_STORAGE_DRIVER")
    ok, detail = kernel_overlay_usable(store)
    if ok:
        return DriverChoice("overlay", "kernel overlayfs works in a user namespace here: native speed")
    return DriverChoice("vfs", f"{detail}; vfs copies the image for each container")


def prepare_rootfs(store: Store, driver: str, layers: list[Path], cdir: Path) -> Path:
    """Make the directories the driver mounts from; returns the mount point of the root."""
    merged = cdir / "merged"
    merged.mkdir(mode=0o755)
    if driver == "overlay":
        (cdir / "upper").mkdir(mode=0o755)
        (cdir / "work").mkdir(mode=0o700)
    else:
        from rootless.runtime.vfs import merge_layers

        store.in_userns(merge_layers, [str(p) for p in layers], str(merged))
    return merged
