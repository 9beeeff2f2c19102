"""What users type to `rl run` for mounts, environment and signals, read with Docker's rules.

Every error is a one-line UsageError naming the value at fault.
"""
from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterable, Mapping, Sequence

from rootless.errors import UsageError
from rootless.values import valueclass

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from typing import Literal

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's: a tmpfs from --tmpfs or --mount type=tmpfs is noexec,nosuid,nodev unless the user says
# otherwise, and has no size limit of its own (the kernel's default, half of RAM, applies).
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")

# Patterns, not compiled ones: re compiles (and caches) one when it is first used, so a start
# pays only for those it uses.
_VOLUME_NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
_PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
_MAX_OCTAL_MODE = 0o7777

# tmpfs flag options, grouped by the mount flag they set or clear: the last of a group wins.
_TMPFS_FLAG_GROUP = {
    "rw": "ro", "ro": "ro",
    "exec": "exec", "noexec": "exec",
    "suid": "suid", "nosuid": "suid",
    "dev": "dev", "nodev": "dev",
    "sync": "sync", "async": "sync",
    "dirsync": "dirsync",
    "atime": "atime", "noatime": "atime",
    "diratime": "diratime", "nodiratime": "diratime",
    "relatime": "relatime", "norelatime": "relatime",
    "strictatime": "strictatime", "nostrictatime": "strictatime",
}
_SIZE = r"[0-9]+[kmgtpeKMGTPE]?|[0-9]+%"
_TMPFS_DATA_CHECKS: dict[str, tuple[str, str]] = {
    "size": (_SIZE, "a number of bytes with an optional k, m or g suffix, or a percentage of RAM"),
    "nr_blocks": (_SIZE, "a number with an optional k, m or g suffix"),
    "nr_inodes": (_SIZE, "a number with an optional k, m or g suffix"),
    "mode": (r"[0-7]{1,4}", "an octal mode such as 1777"),
    "uid": (r"[0-9]+", "a number"),
    "gid": (r"[0-9]+", "a number"),
    "mpol": (r".+", "a memory policy such as interleave"),
}

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's strconv.ParseBool, as docker uses
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


@valueclass
class MountSpec:
    """One mount asked for on the command line.

    source: the host path of a bind, the name of a named volume, None for an anonymous volume or
    a tmpfs. options: mount(8) option names besides rw/ro (which `readonly` carries): tmpfs flags
    and data such as ("noexec", "nosuid", "nodev", "size=64m", "mode=1777"), a bind's propagation
    such as "rshared", or "nocopy" for a volume not to be filled from the image.
    """

    type: Literal["bind", "volume", "tmpfs"]
    source: str | None
    target: str
    readonly: bool
    options: tuple[str, ...]


def _clean(path: str) -> str:
    """path.Clean, which docker applies to both ends of a mount (normpath keeps a leading //)."""
    p = os.path.normpath(path)
    return "/" + p.lstrip("/") if p.startswith("//") else p


def _target(target: str, what: str) -> str:
    if not target:
        raise UsageError(f"{what}: the destination path is missing")
    if not target.startswith("/"):
        raise UsageError(f"{what}: the destination {target!r} must be an absolute path")
    cleaned = _clean(target)
    if cleaned == "/":
        raise UsageError(f"{what}: the destination can't be '/'")
    return cleaned


def _volume_name(name: str, what: str) -> str:
    if not re.fullmatch(_VOLUME_NAME, name):
        raise UsageError(f"{what}: {name!r} includes invalid characters for a local volume name, only "
                         "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; to bind a host directory, give its "
                         "absolute path")
    return name


