"""COPY/ADD sources in the build context: which files a source names, the files under it after
.dockerignore (the engine copies exactly what `walk_sources` yields, and `hash_sources` hashes
the same walk, so the cache key and the copy always agree), and the content hash of a cache key.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence

from rootless.build.ignore import Ignore, clean, go_match, has_wildcards
from rootless.errors import RlError, SourceError
from rootless.runtime.paths import secure_join
from rootless.values import valueclass

_BUFFER = 1 << 20


@valueclass
class SourceEntry:
    source: str  # the source it was found under, relative to the context ("." is all of it)
    name: str  # its path relative to that source: "" for the source itself
    path: str  # where its data is in the context, relative: what the engine opens
    kind: str  # "file", "dir" or "symlink"
    mode: int  # permission bits, with setuid, setgid and sticky
    size: int
    target: str = ""  # a symlink's target


def match_sources(context_dir: str, patterns: Sequence[str], ignore: Ignore,
                  command: str = "COPY") -> list[str]:
    """The context paths COPY/ADD sources name: each source in the order given, the names a
    wildcard matches sorted; no duplicates. Wildcards follow Go's filepath.Match one path
    component at a time, as Docker's do. `/x` is the context's x, and so is `../x`."""
    out: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        rel = _relative(pattern)
        if not has_wildcards(rel):
            if _resolve(context_dir, rel) is None or _excluded(context_dir, rel, ignore):
                raise SourceError(f"{command} failed: file not found in build context or excluded "
                                  f"by .dockerignore: stat {pattern}: file does not exist")
            matches = [rel]
        else:
            matches = _glob(context_dir, rel, ignore, command)
            if not matches:
                raise SourceError(f"{command} failed: no source files were specified")
        for match in matches:
            if match not in seen:
                seen.add(match)
                out.append(match)
    return out


def walk_sources(context_dir: str, sources: Sequence[str], ignore: Ignore) -> Iterator[SourceEntry]:
    """Every entry under the sources (from `match_sources`), each source's own entry first,
    then its tree in name order. A symlink named as a source is followed (inside the context);
    symlinks under a directory are entries of their own. Paths .dockerignore excludes are left
    out, except the directories above a path an exception brings back."""
    for source in sources:
        real = _resolve(context_dir, source)
        if real is None:
            raise SourceError(f"file not found in build context: stat {source}: file does not exist")
        st = os.lstat(os.path.join(context_dir, real))
        kind = _kind(st.st_mode)
        if kind is None:
            continue
        yield SourceEntry(source, "", real, kind, stat.S_IMODE(st.st_mode),
                          st.st_size if kind == "file" else 0)
        if kind == "dir":
            yield from _walk_dir(context_dir, source, real, "", ignore, [])


def hash_sources(context_dir: str, sources: Sequence[str], ignore: Ignore) -> str:
    """A content hash of what `walk_sources` yields: names, kinds, permission bits, symlink
    targets and file contents; not times, owners or where the context is."""
    return hash_entries(context_dir, list(walk_sources(context_dir, sources, ignore)))


def hash_entries(context_dir: str, entries: Sequence[SourceEntry]) -> str:
    """`hash_sources` of a walk already made, for an engine that copies the same entries."""
    digests = _file_digests(context_dir, [e for e in entries if e.kind == "file"])
    total = hashlib.sha256()
    for entry in entries:
        # NUL never occurs in a name or a target, so these fields cannot run into each other.
        total.update(b"\0".join((
            entry.kind.encode(), b"%o" % entry.mode, os.fsencode(entry.source),
            os.fsencode(entry.name), os.fsencode(entry.target),
            b"%d" % entry.size if entry.kind == "file" else b"",
        )))
        total.update(b"\0")
        if entry.kind == "file":
            total.update(digests[entry.path])
        total.update(b"\n")
    return "sha256:" + total.hexdigest()


def _file_digests(context_dir: str, files: Sequence[SourceEntry]) -> dict[str, bytes]:
    # One thread, one reused buffer. Measured on this 2-CPU machine (other work running), a
    # context of 10,000 files of 0.1-8 KB (59 MB) and one of a single 1 GiB file, best of 3:
    #   one thread, os.read 64 KiB / 1 MiB / 8 MiB:   0.09 / 0.09 / 0.10 s,  1.25 / 1.34 / 1.29 s
    #   one thread, readv into a reused 1 MiB buffer: 0.11 s,                1.08 s
    #   hashlib.file_digest:                          0.20 s,                1.19 s
    #   thread pool, one task per file / 8 MiB piece: 0.43 s,                1.40 s
    #   thread pool, tasks batched to 1 MiB, 2 / 3:   0.16 / 0.21 s,         1.48 / 1.61 s
    # hashlib does release the GIL, but two SHA-256s in two threads took as long as one after
    # the other (0.49 s vs 2 x 0.26 s for 256 MiB, the same with two processes): the CPUs were
    # already busy, which is also how builds run. SHA-256 is the fastest hash here (SHA-NI:
    # 1.2 GB/s; SHA-1 1.1, BLAKE2b 0.46), and walking the small context costs about as much as
    # hashing it (0.095 s). hash_sources in all: 0.20-0.25 s for the 10,000 files, 1.26 s for 1 GiB.
    buf = bytearray(_BUFFER)
    view = memoryview(buf)
    out = {}
    for entry in files:
        digest = hashlib.sha256()
        try:
            fd = os.open(os.path.join(context_dir, entry.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise _unreadable(entry.path, e) from e
        try:
            while n := os.readv(fd, [buf]):
                digest.update(view[:n])
        finally:
            os.close(fd)
        out[entry.path] = digest.digest()
    return out


def _unreadable(path: str, error: OSError) -> SourceError:
    return SourceError(f"cannot read {path} in the build context: {error.strerror}; "
                       f"make it readable or list it in .dockerignore")


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None


def _walk_dir(context_dir: str, source: str, real: str, name: str, ignore: Ignore,
              pending: list[SourceEntry]) -> Iterator[SourceEntry]:
    # `pending`: excluded directories above the current one, yielded only once something
    # under them is brought back by an exception.
    try:
        with os.scandir(os.path.join(context_dir, real)) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise _unreadable(real, e) from e
    for child in children:
        child_real = child.name if real == "." else f"{real}/{child.name}"
        child_name = f"{name}/{child.name}" if name else child.name
        st = child.stat(follow_symlinks=False)
        kind = _kind(st.st_mode)
        if kind is None:
            continue
        target = os.readlink(child.path) if kind == "symlink" else ""
        entry = SourceEntry(source, child_name, child_real, kind, stat.S_IMODE(st.st_mode),
                            st.st_size if kind == "file" else 0, target)
        if ignore.ignored(child_real):
            if kind == "dir" and ignore.has_exceptions:
                pending.append(entry)
                yield from _walk_dir(context_dir, source, child_real, child_name, ignore, pending)
                if pending and pending[-1] is entry:
                    pending.pop()
            continue
        if pending:
            yield from pending
            pending.clear()
        yield entry
        if kind == "dir":
            yield from _walk_dir(context_dir, source, child_real, child_name, ignore, pending)


def _relative(pattern: str) -> str:
    # BuildKit joins a source to the context's root: `/x` is the context's x, and `..` above the
    # root stays at the root (moby/buildkit#2131), where the classic builder refused it.
    return clean("/" + pattern).lstrip("/") or "."


def _excluded(context_dir: str, rel: str, ignore: Ignore) -> bool:
    if rel == ".":
        return False
    real = _resolve(context_dir, rel)
    if not ignore.ignored(rel) and (real is None or real == "." or not ignore.ignored(real)):
        return False
    # An excluded directory is still in the context when an exception brings back something
    # under it, as the directory that holds it.
    if real is None or not ignore.has_exceptions or not os.path.isdir(os.path.join(context_dir, real)):
        return True
    return next(_walk_dir(context_dir, rel, real, "", ignore, []), None) is None


def _glob(context_dir: str, rel: str, ignore: Ignore, command: str) -> list[str]:
    candidates = ["."]
    for part in rel.split("/"):
        if not has_wildcards(part):
            candidates = [part if c == "." else f"{c}/{part}" for c in candidates]
            continue
        found = []
        for candidate in candidates:
            real = _resolve(context_dir, candidate)
            if real is None or not os.path.isdir(os.path.join(context_dir, real)):
                continue
            for name in sorted(os.listdir(os.path.join(context_dir, real))):
                try:
                    if not go_match(part, name):
                        continue
                except ValueError:
                    raise SourceError(f"{command} failed: syntax error in pattern: {rel}")
                found.append(name if candidate == "." else f"{candidate}/{name}")
        candidates = found
    return [c for c in candidates
            if _resolve(context_dir, c) is not None and not _excluded(context_dir, c, ignore)]


def _resolve(context_dir: str, rel: str) -> str | None:
    """`rel` with its symlinks followed as if the context were the root directory (an absolute
    target or `..` cannot leave it): the path inside the context where the data is, or None if
    nothing is there."""
    try:
        path = secure_join(context_dir, rel)
    except RlError:
        raise SourceError(f"too many levels of symbolic links in the build context: {rel}")
    if not os.path.lexists(path):
        return None
    return os.path.relpath(path, context_dir)
