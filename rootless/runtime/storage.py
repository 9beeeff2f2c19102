"""Which storage driver a container gets, and preparing its root file system on the host side."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from rootless import runcache
from rootless.errors import UsageError
from rootless.paths import open_runtime_dir
from rootless.store.store import Store
from rootless.values import valueclass

DRIVERS = ("overlay", "fuse-overlay", "vfs")


@valueclass
class DriverChoice:
    name: str
    reason: str


def probe_cache_name(root: Path, mode: str) -> str:
    """The name the kernel overlay probe's answer is remembered under: per kernel, id mode and
    the file system of the store (its type and device), since whether overlay takes its upper
    directory there differs between file systems (tmpfs, ext4, xfs, a FUSE mount...)."""
    import native

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fs_type, dev = native.fstatfs_type(fd), os.fstat(fd).st_dev
    finally:
        os.close(fd)
    return f"overlay-probe-{os.uname().release}-{mode}-{fs_type:x}-{dev:x}.json"


def kernel_overlay_usable(store: Store) -> tuple[bool, str]:
    """Probed once per kernel, id mode and store file system, then remembered in the runtime dir
    (the probe forks a user namespace and mounts, which would cost every `rl run`). Without a
    safe runtime dir nothing is remembered: every run probes."""
    from rootless.errors import RuntimeDirError

    name = probe_cache_name(store.root, store.mapping.mode)
    try:
        dir_fd = open_runtime_dir()
    except RuntimeDirError:
        dir_fd = -1
    try:
        known = _read_probe(dir_fd, name) if dir_fd >= 0 else None
        if known is not None:
            return known
        from rootless.host import probe

        ability = probe.kernel_overlay(store.mapping, store.scratch.dir)
        xattrs = probe.user_xattrs(store.root)
        ok = ability.ok and xattrs.ok
        detail = ability.detail if not ability.ok or xattrs.ok else xattrs.detail
        if dir_fd >= 0:
            _write_probe(dir_fd, name, ok, detail)
        return ok, detail
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


_PROBE_MAX = 4096


def _read_probe(dir_fd: int, name: str) -> tuple[bool, str] | None:
    """A remembered probe result, or None for anything that is not one we wrote: a link, a FIFO,
    a huge file, other JSON, text with control characters (it is printed by `rl info`)."""
    raw = runcache.read(dir_fd, name, _PROBE_MAX)
    try:
        d = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    ok, detail = d.get("ok"), d.get("detail")
    if not isinstance(ok, bool) or not isinstance(detail, str) or not detail.isprintable():
        return None
    return ok, detail


def _write_probe(dir_fd: int, name: str, ok: bool, detail: str) -> None:
    runcache.write(dir_fd, name, json.dumps({"ok": ok, "detail": detail}).encode())


def _fuse_ability():  # type: ignore[no-untyped-def]
    from rootless.host import (
        probe,  # not on the path of the default driver: it costs each start
    )

    return probe.fuse()


def choose_driver(store: Store, requested: str | None, userns: str = "") -> DriverChoice:
    # In single-id mode keep-id maps no root: nothing inside could mount the FUSE overlay, and
    # the owners it keeps in xattrs could not be shown anyway (only the user's id exists).
    fuse_unfit = store.mapping.mode == "single" and userns == "keep-id"
    requested = requested or os.environ.get("RL_STORAGE_DRIVER") or None
    if requested:
        if requested not in DRIVERS:
            raise UsageError(f"unknown storage driver {requested!r}: use one of {', '.join(DRIVERS)}")
        if requested == "fuse-overlay" and fuse_unfit:
            raise UsageError("the fuse-overlay storage driver cannot serve --userns keep-id without a "
                             "subordinate id range: use overlay or vfs")
        if requested == "fuse-overlay" and not (fuse := _fuse_ability()).ok:
            raise UsageError(f"the fuse-overlay storage driver cannot work here: {fuse.detail}")
        return DriverChoice(requested, "chosen by --storage-driver or RL_STORAGE_DRIVER")
    if store.mapping.mode == "single" and not fuse_unfit:
        fuse = _fuse_ability()
        if fuse.ok:
            return DriverChoice("fuse-overlay", "single-id mode: the FUSE overlay shows the files' real owners "
                                                "and modes, kept in xattrs")
        return DriverChoice("vfs", f"single-id mode wants the FUSE overlay, but {fuse.detail}; vfs copies "
                                   "the image for each container")
    ok, detail = kernel_overlay_usable(store)
    if ok:
        return DriverChoice("overlay", "kernel overlayfs works in a user namespace here: native speed")
    fuse = _fuse_ability()
    if fuse.ok:
        return DriverChoice("fuse-overlay", f"{detail}; the FUSE overlay stands in for it")
    return DriverChoice("vfs", f"{detail}, and {fuse.detail}; vfs copies the image for each container")


def prepare_rootfs(store: Store, driver: str, layers: list[Path], cdir: Path, keep_id: bool = False) -> Path:
    """Make the directories the driver mounts from; returns the mount point of the root. With
    keep_id, `layers` are the shifted copies (`keep_id_layers`) and the upper root is re-owned."""
    merged = cdir / "merged"
    merged.mkdir(mode=0o755)
    if driver != "vfs":
        (cdir / "upper").mkdir(mode=0o755)
        (cdir / "work").mkdir(mode=0o700)
        shift = _shift_ids(store) if keep_id else None
        if shift is not None:
            # The upper directory's owner is what the container sees as the owner of /.
            store.in_userns(_shift_one, str(cdir / "upper"), *shift)
    else:
        from rootless.runtime.vfs import merge_layers

        store.in_userns(merge_layers, [str(p) for p in layers], str(merged))
    return merged


def _shift_ids(store: Store) -> tuple[int, int] | None:
    """The ids keep-id keeps, when files must be re-owned for it (not in single-id mode, where
    every file is the user's anyway)."""
    m = store.mapping
    return (m.uids[0].outside, m.gids[0].outside) if m.mode == "subuid" else None


def _shift_one(path: str, uid: int, gid: int) -> None:
    from rootless.userns.keepid import shift_tree

    shift_tree(path, uid, gid, recursive=False)


def keep_id_layers(store: Store, layers: list[Path]) -> list[Path]:
    """The layers as a keep-id container must see them: copies with shifted owners, made once per
    layer and mapping and kept in the store beside the layer (GC removes them with it)."""
    shift = _shift_ids(store)
    if shift is None:
        return layers
    m = store.mapping
    key = "keep-id-" + "-".join(str(n) for r in (*m.uids, *m.gids) for n in (r.outside, r.count))
    out, todo = [], []
    for p in layers:
        dest = store.layers.shifted_path("sha256:" + p.name, key)
        out.append(dest)
        if not dest.is_dir():
            todo.append((str(p), str(store.scratch.new_path("shift")), str(dest.parent)))
    if todo:
        store.in_userns(_copy_shifted, todo, *shift)
    return out


def _copy_shifted(jobs: list[tuple[str, str, str]], uid: int, gid: int) -> None:
    import subprocess

    from rootless.userns.keepid import shift_tree

    for src, tmp, dest in jobs:
        os.mkdir(tmp, 0o700)
        # cp keeps owners, modes, xattrs (the overlay's opaque markers), whiteout devices and
        # hard links, and shares data blocks where the file system can.
        subprocess.run(["cp", "-a", "--reflink=auto", "--", src, os.path.join(tmp, "tree")], check=True,
                       stdin=subprocess.DEVNULL)
        shift_tree(os.path.join(tmp, "tree"), uid, gid)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Another rl made the same copy first; the scratch dir's cleanup takes ours.