def parse_volume(spec: str) -> MountSpec:
    """-v/--volume: [SOURCE:]DEST[:OPTIONS], SOURCE an absolute host path or a volume name.

    The host path of a bind need not exist: like docker, the runtime creates a missing one
    (`--mount type=bind` refuses it instead). Options: rw|ro, z|Z (SELinux relabelling, which
    rootless containers cannot do: accepted and ignored, as podman does without SELinux), one
    propagation mode (binds only), nocopy (volumes only).
    """
    what = f"invalid volume specification {spec!r}"
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise UsageError(f"{what}: use [SOURCE:]DESTINATION[:OPTIONS]")
    if len(parts) == 1:
        return MountSpec("volume", None, _target(parts[0], what), False, ())
    if len(parts) == 2 and not parts[1]:
        raise UsageError(f"{what}: the destination path is missing")
    if len(parts) == 2 and _valid_mode(parts[1]):
        raise UsageError(f"{what}: options need both a source and a destination (SOURCE:DEST:OPTIONS)")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if not _valid_mode(mode):
        raise UsageError(f"{what}: invalid options {mode!r} (known, at most one of each kind: rw or ro; "
                         f"z or Z; a propagation, {' or '.join(sorted(_PROPAGATIONS))}; nocopy)")
    words = mode.split(",") if mode else []
    readonly = "ro" in words
    propagation = [w for w in words if w in _PROPAGATIONS]
    nocopy = "nocopy" in words
    target = _target(target, what)
    if source.startswith("/"):
        if nocopy:
            raise UsageError(f"{what}: nocopy applies to volumes, not to a bind mount of a host path")
        return MountSpec("bind", _clean(source), target, readonly, tuple(propagation))
    if propagation:
        raise UsageError(f"{what}: propagation {propagation[0]!r} applies to bind mounts of host paths, "
                         "not to volumes")
    return MountSpec("volume", _volume_name(source, what), target, readonly, ("nocopy",) if nocopy else ())


def _valid_mode(mode: str) -> bool:
    """Docker's linuxValidMountMode: known words only, at most one of each kind."""
    if not mode:
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0}
    for word in mode.split(","):
        if word in ("rw", "ro"):
            counts["rw"] += 1
        elif word in ("z", "Z"):
            counts["label"] += 1
        elif word in _PROPAGATIONS:
            counts["propagation"] += 1
        elif word == "nocopy":
            counts["copy"] += 1
        else:
            return False
    return max(counts.values()) <= 1


def image_volume(path: str) -> MountSpec:
    """The anonymous volume for a VOLUME path of an image's config. Docker takes a relative one
    from the container's root."""
    return MountSpec("volume", None, _target(_clean("/" + path), f"invalid VOLUME {path!r} in the image"), False, ())


def parse_mount(spec: str) -> MountSpec:
    """--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]: a CSV line of keys.

    The type defaults to volume. A relative bind source of the form ./x or . is made absolute
    against the current directory, as the docker CLI does; a bind source must exist, which the
    runtime checks.
    """
    import csv  # only --mount needs it: not on the path of every start

    what = f"invalid --mount {spec!r}"
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as e:
        raise UsageError(f"{what}: {e}") from e
    mtype = "volume"
    source: str | None = None
    target = ""
    readonly = False
    propagation: str | None = None
    nocopy: bool | None = None
    tmpfs_data: dict[str, str] = {}
    tmpfs_given = False
    for field in fields:
        key, has_value, value = field.partition("=")
        key = key.lower()
        if not has_value:
            if key in ("readonly", "ro"):
                readonly = True
            elif key == "volume-nocopy":
                nocopy = True
            else:
                raise UsageError(f"{what}: {field!r} must be a key=value pair")
            continue
        if key == "type":
            mtype = value.lower()
        elif key in ("source", "src"):
            source = os.path.abspath(value) if value == "." or value.startswith("./") else value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(value, key, what)
        elif key == "bind-propagation":
            propagation = value.lower()
            if propagation not in _PROPAGATIONS:
                raise UsageError(f"{what}: invalid bind-propagation {value!r} (use one of "
                                 f"{', '.join(sorted(_PROPAGATIONS))})")
        elif key == "volume-nocopy":
            nocopy = _parse_bool(value, key, what)
        elif key == "tmpfs-size":
            tmpfs_given = True
            size = _tmpfs_size(value, what)
            if size is None:  # docker's 0: no limit of our own
                tmpfs_data.pop("size", None)
            else:
                tmpfs_data["size"] = size
        elif key == "tmpfs-mode":
            tmpfs_given = True
            tmpfs_data["mode"] = _octal_mode(value, what)
        else:
            raise UsageError(f"{what}: unknown key {key!r} (known: type, source, target, readonly, "
                             "bind-propagation, volume-nocopy, tmpfs-size, tmpfs-mode)")
    if mtype not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"{what}: unsupported mount type {mtype!r} (use bind, volume or tmpfs)")
    for option, set_, kind in (("bind-*", propagation is not None, "bind"),
                               ("volume-*", nocopy is not None, "volume"),
                               ("tmpfs-*", tmpfs_given, "tmpfs")):
        if set_ and mtype != kind:
            raise UsageError(f"{what}: cannot mix {option!r} options with mount type {mtype!r}")
    if not target:
        raise UsageError(f"{what}: target is required")
    target = _target(target, what)
    if mtype == "tmpfs":
        if source:
            raise UsageError(f"{what}: a tmpfs mount takes no source")
        data = tuple(f"{k}={tmpfs_data[k]}" for k in ("mode", "size") if k in tmpfs_data)
        return MountSpec("tmpfs", None, target, readonly, TMPFS_DEFAULTS + data)
    if mtype == "bind":
        if not source:
            raise UsageError(f"{what}: a bind mount needs a source (the host path)")
        if not source.startswith("/"):
            raise UsageError(f"{what}: the bind source {source!r} must be an absolute path")
        return MountSpec("bind", _clean(source), target, readonly, (propagation,) if propagation else ())
    if source and source.startswith("/"):
        raise UsageError(f"{what}: the source of a volume is a volume name: to mount the host path "
                         f"{source}, use type=bind")
    name = _volume_name(source, what) if source else None
    return MountSpec("volume", name, target, readonly, ("nocopy",) if nocopy else ())


