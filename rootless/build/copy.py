"""COPY (and ADD of local files): the step's layer is written straight from the build context as
a tar, digested while written; no container runs.

Paths follow Docker: a relative destination is under WORKDIR; a destination ending in `/`, or
several sources, or a directory source, means a directory; a directory source copies its
contents. Directories the destination needs are created (owned like the copied files) unless the
image has them, whose owners and modes the layer then leaves alone.
"""
from __future__ import annotations

import json
import os
import posixpath
import tarfile
import time
from typing import TYPE_CHECKING, Any

from rootless.build import cache
from rootless.build.context import (
    SourceEntry,
    hash_sources,
    match_sources,
    walk_sources,
)
from rootless.build.dockerfile import Dockerfile, DockerfileError, Instruction
from rootless.build.expand import expand
from rootless.build.ignore import Ignore
from rootless.errors import RlError
from rootless.image.derive import HashingWriter
from rootless.runtime import users

if TYPE_CHECKING:
    from rootless.build.engine import Builder, _State


def copy_step(builder: Builder, df: Dockerfile, state: _State, instr: Instruction, env: dict[str, str]) -> None:
    from rootless.build import imagefs

    for unsupported in ("from", "checksum", "keep-git-dir"):
        if instr.has_flag(unsupported):
            raise DockerfileError(f"{instr.command} --{unsupported} is not supported yet", instr.line)
    words = [expand(a, env, df.escape) for a in instr.args]
    patterns, dest = words[:-1], words[-1]
    if any(p.startswith(("http://", "https://")) for p in patterns):
        raise DockerfileError(f"{instr.command} of a URL is not supported yet: fetch it in a RUN", instr.line)
    ctx = builder.opts.context
    ignore = Ignore.load(ctx)
    sources = match_sources(ctx, patterns, ignore, instr.command)
    section = state.config.get("config") or {}
    workdir = section.get("WorkingDir") or "/"
    target = posixpath.normpath(posixpath.join(workdir, dest))
    entries = list(walk_sources(ctx, sources, ignore))
    into_dir = dest.endswith("/") or dest in (".", "..") or any(e.name == "" and e.kind == "dir" for e in entries)
    if len(sources) > 1 and not dest.endswith("/"):
        raise DockerfileError(f"When using {instr.command} with more than one source file, the destination "
                              "must be a directory and end with a /", instr.line)
    chown, chmod = instr.flag("chown"), instr.flag("chmod")
    mode = _chmod(chmod, instr.line) if chmod else None
    content = hash_sources(ctx, sources, ignore)
    parent = state.image.id if state.image is not None else "scratch"
    key = cache.step_key(parent, [instr.command, json.dumps(sources), target, str(into_dir), chown or "",
                                  chmod or ""], {}, content)
    layers = [str(p) for p in builder.store.layer_paths(state.image)] if state.image is not None else []

    def make() -> Any:
        uid, gid = 0, 0
        if chown:
            passwd = builder.store.in_userns(imagefs.read_text, layers, "/etc/passwd") if layers else None
            group = builder.store.in_userns(imagefs.read_text, layers, "/etc/group") if layers else None
            uid, gid = _owner(chown, passwd, group, instr.line)
        plan = [(e, _target_of(e, target, into_dir)) for e in entries]
        wanted = sorted({d for _, t in plan for d in _ancestors(t)} | ({target} if into_dir else set()))
        try:
            have = set(builder.store.in_userns(imagefs.existing_dirs, layers, wanted)) if layers else set()
        except NotADirectoryError as e:
            raise DockerfileError(f"{instr.command}: cannot copy to {target}: {e}", instr.line) from None
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        clamp = int(epoch) if epoch and epoch.isdigit() else None
        with builder.store.adding():
            tar = builder.store.scratch.new_path("layer")
            with open(tar, "wb") as f:
                w = HashingWriter(f)  # type: ignore[arg-type]
                with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                    made = clamp if clamp is not None else time.time()
                    for d in wanted:
                        if d not in have and d != "/":
                            tf.addfile(_info(d, tarfile.DIRTYPE, mode or 0o755, uid, gid, made))
                    for e, t in plan:
                        if e.kind == "dir" and e.name == "":
                            continue  # its contents go to the target, made above when missing
                        _add(tf, ctx, e, t, uid, gid, mode, clamp)
            return builder.derive_layer(state, _one_line(instr.original), (tar, w.digest))

    builder._cached_or(state, key, make)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _target_of(e: SourceEntry, target: str, into_dir: bool) -> str:
    if e.name == "":
        if e.kind == "dir":
            return target
        return posixpath.join(target, posixpath.basename(e.source.rstrip("/"))) if into_dir else target
    return posixpath.join(target, e.name)


def _ancestors(path: str) -> list[str]:
    out = []
    p = posixpath.dirname(path)
    while p not in ("/", ""):
        out.append(p)
        p = posixpath.dirname(p)
    return out


def _info(path: str, kind: bytes, mode: int, uid: int, gid: int, mtime: float) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(path.lstrip("/"))
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    return ti


def _add(tf: tarfile.TarFile, ctx: str, e: SourceEntry, target: str, uid: int, gid: int, mode: int | None,
         clamp: int | None) -> None:
    path = os.path.join(ctx, e.path)
    mtime = os.lstat(path).st_mtime
    if clamp is not None:
        mtime = min(mtime, clamp)
    if e.kind == "dir":
        tf.addfile(_info(target, tarfile.DIRTYPE, mode if mode is not None else e.mode, uid, gid, mtime))
    elif e.kind == "symlink":
        ti = _info(target, tarfile.SYMTYPE, 0o777, uid, gid, mtime)
        ti.linkname = e.target
        tf.addfile(ti)
    else:
        ti = _info(target, tarfile.REGTYPE, mode if mode is not None else e.mode, uid, gid, mtime)
        with open(path, "rb") as f:
            ti.size = os.fstat(f.fileno()).st_size
            tf.addfile(ti, f)


def _chmod(text: str, line: int) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o7777:
        raise DockerfileError(f"invalid --chmod={text}: use octal permission bits, e.g. 755", line)
    return value


def _owner(spec: str, passwd: str | None, group: str | None, line: int) -> tuple[int, int]:
    """--chown=USER[:GROUP] by name or number, names looked up in the image; as BuildKit, a user
    without a group gets its own uid as gid when given as a number, its primary group by name."""
    user, _, grp = spec.partition(":")
    try:
        uid = int(user) if user.isdigit() else _by_name(passwd, user, "passwd")
        if grp:
            gid = int(grp) if grp.isdigit() else _by_name(group, grp, "group")
        elif user.isdigit():
            gid = uid
        else:
            gid = users.resolve_user(user, passwd, group, ()).gid
    except (LookupError, RlError) as e:
        raise DockerfileError(f"--chown={spec}: {e}", line) from None
    return uid, gid


def _by_name(text: str | None, name: str, file: str) -> int:
    """The id (third field, in both files) of `name` in the image's /etc/passwd or /etc/group."""
    for ln in (text or "").splitlines():
        parts = ln.split(":")
        if len(parts) > 2 and parts[0] == name and parts[2].isdigit():
            return int(parts[2])
    raise LookupError(f"no {name!r} in the image's /etc/{file}")
