"""COPY (and ADD of local files): the step's layer is written straight from the build context as
a tar, digested while written; no container runs.

Paths follow Docker: a relative destination is under WORKDIR; a destination ending in `/`, or
one the image has as a directory, or several sources, or a directory source, means a directory;
a directory source copies its contents; the destination's symlinks resolve inside the image.
Directories the destination needs are created (owned like the copied files) unless the image has
them, whose owners and modes the layer then leaves alone.
"""
from __future__ import annotations

import copy
import json
import os
import posixpath
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rootless.build import cache, heredoc
from rootless.build.context import (
    SourceEntry,
    hash_sources,
    match_sources,
    walk_sources,
)
from rootless.build.dockerfile import Dockerfile, Instruction
from rootless.errors import DockerfileError, RlError
from rootless.build.expand import expand
from rootless.build.ignore import Ignore
from rootless.image.derive import HashingWriter
from rootless.runtime import users
from rootless.runtime.vfs import merge_layers
from rootless.values import replace, valueclass

if TYPE_CHECKING:
    from rootless.build.engine import Builder, StageState


# In every COPY/ADD cache key, changed with a fix that changes what the same step makes: a layer
# an older rl made wrong (a file where the image had a directory, an archive's owners lost) is
# then not found again, which only --no-cache got past.
_LAYER_RULES = "2"


@valueclass
class CopyJob:
    """One COPY's layer, made in one process where both its sources and the image's layers are
    readable (the user namespace): the context or a merged copy of the --from image."""

    command: str
    line: int
    patterns: tuple[str, ...]
    target: str  # absolute, in the image
    dest_is_dir: bool  # the destination ended in / (or is . or ..)
    chown: str | None
    mode: int | None
    clamp: int | None  # SOURCE_DATE_EPOCH
    dest_layers: tuple[str, ...]  # the image being built, lowest first
    out: str  # where the tar goes
    context: str | None = None  # COPY from the build context...
    ignore: Ignore | None = None
    from_layers: tuple[str, ...] = ()  # ...or --from an image: its layers, merged into from_tree
    from_tree: str = ""
    owners: str = "real"  # how --from files carry their owners: "real", or "xattr" in single-id mode
    extract: bool = True  # ADD unpacks local archives (never fetched ones, as Docker)
    inline: str = ""  # a directory of the heredoc sources' files, copied after the other sources
    inline_names: tuple[str, ...] = ()