def _parse_bool(value: str, key: str, what: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{what}: invalid value for {key}: {value!r} (use true or false)")


def _tmpfs_size(value: str, what: str) -> str | None:
    """docker's units.RAMInBytes (binary multiples: 64m is 64 MiB), written as mount data the
    way docker writes it: the largest of g/m/k that divides the size exactly; None for 0."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtTpP])?[iI]?[bB]?", value)
    if not m:
        raise UsageError(f"{what}: invalid value for tmpfs-size: {value!r} (use bytes or a size such as 64m)")
    unit = 1024 ** " kmgtp".index((m.group(2) or " ").lower())
    size = int(float(m.group(1)) * unit)
    if size == 0:
        return None
    for suffix, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % divisor == 0:
            return f"{size // divisor}{suffix}"
    return str(size)


def _octal_mode(value: str, what: str) -> str:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= _MAX_OCTAL_MODE:
        raise UsageError(f"{what}: invalid value for tmpfs-mode: {value!r} (use an octal mode such as 1777)")
    return f"{mode:o}"


def parse_tmpfs(spec: str) -> MountSpec:
    """--tmpfs DEST[:OPTIONS]: Docker's default options rw,noexec,nosuid,nodev (no size limit),
    each overridable (e.g. exec, size=64m, mode=1777); the last of conflicting options wins."""
    target, _, opts = spec.partition(":")
    what = f"invalid --tmpfs {spec!r}"
    target = _target(target, what)
    merged: dict[str, str] = {}  # flag group or data key -> option; the last one given wins
    for option in (*TMPFS_DEFAULTS, *(opts.split(",") if opts else ())):
        if option == "defaults":
            continue
        key, has_value, value = option.partition("=")
        if option in _TMPFS_FLAG_GROUP:
            group = _TMPFS_FLAG_GROUP[option]
        elif has_value and key in _TMPFS_DATA_CHECKS:
            pattern, expected = _TMPFS_DATA_CHECKS[key]
            if not re.fullmatch(pattern, value):
                raise UsageError(f"{what}: invalid {key} {value!r}: expected {expected}")
            group = key
        else:
            raise UsageError(f"{what}: unknown tmpfs option {option!r} (known: {_known_tmpfs_options()})")
        merged.pop(group, None)  # re-inserted: the option takes the position of its last mention
        merged[group] = option
    readonly = merged.pop("ro", "rw") == "ro"
    return MountSpec("tmpfs", None, target, readonly, tuple(merged.values()))


def _known_tmpfs_options() -> str:
    return ", ".join([*_TMPFS_FLAG_GROUP, *(f"{k}=..." for k in _TMPFS_DATA_CHECKS)])


def parse_env_file(path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """An --env-file, read with Docker's rules: one K=V a line, the value taken literally (no
    quotes, no trimming), `K` alone meaning "K from the host's environment" (value None), lines
    starting with # and blank lines skipped, leading whitespace ignored, a UTF-8 BOM allowed."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read the env file {os.fsdecode(path)}: {e.strerror}") from e
    name = os.fsdecode(path)
    out: list[tuple[str, str | None]] = []
    for lineno, line_bytes in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            line = line_bytes.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{name}:{lineno}: the env file is not valid UTF-8")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, has_value, value = line.partition("=")
        if not key:
            raise UsageError(f"{name}:{lineno}: no variable name before '='")
        if any(c.isspace() for c in key):
            raise UsageError(f"{name}:{lineno}: invalid variable name {key!r}: it contains whitespace")
        if "\0" in line:
            raise UsageError(f"{name}:{lineno}: variable {key} contains a NUL byte")
        out.append((key, value if has_value else None))
    return out


