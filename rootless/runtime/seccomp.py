"""Seccomp profiles in Docker's JSON format, compiled by libseccomp into the filter a container runs under.

A profile is read and checked when the container is created (a bad one is rl's error, exit 125,
before anything starts), its rules are chosen for the container's capabilities, this machine's
architecture and kernel, and libseccomp compiles them to a BPF program that the spec keeps
(`ContainerSpec.seccomp`, hex). The container's init and `rl exec` load that program
(`native.seccomp_install`) before dropping capabilities: without no_new_privs the kernel takes a
filter only from a process with CAP_SYS_ADMIN in its user namespace, and setting no_new_privs
ourselves would disarm the image's setuid programs, which Docker leaves working.

The default is rl's copy of Docker's default profile (seccomp_default.json), not the distro's
/usr/share/containers/seccomp.json: the one Debian 12 ships (containers-common 0.50.1) allows
keyctl, unshare, mount, setns and clone with namespace flags to every container; it works with
`--security-opt seccomp=/usr/share/containers/seccomp.json`.

Rules follow Docker and crun: includes/excludes `caps` test the container's capabilities,
`arches` this machine's (Go's names: amd64, arm64...), `minKernel` the running kernel; ERRNO
without errnoRet is EPERM; several conditions on one argument become one rule each (runc's
reading: any of them matches); a syscall name libseccomp does not know is skipped, as crun does.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import native
from rootless import runcache
from rootless.errors import ProfileError, RuntimeDirError
from rootless.runtime.caps import CAP_NUMBERS
from rootless.paths import open_runtime_dir
from rootless.values import valueclass

try:  # hashlib loads OpenSSL, ~2 ms of every start; the builtin module makes a cache key as well
    from _sha256 import sha256
except ImportError:  # Python 3.12 renamed it
    from hashlib import sha256

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")

# An action's value (libseccomp's, through native), with the errno (or trace message) in the low
# 16 bits of those that take one.
_ACTION_NAMES = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
                 "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ALLOW")
_ACTIONS = {name: getattr(native, name) for name in _ACTION_NAMES}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_OPS = {name: getattr(native, name) for name in ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                                 "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")}
# uname's machine -> (libseccomp's architecture, Go's name, which profiles' `arches` use)
_MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "i686": ("SCMP_ARCH_X86", "386"), "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"), "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"), "mips64": ("SCMP_ARCH_MIPS64", "mips64"),
}
_UNKNOWN_SYSCALL = -1  # libseccomp's __NR_SCMP_ERROR
_PROGRAM_MAX = 4096 * 8  # BPF_MAXINSNS instructions of 8 bytes


@valueclass
class Condition:
    index: int
    op: int
    value: int
    value_two: int = 0


@valueclass
class Rule:
    names: tuple[str, ...]
    action: int
    conditions: tuple[Condition, ...] = ()


@valueclass
class Filter:
    """A profile's rules for one container: what libseccomp compiles."""
    default_action: int
    arches: tuple[str, ...]  # libseccomp's names (x86_64, x86, x32...)
    rules: tuple[Rule, ...]


@valueclass
class Host:
    """What a profile's includes/excludes test besides the capabilities."""
    machine: str
    kernel: tuple[int, int]

    @staticmethod
    def this() -> "Host":
        u = os.uname()
        return Host(u.machine, _version(u.release) or (0, 0))


def filter_for(option: str, caps: frozenset[int]) -> str:
    """The BPF program (hex) for --security-opt seccomp=OPTION ("" for rl's default), or "" for
    unconfined. Compiling Docker's profile for three architectures takes libseccomp ~14 ms, so
    programs are remembered in the runtime directory, keyed by everything that shapes them."""
    if option == "unconfined":
        return ""
    path = Path(option) if option else DEFAULT_PROFILE
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ProfileError(str(path), e.strerror or str(e)) from e
    host = Host.this()
    key = sha256(b"%s\0%s\0%s\0%s" % (text, ",".join(map(str, sorted(caps))).encode(), host.machine.encode(),
                                       os.uname().release.encode())).hexdigest()
    name = f"seccomp-{key}.bpf"
    try:
        dir_fd = open_runtime_dir()
    except RuntimeDirError:
        dir_fd = -1
    try:
        known = runcache.read(dir_fd, name, _PROGRAM_MAX) if dir_fd >= 0 else None
        if known and len(known) % 8 == 0:  # else not a program: the kernel checks the rest
            return known.hex()
        program = compile_filter(parse_profile(_decode(text, str(path)), str(path), caps, host))
        if dir_fd >= 0:
            runcache.write(dir_fd, name, program)
        return program.hex()
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def _decode(text: bytes, source: str) -> str:
    try:
        return text.decode()
    except UnicodeDecodeError as e:
        raise ProfileError(source, f"not UTF-8 text ({e.reason} at byte {e.start})") from e


