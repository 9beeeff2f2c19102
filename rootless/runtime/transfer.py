"""`rl cp`, `rl export` and `rl commit`: a container's files, read and written from the host.

Container-side I/O always runs in a helper process whose root directory is the container's root,
so the kernel resolves every container symlink inside the container, never on the host:
- a running container: the helper joins its user and mount namespaces (its root becomes the
  container's, as for `rl exec`);
- a stopped one: the helper makes its own user and mount namespaces, mounts the overlay as the
  container would (the vfs tree needs no mount) and chroots into it.
Files travel between the helper and `rl` as a tar stream over a pipe. The host side of `rl cp`
runs as the invoking user, so what it writes on the host is the user's and nothing more.

`rl export` reads a read-only overlay of the container's upper directory over its layers (for a
running container too): the container's own mount namespace would add its /proc, /sys and /dev,
which Docker leaves out of an export.
"""
from __future__ import annotations

import os
import pickle
import signal
import stat
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import native
from rootless.errors import ArchiveCorrupt, RlError, describe
from rootless.image import oci
from rootless.image.changes import apply_change
from rootless.image.derive import HashingWriter, derive
from rootless.image.extract import MergeOwners, extract_into
from rootless.image.reference import parse
from rootless.image.tarwrite import write_named, write_tar
from rootless.runtime import nsinit
from rootless.runtime.execute import Container, join_namespaces
from rootless.store.store import Store
from rootless.userns.enter import run_in_userns, spawn_in_userns
from rootless.userns.keepid import for_container
from rootless.values import valueclass

View = Literal["live", "snapshot"]
"""live: what the container's processes see (writable); snapshot: its root file system alone, read-only."""
Owner = Literal["root", "keep", "self"]
"""Who owns extracted files: the container's root, the ids in the tar, or whoever extracts."""


@valueclass
class PathInfo:
    exists: bool
    is_dir: bool
    parent_is_dir: bool


@valueclass
class CopyPlan:
    """Where a copy lands: the source goes into dest_dir as `name`, or with name None, the
    source directory's contents go into dest_dir."""

    dest_dir: str
    name: str | None


def plan_copy(src: str, src_is_dir: bool, dest: str, dest_info: PathInfo) -> CopyPlan:
    """Docker's rules: a file goes into an existing directory under its own name, or becomes
    DEST; a directory goes into an existing directory under its own name (its contents with
    SRC/.), or becomes DEST when DEST does not exist. DEST ending in / must be a directory."""
    contents = src_is_dir and (src.endswith("/.") or src in (".", "/"))
    base = os.path.basename(os.path.normpath(src))
    dest_norm = os.path.normpath(dest)
    if dest_info.exists and dest_info.is_dir:
        return CopyPlan(dest_norm, None if contents else base)
    if dest_info.exists:
        if src_is_dir:
            raise RlError(f"cannot copy a directory to a file: {dest}")
        return CopyPlan(os.path.dirname(dest_norm), os.path.basename(dest_norm))
    if dest.endswith("/") and not src_is_dir:
        raise RlError(f"the destination directory {dest} does not exist")
    if not dest_info.parent_is_dir:
        raise RlError(f"the parent directory of {dest} does not exist")
    return CopyPlan(os.path.dirname(dest_norm), os.path.basename(dest_norm))


def probe(path: str) -> PathInfo:
    """What `path` is, symlinks followed (a destination that is a link to a directory is one)."""
    parent = os.path.dirname(os.path.normpath(path))
    return PathInfo(os.path.exists(path), os.path.isdir(path), os.path.isdir(parent))


def source_kind(path: str) -> bool:
    """Whether a copy source is a directory. A symlink is copied as itself, unless SRC ends in /
    or /., which asks for the directory it points to."""
    follow = path.endswith("/") or path.endswith("/.")
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise RlError(f"no such file or directory: {path}")
    except NotADirectoryError:
        raise RlError(f"not a directory: {path}")
    if follow and not stat.S_ISDIR(st.st_mode):
        raise RlError(f"not a directory: {path}")
    return stat.S_ISDIR(st.st_mode)