def build_env(image_env: Sequence[str], env_files: Sequence[str], env_args: Sequence[str],
              host_env: Mapping[str, str], *, hostname: str, tty: bool,
              home: str | None = None) -> list[str]:
    """The container's environment as K=V strings, each later source overriding earlier ones:
    PATH (a default), HOSTNAME, TERM=xterm (with a tty), the image's Env, the env files in order,
    the -e values in order. `K` without a value, in a file or after -e, takes K from host_env and
    is dropped when the host has no K. HOME comes last from `home` (the user's home directory),
    only if still unset; home=None leaves HOME to the caller (who knows the user only later).
    A variable keeps the position where it first appeared, as Docker's ordering does."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        env["TERM"] = "xterm"
    for entry in image_env:
        key, has_value, value = entry.partition("=")
        if key and has_value:  # a malformed image entry sets nothing
            env[key] = value
    for path in env_files:
        _apply(env, parse_env_file(path), host_env)
    _apply(env, (_env_arg(a) for a in env_args), host_env)
    if home is not None:
        env.setdefault("HOME", home)
    return [f"{k}={v}" for k, v in env.items()]


def _env_arg(arg: str) -> tuple[str, str | None]:
    key, has_value, value = arg.partition("=")
    if not key:
        raise UsageError(f"invalid environment variable {arg!r}: the name is missing (use -e NAME=VALUE)")
    return key, value if has_value else None


def _apply(env: dict[str, str], pairs: Iterable[tuple[str, str | None]], host_env: Mapping[str, str]) -> None:
    for key, value in pairs:
        if value is None:
            value = host_env.get(key)
            if value is None:
                continue
        env[key] = value


_SIGNALS = {name.removeprefix("SIG"): int(sig) for name, sig in signal.Signals.__members__.items()}
_RT_SIGNAL = r"RT(MIN|MAX)(?:([+-])([0-9]+))?"


def parse_signal(s: str) -> int:
    """A signal by number (15) or name with or without SIG, in any case (SIGTERM, term),
    real-time ones as RTMIN+n / RTMAX-n (glibc's numbering: RTMIN is 34)."""
    if s.isascii() and s.isdigit():
        number = int(s)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise UsageError(f"invalid signal {s!r}: signal numbers run from 1 to {int(signal.SIGRTMAX)}")
    name = s.upper().removeprefix("SIG")
    if name in _SIGNALS:
        return _SIGNALS[name]
    m = re.fullmatch(_RT_SIGNAL, name)
    if m:
        base = signal.SIGRTMIN if m.group(1) == "MIN" else signal.SIGRTMAX
        offset = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
        number = base + offset
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return int(number)
    raise UsageError(f"invalid signal {s!r}: use a name such as SIGTERM, TERM or SIGRTMIN+3, or a number")