def copy_step(builder: Builder, df: Dockerfile, state: StageState, instr: Instruction, env: dict[str, str]) -> None:
    from rootless.build.engine import source_date_epoch

    for unsupported in ("checksum", "keep-git-dir"):
        if instr.has_flag(unsupported):
            raise DockerfileError(f"{instr.command} --{unsupported} is not supported yet", instr.line)
    docs = [h for a in instr.args[:-1] if (h := instr.heredoc(a)) is not None]
    words = [expand(a, env, df.escape) for a in instr.args if instr.heredoc(a) is None]
    patterns, dest = words[:-1], words[-1]
    urls = [p for p in patterns if p.startswith(("http://", "https://"))]
    if urls and instr.command == "COPY":
        raise DockerfileError("COPY cannot fetch URLs: use ADD", instr.line)
    if urls and len(urls) != len(patterns):
        raise DockerfileError("ADD takes either URLs or files of the context, not both at once", instr.line)
    if len(patterns) + len(docs) > 1 and not dest.endswith("/"):
        raise DockerfileError(f"When using {instr.command} with more than one source file, the destination "
                              "must be a directory and end with a /", instr.line)
    section = state.config.get("config") or {}
    target = posixpath.normpath(posixpath.join(section.get("WorkingDir") or "/", dest))
    # BuildKit expands ARGs and ENV in --chown (CopyCommand.Expand), not in --chmod.
    chown, chmod = instr.flag("chown"), instr.flag("chmod")
    chown = expand(chown, env, df.escape) if chown is not None else None
    store = builder.store
    job = CopyJob(
        instr.command, instr.line, tuple(patterns), target, dest.endswith("/") or dest in (".", ".."), chown,
        _chmod(chmod, instr.line) if chmod else None, source_date_epoch(),
        tuple(str(p) for p in store.layer_paths(state.image)) if state.image is not None else (),
        str(store.scratch.new_path("layer")), owners=store.owners,
    )
    source = instr.flag("from")
    if urls:
        fetched = str(store.scratch.new_path("fetched"))
        names = _fetch(urls, fetched, instr.line)
        ignore = Ignore()
        what = hash_sources(fetched, names, ignore)
        job = replace(job, context=fetched, ignore=ignore, patterns=tuple(names), extract=False)
    elif source is None:
        ctx = builder.opts.context
        ignore = Ignore.load(ctx)
        sources = match_sources(ctx, patterns, ignore, instr.command)
        what = hash_sources(ctx, sources, ignore)
        job = replace(job, context=ctx, ignore=ignore)
    else:
        if instr.command == "ADD":
            raise DockerfileError("ADD does not take --from: use COPY --from", instr.line)
        image = builder.image_for(expand(source, env, df.escape), instr.line)
        what = image.id
        job = replace(job, from_layers=tuple(str(p) for p in store.layer_paths(image)),
                      from_tree=str(store.scratch.new_path("from")))
    if docs:
        inline = store.scratch.new_path("inline")
        names = tuple(heredoc.write_sources(instr, docs, env, inline))
        what += hash_sources(str(inline), names, Ignore())
        job = replace(job, inline=str(inline), inline_names=names)
    parent = state.image.id if state.image is not None else "scratch"
    key = cache.step_key(parent, [instr.command, _LAYER_RULES, json.dumps(patterns), target, str(job.dest_is_dir),
                                  chown or "", chmod or "", source or ""], {}, what)

    def make() -> Any:
        with store.adding():
            diff_id = store.in_userns(write_copy_layer, job)
            return builder.derive_layer(state, " ".join(instr.original.split()), (Path(job.out), diff_id))

    builder.cached_or(state, key, make)


def write_copy_layer(job: CopyJob) -> str:
    """Write the layer tar of a COPY to job.out; returns its DiffID."""
    from rootless.build import imagefs

    if job.from_layers:
        os.mkdir(job.from_tree, 0o700)
        merge_layers(job.from_layers, job.from_tree)
        root, ignore = job.from_tree, Ignore()
    else:
        assert job.context is not None and job.ignore is not None
        root, ignore = job.context, job.ignore
    sources = match_sources(root, job.patterns, ignore, job.command)
    entries = [(root, e) for e in walk_sources(root, sources, ignore)]
    entries += [(job.inline, e) for e in walk_sources(job.inline, job.inline_names, Ignore())]
    layers = list(job.dest_layers)
    target, target_is_dir = imagefs.copy_target(layers, job.target) if layers else (job.target, False)
    into_dir = (job.dest_is_dir or target_is_dir or len(sources) + len(job.inline_names) > 1
                or any(e.name == "" and e.kind == "dir" for _, e in entries))
    chowned = _owner(job.chown, imagefs.read_text(layers, "/etc/passwd") if layers else None,
                     imagefs.read_text(layers, "/etc/group") if layers else None, job.line) if job.chown else None
    # Files of the context belong to root, as with Docker; those of an archive ADD unpacks, and
    # of an image, keep theirs.
    fixed = chowned if chowned is not None or job.from_layers else (0, 0)
    archives = {e.path for r, e in entries if job.command == "ADD" and job.extract and e.kind == "file"
                and r == root and _is_archive(os.path.join(root, e.path))}
    plan = [(r, e, _target_of(e, target, into_dir)) for r, e in entries]
    wanted = sorted({d for _, _, t in plan for d in _ancestors(t)}
                    | ({target} if into_dir or archives else set()))
    try:
        have = imagefs.existing_dirs(layers, wanted, job.owners) if layers else {}
    except NotADirectoryError as e:
        raise DockerfileError(f"{job.command}: cannot copy to {job.target}: {e}", job.line) from e
    made_by = fixed or (0, 0)
    with open(job.out, "wb") as f:
        w = HashingWriter(f)  # type: ignore[arg-type]
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            made = job.clamp if job.clamp is not None else time.time()
            for d in wanted:
                if d == "/":
                    continue
                if d in have:
                    uid, gid, perms, mtime = have[d]
                    tf.addfile(_info(d, tarfile.DIRTYPE, perms, uid, gid, mtime))
                else:
                    tf.addfile(_info(d, tarfile.DIRTYPE, 0o755, *made_by, made))
            for r, e, t in plan:
                if e.kind == "dir" and e.name == "":
                    continue  # its contents go to the target, made above when missing
                if r == root and e.path in archives:
                    dirs = _ArchiveDirs(tf, layers, job.owners, made, wanted, job.line)
                    _extract_into(tf, os.path.join(root, e.path), target, chowned, job.clamp, job.line, dirs)
                    continue
                _add(tf, r, e, t, fixed if r == root else made_by, job.owners, job.mode, job.clamp)
    return w.digest