def tar_out(src: str, plan: CopyPlan, out_fd: int) -> None:
    """Write src as a tar stream of names relative to plan.dest_dir; closes out_fd.

    Read from directory descriptors, never following a symlink below src: the other side (a
    container, or a volume it shares with the host) may swap files while they are read.
    """
    with open(out_fd, "wb") as f:
        # SRC/ and SRC/. name the directory a symlink points to (resolved in our root).
        follow = src.endswith(("/", "/."))
        root = src.removesuffix("/.") or "/"
        if plan.name is None:
            write_tar(root, f, owners="real", overlay_upper=False)  # type: ignore[arg-type]
        else:
            write_named(root, plan.name, f, follow=follow)  # type: ignore[arg-type]


def tar_in(dest_dir: str, in_fd: int, owner: Owner) -> None:
    """Extract the tar stream on in_fd into dest_dir; closes in_fd.

    Every entry is made relative to directory descriptors, with O_EXCL and O_NOFOLLOW: on the
    host the stream and the destination may both be the container's (a shared volume), and what
    it swaps in meanwhile is replaced or refused, never written through.
    """
    with open(in_fd, "rb") as f:
        try:
            dest_fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise RlError(f"cannot copy into {dest_dir}: {e.strerror}") from e
        try:
            extract_into(f, dest_fd, owners=_EXTRACT_OWNERS[owner])
        finally:
            os.close(dest_fd)


_EXTRACT_OWNERS: dict[Owner, MergeOwners] = {"root": "root", "keep": "real", "self": "self"}


# ---- the container-side helper -------------------------------------------------------------

class _Helper:
    """A helper process running one function with the container's root as its root."""

    def __init__(self, pid: int, res_r: int) -> None:
        self.pid = pid
        self.res_r = res_r

    def result(self) -> Any:
        chunks = []
        try:
            while True:
                b = os.read(self.res_r, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(self.res_r)
            os.waitpid(self.pid, 0)
        if not chunks:
            raise RlError("the container file helper died")
        kind, value = pickle.loads(b"".join(chunks))
        if kind == "error":
            raise RlError(value)
        return value


def _start(store: Store, c: Container, view: View, fn: Callable[..., Any], args: tuple[Any, ...],
           child_closes: tuple[int, ...] = ()) -> _Helper:
    """Start fn(*args) in a helper whose root is the container's; the parent's ends of pipes the
    helper uses are in child_closes."""
    if view == "live" and not c.running and c.rec.status == "running":
        # Mounting its overlay a second time, on the upper directory the container writes, is
        # what the kernel calls undefined behaviour.
        raise RlError(f"container {c.rec.name} is starting or stopping (its processes cannot be found): "
                      "try again in a moment")
    res_r, res_w = os.pipe()
    joined = view == "live" and c.running
    snapshot_mount = _snapshot_mount(store, c) if view == "snapshot" else ""
    fuse_scratch = str(store.scratch.new_path("snapshot")) if snapshot_mount == "fuse-overlay" else ""

    def child() -> int:
        os.close(res_r)
        for fd in child_closes:
            os.close(fd)
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        fuse = None
        try:
            if joined:
                _join(c)
            else:
                fuse = _enter_rootfs(c, view, snapshot_mount, fuse_scratch)
            # From here on the file system is the container's: an import Python makes lazily
            # would run the container's code (CVE-2019-14271, where docker cp loaded its NSS
            # modules), so only built-in modules and those loaded already are left to import.
            sys.path.clear()
            sys.path_importer_cache.clear()
            payload: tuple[str, Any] = ("ok", fn(*args))
        except (OSError, RlError) as e:
            payload = ("error", describe(e))
        finally:
            if fuse is not None:
                fuse.unmount()
        data = pickle.dumps(payload)
        view_ = memoryview(data)
        while view_:
            view_ = view_[os.write(res_w, view_):]
        return 0

    try:
        if joined:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 125
                try:
                    code = child()
                finally:
                    os._exit(code)
        else:
            pid = spawn_in_userns(for_container(store.mapping, c.spec.userns), child, native.CLONE_NEWNS)
    finally:
        os.close(res_w)
    return _Helper(pid, res_r)


def _join(c: Container) -> None:
    try:
        join_namespaces(c.ns_pid, ("user", "mnt"), c.pid1)
    except (FileNotFoundError, ProcessLookupError):
        raise RlError(f"container {c.rec.name} is not running")  # it exited meanwhile


def _snapshot_mount(store: Store, c: Container) -> str:
    """How a read-only view of a container's files is mounted: the kernel overlay where it works
    (with user xattrs as they are on disk, so owners kept in xattrs read right), else our FUSE
    overlay; "" for vfs, whose tree needs no mount."""
    if c.spec.driver == "vfs":
        return ""
    if c.spec.driver == "overlay":
        return "overlay"
    from rootless.runtime.storage import kernel_overlay_usable

    return "overlay" if kernel_overlay_usable(store)[0] else "fuse-overlay"


def _enter_rootfs(c: Container, view: View, snapshot_mount: str, scratch: str):  # type: ignore[no-untyped-def]
    """In a fresh user and mount namespace: mount the container's root and chroot into it.
    Returns the FUSE daemon's handle when one serves the mount (the caller unmounts it)."""
    native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE)
    rootfs = str(c.cdir / "merged")
    fuse = None
    if view == "live":
        fuse = nsinit.mount_rootfs(c.spec, str(c.cdir), rootfs)
    elif snapshot_mount:
        # The upper directory as the top lower layer: a read-only view that never shares
        # the running container's upper and work directories.
        lowers = [str(c.cdir / "upper"), *reversed(c.spec.layers)]
        if snapshot_mount == "overlay":
            native.mount("overlay", rootfs, "overlay", native.MS_RDONLY, f"lowerdir={':'.join(lowers)},userxattr")
        else:
            import fuse_overlay

            for d in ("upper", "work"):
                os.makedirs(os.path.join(scratch, d))
            try:
                fuse = fuse_overlay.mount(lowers, os.path.join(scratch, "upper"), os.path.join(scratch, "work"),
                                          rootfs, ["xattr_permissions=2"] if c.spec.single_id else [])
            except fuse_overlay.FuseOverlayError as e:
                raise RlError(f"cannot mount the FUSE overlay: {e}") from e
    os.chdir(rootfs)
    os.chroot(".")
    os.chdir("/")
    return fuse