def parse_profile(text: str, source: str, caps: frozenset[int], host: Host) -> Filter:
    """The rules of a profile that apply to a container with `caps` on `host`; ProfileError names
    what is wrong with it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(source, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(doc, dict):
        raise ProfileError(source, "not a JSON object")
    if "defaultAction" not in doc:
        raise ProfileError(source, "no defaultAction")
    default = _action(source, doc["defaultAction"], doc.get("defaultErrnoRet"))
    native_arch, go_arch = _MACHINES.get(host.machine, ("", host.machine))
    rules = []
    for i, entry in enumerate(_list(source, doc.get("syscalls"), "syscalls")):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ProfileError(source, f"{where} is not an object")
        names = entry.get("names") or ([entry["name"]] if entry.get("name") else [])
        if not names or not all(isinstance(n, str) and n for n in _list(source, names, f"{where}.names")):
            raise ProfileError(source, f"{where} names no syscall")
        if "action" not in entry:
            raise ProfileError(source, f"{where} has no action")
        action = _action(source, entry["action"], entry.get("errnoRet"))
        conditions = tuple(_condition(source, f"{where}.args[{j}]", a)
                           for j, a in enumerate(_list(source, entry.get("args"), f"{where}.args")))
        if action == default or not _applies(source, where, entry, caps, go_arch, host.kernel):
            continue
        indexes = [c.index for c in conditions]
        if len(set(indexes)) == len(indexes):
            rules.append(Rule(tuple(names), action, conditions))
        else:
            rules.extend(Rule(tuple(names), action, (c,)) for c in conditions)
    return Filter(default, _arches(source, doc, native_arch), tuple(rules))


def compile_filter(f: Filter) -> bytes:
    """libseccomp's BPF program for `f`."""
    return native.seccomp_compile(f.default_action, f.arches, [
        (r.action, nr, [(c.index, c.op, c.value, c.value_two) for c in r.conditions])
        for r in f.rules for nr in (native.seccomp_syscall(n) for n in r.names) if nr != _UNKNOWN_SYSCALL
    ])


def _list(source: str, value: object, where: str) -> list:  # type: ignore[type-arg]
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProfileError(source, f"{where} is not a list")
    return value


def _action(source: str, name: object, errno_ret: object) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise ProfileError(source, "SCMP_ACT_NOTIFY needs a listener, which rl does not run")
    if not isinstance(name, str) or name not in _ACTIONS:
        raise ProfileError(source, f"unknown action {name!r}: use one of {', '.join(sorted(_ACTIONS))}")
    if errno_ret is None or name not in _WITH_ERRNO:
        return _ACTIONS[name] | (errno.EPERM if name in _WITH_ERRNO else 0)
    if not isinstance(errno_ret, int) or isinstance(errno_ret, bool) or not 0 <= errno_ret <= 0xFFFF:
        raise ProfileError(source, f"errnoRet {errno_ret!r} is not a number from 0 to 65535")
    return _ACTIONS[name] | errno_ret


def _condition(source: str, where: str, arg: object) -> Condition:
    if not isinstance(arg, dict):
        raise ProfileError(source, f"{where} is not an object")
    index, op, value, two = arg.get("index"), arg.get("op"), arg.get("value", 0), arg.get("valueTwo", 0)
    if not isinstance(index, int) or not 0 <= index <= 5:
        raise ProfileError(source, f"{where}.index {index!r} is not a number from 0 to 5")
    if op not in _OPS:
        raise ProfileError(source, f"{where}: unknown op {op!r}: use one of {', '.join(_OPS)}")
    for name, v in (("value", value), ("valueTwo", two)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
            raise ProfileError(source, f"{where}.{name} {v!r} is not a 64-bit unsigned number")
    return Condition(index, _OPS[op], value, two)


def _applies(source: str, where: str, entry: dict, caps: frozenset[int], go_arch: str,  # type: ignore[type-arg]
             kernel: tuple[int, int]) -> bool:
    """Docker's includes (all must hold) and excludes (none may)."""
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise ProfileError(source, f"{where}: includes and excludes must be objects")
    have = {name for name, n in CAP_NUMBERS.items() if n in caps}
    if not set(inc.get("caps") or ()) <= have or have & set(exc.get("caps") or ()):
        return False
    if inc.get("arches") and go_arch not in inc["arches"] or go_arch in (exc.get("arches") or ()):
        return False
    for cond, when_newer in ((inc, True), (exc, False)):  # minKernel: the rule is for kernels >= it
        if cond.get("minKernel"):
            version = _version(cond["minKernel"]) if isinstance(cond["minKernel"], str) else None
            if version is None:
                raise ProfileError(source, f"{where}: minKernel {cond['minKernel']!r} is not a version such as 4.8")
            if (kernel >= version) != when_newer:
                return False
    return True


def _version(release: str) -> tuple[int, int] | None:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1].split("-")[0] if ch.isdigit()) or "0")
    except (IndexError, ValueError):
        return None


def _arches(source: str, doc: dict, native_arch: str) -> tuple[str, ...]:  # type: ignore[type-arg]
    """The native architecture with its archMap companions (32-bit x86 and x32 beside x86_64), or
    the old `architectures` list."""
    names = list(_list(source, doc.get("architectures"), "architectures"))
    for entry in _list(source, doc.get("archMap"), "archMap"):
        if isinstance(entry, dict) and entry.get("architecture") == native_arch:
            names += [native_arch, *(entry.get("subArchitectures") or ())]
    if not names and native_arch:
        names = [native_arch]
    out = []
    for name in dict.fromkeys(names):
        if not isinstance(name, str) or not name.startswith("SCMP_ARCH_"):
            raise ProfileError(source, f"unknown architecture {name!r}")
        out.append(name.removeprefix("SCMP_ARCH_").lower())
    return tuple(out)