def mkdir_layer(builder: Builder, state: StageState, path: str) -> tuple[Path, str] | None:
    """WORKDIR makes its directory, as BuildKit does: a layer with the directories the image
    lacks (root's, 0755, and their existing parents as they are), or None when it has them."""
    store = builder.store
    layers = [str(p) for p in store.layer_paths(state.image)] if state.image is not None else []
    try:
        wanted, have = store.in_userns(_workdir_dirs, layers, path, store.owners) if layers \
            else (sorted({path, *_ancestors(path)} - {"/"}), {})
    except DockerfileError as e:
        raise DockerfileError(str(e)) from e  # out of the user namespace it is its message only
    return _dirs_layer(builder, wanted, have)


def volume_layer(builder: Builder, state: StageState, paths: list[str]) -> tuple[Path, str] | None:
    """VOLUME makes its directories, as buildah does (mkdir_layer's layer), except where the image
    has a file or symlink on the way: the runtime finds that path inside the image."""
    from rootless.build import imagefs

    store = builder.store
    layers = [str(p) for p in store.layer_paths(state.image)] if state.image is not None else []
    full = [posixpath.normpath("/" + p.lstrip("/")) for p in paths]
    wanted = sorted({d for p in full for d in (p, *_ancestors(p))} - {"/"})
    have, files = store.in_userns(imagefs.dirs_and_files, layers, wanted, store.owners) if layers else ({}, [])
    wanted = [d for d in wanted if not any(d == f or d.startswith(f + "/") for f in files)]
    return _dirs_layer(builder, wanted, have)


def _dirs_layer(builder: Builder, wanted: list[str],
                have: dict[str, tuple[int, int, int, int]]) -> tuple[Path, str] | None:
    """A layer with the directories `wanted` (parents first) as the image `have`s them or new
    (root's, 0755), or None when the image has them all."""
    from rootless.build.engine import source_date_epoch

    store = builder.store
    if all(d in have for d in wanted):
        return None
    epoch = source_date_epoch()
    made = epoch if epoch is not None else time.time()
    tar = store.scratch.new_path("layer")
    with open(tar, "wb") as f:
        w = HashingWriter(f)  # type: ignore[arg-type]
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            for d in wanted:
                uid, gid, perms, mtime = have.get(d, (0, 0, 0o755, made))
                tf.addfile(_info(d, tarfile.DIRTYPE, perms, uid, gid, mtime))
    return tar, w.digest


def _workdir_dirs(layers: list[str], path: str, owners: str) -> tuple[list[str], dict[str, tuple[int, int, int, int]]]:
    """The directories WORKDIR `path` needs, its symlinks resolved inside the image as Docker
    does (`WORKDIR /lib/x` with /lib -> usr/lib makes /usr/lib/x), and those the image has."""
    from rootless.build import imagefs

    real, _ = imagefs.copy_target(layers, path)
    wanted = sorted({real, *_ancestors(real)} - {"/"})
    try:
        return wanted, imagefs.existing_dirs(layers, wanted, owners)
    except NotADirectoryError as e:  # an RlError, to come out of the user namespace as it is
        raise DockerfileError(f"WORKDIR {path}: {e}") from e