def _call(store: Store, c: Container, view: View, fn: Callable[..., Any], *args: Any) -> Any:
    return _start(store, c, view, fn, args).result()


# ---- cp ------------------------------------------------------------------------------------

def copy_out(store: Store, c: Container, src: str, dest: str) -> None:
    """CONTAINER:src -> host dest; what lands on the host belongs to the invoking user."""
    src = _container_path(src)
    dest_info = probe(dest)
    src_is_dir = _call(store, c, "live", source_kind, src)
    plan = plan_copy(src, src_is_dir, dest, dest_info)
    r, w = os.pipe()
    helper = _start(store, c, "live", tar_out, (src, plan, w), child_closes=(r,))
    os.close(w)
    try:
        tar_in(plan.dest_dir, r, "self")
    except (OSError, RlError) as e:
        try:
            helper.result()
        except RlError as helper_error:
            # A stream cut short is the helper's failure, told better by its own message; any
            # other error is ours, and the helper only saw the pipe close.
            if isinstance(e, ArchiveCorrupt):
                raise helper_error from helper_error
        raise RlError(f"cannot copy {src} out of {c.rec.name}: {describe(e)}") from e
    helper.result()


def copy_in(store: Store, c: Container, src: str, dest: str, keep_owners: bool) -> None:
    """host src -> CONTAINER:dest; what lands belongs to the container's root (-a: the source's ids)."""
    dest = _container_path(dest)
    src_is_dir = source_kind(src)
    plan = plan_copy(src, src_is_dir, dest, _call(store, c, "live", probe, dest))
    r, w = os.pipe()
    helper = _start(store, c, "live", tar_in, (plan.dest_dir, r, "keep" if keep_owners else "root"),
                    child_closes=(w,))
    os.close(r)
    try:
        tar_out(src, plan, w)
    except BrokenPipeError:
        pass  # the helper stopped reading: its result says why
    except BaseException:
        try:
            helper.result()
        except RlError:
            pass  # it only saw the stream cut short: ours is the error to tell
        raise
    helper.result()


def copy_in_archive(store: Store, c: Container, in_fd: int, dest: str, keep_owners: bool) -> None:
    """A tar stream (`rl cp - CONTAINER:DEST`) -> the existing directory dest; as copy_in, what
    lands belongs to the container's root (-a: the ids in the tar). The helper reads in_fd."""
    dest = _container_path(dest)
    info = _call(store, c, "live", probe, dest)
    if not info.is_dir:
        raise RlError(f"the destination {dest} must be an existing directory to extract a tar stream into")
    _start(store, c, "live", tar_in, (dest, in_fd, "keep" if keep_owners else "root")).result()