def _fetch(urls: list[str], into: str, line: int) -> list[str]:
    """Download ADD's URLs into a directory; returns the file names (the URLs' last path
    components). Files are 0600 with the server's Last-Modified time, as Docker makes them."""
    import email.utils
    import shutil
    import urllib.error
    import urllib.parse
    import urllib.request

    os.mkdir(into, 0o700)
    names = []
    for url in urls:
        name = posixpath.basename(urllib.parse.urlsplit(url).path)
        if not name:
            raise DockerfileError(f"ADD {url}: cannot tell the file name from the URL: give a destination "
                                  "file name", line)
        path = os.path.join(into, name)
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
                shutil.copyfileobj(r, f)
                modified = r.headers.get("Last-Modified")
        except urllib.error.HTTPError as e:
            raise DockerfileError(f"ADD {url}: cannot fetch it: HTTP {e.code} {e.reason}", line) from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DockerfileError(f"ADD {url}: cannot fetch it: {reason}", line) from e
        os.chmod(path, 0o600)
        if modified:
            try:
                t = email.utils.parsedate_to_datetime(modified).timestamp()
                os.utime(path, (t, t))
            except (TypeError, ValueError):
                pass
        names.append(name)
    return names


def _is_archive(path: str) -> bool:
    """ADD unpacks a local tar, plain or compressed (gzip, bzip2, xz, zstd), as Docker does."""
    from rootless.image import oci

    with open(path, "rb") as f:
        head = f.read(512)
    kind = oci.sniff_compression(head)
    if kind != "none":
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


class _ArchiveDirs:
    """Where the directories an archive's entries go into are, as Docker's untar finds them: one
    the archive lists is its own; one it does not is the image's, its symlink to a directory
    followed inside the image, and the layer carries it with its owner and mode (or unpacking
    the layer would make it root's 0755 over the image's: a /tmp losing its sticky bit); one
    neither has is made root's 0755."""

    def __init__(self, tf: tarfile.TarFile, layers: list[str], owners: str, mtime: float, written: list[str],
                 line: int) -> None:
        self.tf, self.layers, self.owners, self.mtime, self.line = tf, layers, owners, mtime, line
        self.where = {d: d for d in ["/", *written]}  # a directory as named -> where the layer has it
        self.written = {"/", *written}
        self.absent: set[str] = set()  # directories the layer makes that the image lacks

    def listed(self, named: str, at: str) -> None:
        self.where[named] = at
        self.written.add(at)

    def place(self, named: str) -> str:
        """Where the directory `named` (absolute, as the archive names it under the target) is."""
        todo = []
        d = named
        while d not in self.where:  # a loop, not recursion: a hostile archive nests deep
            todo.append(d)
            d = posixpath.dirname(d)
        for d in reversed(todo):
            self.where[d] = self._find(posixpath.join(self.where[posixpath.dirname(d)], posixpath.basename(d)), d)
        return self.where[named]

    def _find(self, at: str, named: str) -> str:
        from rootless.build import imagefs

        if posixpath.dirname(at) in self.absent or not self.layers:
            missing, have, real = [at] if at not in self.written else [], {}, at  # no lookup below one
        else:
            real = imagefs.copy_target(self.layers, at)[0]
            missing = [d for d in [*reversed(_ancestors(real)), real] if d not in self.written]
            try:
                have = imagefs.existing_dirs(self.layers, missing, self.owners)
            except NotADirectoryError as e:
                raise DockerfileError(f"ADD: cannot unpack the archive into {named}: {e}", self.line) from e
        for d in missing:
            if d not in have:
                self.absent.add(d)
            uid, gid, perms, mtime = have.get(d, (0, 0, 0o755, self.mtime))
            self.tf.addfile(_info(d, tarfile.DIRTYPE, perms, uid, gid, mtime))
            self.written.add(d)
        return real


def _extract_into(tf: tarfile.TarFile, path: str, target: str, fixed: tuple[int, int] | None, clamp: int | None,
                  line: int, dirs: _ArchiveDirs) -> None:
    """Copy the archive's entries into the layer under `target`: names that would leave it
    (absolute, `..`) are refused, device nodes skipped; owners as archived unless --chown."""
    from rootless.image import oci
    from rootless.image.compression import Prefixed, decompressing
    from rootless.image.extract import PAX_XATTR

    def placed(named: str) -> str:
        return posixpath.join(dirs.place(posixpath.dirname(named)), posixpath.basename(named))

    with open(path, "rb") as raw:
        head = raw.read(6)
        stream = decompressing(Prefixed(head, raw), oci.sniff_compression(head))
        try:
            with tarfile.open(fileobj=stream, mode="r|") as src:
                for m in src:
                    named = _inside(m.name, target, line)
                    # No devices; and no archive's own `.` (what `tar -C dir -cf a.tar .` lists
                    # first): Docker's untar skips it, the target keeps the owner and mode ADD
                    # made it with or the image gave it.
                    if m.isdev() or named == target:
                        continue
                    at = placed(named)
                    if m.isdir():
                        dirs.listed(named, at)
                    ti = copy.copy(m)
                    # tarfile writes pax records over the fields: only the xattrs may stay, or
                    # a long name or a big id would come back as archived.
                    ti.pax_headers = {k: v for k, v in m.pax_headers.items() if k.startswith(PAX_XATTR)}
                    ti.name = at.lstrip("/")
                    if m.islnk():
                        ti.linkname = placed(_inside(m.linkname, target, line)).lstrip("/")
                    if fixed is not None:
                        ti.uid, ti.gid = fixed
                    if clamp is not None:
                        ti.mtime = min(ti.mtime, clamp)
                    tf.addfile(ti, src.extractfile(m) if m.isreg() else None)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DockerfileError(f"ADD {os.path.basename(path)}: not a readable archive: {e}", line) from e


def _inside(name: str, target: str, line: int) -> str:
    """Where the archive entry `name` goes, absolute in the image, before any symlink there."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DockerfileError(f"ADD: the archive entry {name!r} would land outside {target}", line)
    return posixpath.join(target, *parts)


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


def _add(tf: tarfile.TarFile, root: str, e: SourceEntry, target: str, fixed: tuple[int, int] | None,
         owners: str, mode: int | None, clamp: int | None) -> None:
    path = os.path.join(root, e.path)
    st = os.lstat(path)
    perms = e.mode
    if fixed is not None:
        uid, gid = fixed
    else:
        from rootless.build.imagefs import owner

        uid, gid, perms = owner(path, st, owners)
    if mode is not None:
        perms = mode
    mtime = st.st_mtime if clamp is None else min(st.st_mtime, clamp)
    if e.kind == "dir":
        tf.addfile(_info(target, tarfile.DIRTYPE, perms, uid, gid, mtime))
    elif e.kind == "symlink":
        ti = _info(target, tarfile.SYMTYPE, 0o777, uid, gid, mtime)
        ti.linkname = e.target
        tf.addfile(ti)
    else:
        ti = _info(target, tarfile.REGTYPE, perms, uid, gid, mtime)
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
        raise DockerfileError(f"--chown={spec}: {e}", line) from e
    return uid, gid


def _by_name(text: str | None, name: str, file: str) -> int:
    """The id (third field, in both files) of `name` in the image's /etc/passwd or /etc/group."""
    for ln in (text or "").splitlines():
        parts = ln.split(":")
        if len(parts) > 2 and parts[0] == name and parts[2].isdigit():
            return int(parts[2])
    raise LookupError(f"no {name!r} in the image's /etc/{file}")