def _container_path(path: str) -> str:
    """Container paths are relative to its root, as in Docker."""
    return path if path.startswith("/") else "/" + path


# ---- export --------------------------------------------------------------------------------

def export(store: Store, c: Container, out_fd: int) -> None:
    """The container's whole file system as a tar on out_fd, with the owners it has inside."""
    _call(store, c, "snapshot", _export_root, out_fd, store.owners)


def _export_root(out_fd: int, owners: str) -> None:
    with open(out_fd, "wb", buffering=0, closefd=False) as f:
        write_tar("/", f, owners=owners, overlay_upper=False)  # type: ignore[arg-type]


# ---- commit --------------------------------------------------------------------------------

@valueclass
class CommitOptions:
    reference: str | None = None
    changes: tuple[str, ...] = ()
    message: str | None = None
    author: str | None = None


def commit(store: Store, c: Container, opts: CommitOptions) -> str:
    """A new image: the container's image plus one layer of its changes; returns the image id."""
    ref = parse(opts.reference) if opts.reference else None
    image = store.image(c.rec.image_id)
    base = store.config(image)
    section = dict(base.get("config") or {})
    for change in opts.changes:
        apply_change(section, change)
    with store.adding():
        tar = store.scratch.new_path("commit")
        diff_id = tar_changes(store, c, tar)
        history: dict[str, Any] = {"created_by": " ".join(c.spec.args)}
        if opts.author:
            history["author"] = opts.author
        if opts.message:
            history["comment"] = opts.message
        config = {**base, "author": opts.author} if opts.author else base
        now = oci.rfc3339(datetime.now(timezone.utc).timestamp())
        rec = derive(store, image, config, section, history, now, (tar, diff_id), [ref] if ref else [])
    return rec.id


def tar_changes(store: Store, c: Container, tar: Path, clamp_mtime: int | None = None) -> str:
    """The container's changes to its image as a layer tar (OCI whiteouts) at `tar`; returns its
    DiffID, digested while written. Overlay drivers: its upper directory as it is; vfs: the
    difference of its tree and a fresh copy of the image."""
    try:
        rl_made = frozenset((c.cdir / nsinit.MOUNT_POINTS).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        rl_made = frozenset()
    if c.spec.driver != "vfs":
        return _in_its_userns(store, c, _tar_upper, str(c.cdir / "upper"), str(tar), store.owners,  # type: ignore[no-any-return]
                              rl_made, clamp_mtime)
    image_tree, upper = store.scratch.new_path("commit-image"), store.scratch.new_path("commit-upper")
    image_tree.mkdir()
    upper.mkdir()
    return _in_its_userns(store, c, _tar_vfs_changes, list(c.spec.layers), str(image_tree),  # type: ignore[no-any-return]
                          str(c.cdir / "merged"), str(upper), str(tar), store.owners, rl_made, clamp_mtime)


def _in_its_userns(store: Store, c: Container, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) where the container's files show the owners they have inside (keep-id included)."""
    if store.mapping.mode != "subuid":
        return fn(*args)
    return run_in_userns(for_container(store.mapping, c.spec.userns), fn, *args)


def _tar_upper(upper: str, out: str, owners: str, exclude: frozenset[str], clamp_mtime: int | None) -> str:
    """The upper directory as a layer tar at `out`, without `exclude`; returns its DiffID."""
    with open(out, "wb") as f:
        w = HashingWriter(f)  # type: ignore[arg-type]
        write_tar(upper, w, owners=owners, overlay_upper=True, exclude=exclude,  # type: ignore[arg-type]
                  clamp_mtime=clamp_mtime)
    return w.digest


def _tar_vfs_changes(layers: list[str], image_tree: str, merged: str, upper: str, out: str, owners: str,
                     exclude: frozenset[str], clamp_mtime: int | None) -> str:
    from rootless.runtime.treediff import write_upper
    from rootless.runtime.vfs import merge_layers

    merge_layers(layers, image_tree)
    write_upper(image_tree, merged, upper)
    return _tar_upper(upper, out, owners, exclude, clamp_mtime)


