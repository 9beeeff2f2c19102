"""Issue 11: containers ran with no seccomp filter (`Seccomp: 0` in /proc/self/status).

Root of a container's user namespace could reach every syscall of the host kernel: unshare a user
namespace of its own to get capabilities there and attack the kernel's namespaced code (the
fsconfig overflow CVE-2022-0185, netfilter's CVE-2021-22555, both stopped in Docker by its
default profile), keyctl/add_key (the keyring refcount overflow CVE-2016-0728), bpf, userfaultfd
(the usual helper of kernel race exploits), kcmp and pidfd_getfd to reach other processes. rl now
loads Docker's default profile, compiled for the container's capabilities.

The probe is a small static program (data/seccomp_probe.c) that makes each call in a child and
prints the errno it got; it is built here with gcc -static and bind-mounted into the container.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, Rl
from tests.interop.conftest import Podman, podman  # noqa: F401 - the fixture

SOURCE = Path(__file__).with_name("data") / "seccomp_probe.c"
DEFAULT_PROFILE = REPO / "rootless" / "runtime" / "seccomp_default.json"
DISTRO_PROFILE = Path("/usr/share/containers/seccomp.json")

# What Docker's default profile must refuse, with the errno it gives (EPERM; ENOSYS for clone3,
# so that libc falls back to clone). Each probe's arguments make the call fail otherwise
# (or succeed): see test_unconfined_has_no_filter for the proof that seccomp is what refuses.
BLOCKED = {
    "keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM", "bpf": "EPERM", "userfaultfd": "EPERM",
    "unshare_user": "EPERM", "clone_newuser": "EPERM", "clone3": "ENOSYS", "setns": "EPERM", "kcmp": "EPERM",
    "pidfd_getfd": "EPERM", "process_madvise": "EPERM", "reboot": "EPERM", "set_mempolicy": "EPERM",
    "get_mempolicy": "EPERM", "move_pages": "EPERM", "personality_norandom": "EPERM", "socket_vsock": "EPERM",
    "kexec_load": "EPERM", "sethostname": "EPERM", "umount2": "EPERM", "open_tree": "EPERM",
    "settimeofday": "EPERM", "uselib": "EPERM",
}
ALLOWED = {"getpid": "ok", "clone_plain": "ok", "personality_ok": "ok", "socket_unix": "ok"}


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (package build-essential)")
    d = tmp_path_factory.mktemp("probe")
    subprocess.run([gcc, "-static", "-O1", "-o", str(d / "probe"), str(SOURCE)], check=True, timeout=120)
    return d


def _results(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _probe(rl: Rl, probe_dir: Path, *options: str, calls: tuple[str, ...] = ()) -> dict[str, str]:
    out = rl("run", "--rm", "--network", "none", "-v", f"{probe_dir}:/probe:ro", *options, "busybox",
             "/probe/probe", *calls, timeout=120).out
    return _results(out)


def _seccomp_mode(rl: Rl, *options: str) -> str:
    status = rl("run", "--rm", *options, "busybox", "cat", "/proc/self/status", timeout=120).out
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Seccomp:"))


def _check_default_blocks(rl: Rl, probe_dir: Path) -> None:
    assert _seccomp_mode(rl) == "2"
    got = _probe(rl, probe_dir)
    assert {k: got.get(k) for k in BLOCKED} == BLOCKED
    assert {k: got.get(k) for k in ALLOWED} == ALLOWED


def test_the_default_profile_blocks_what_docker_blocks(rl: Rl, busybox: str, probe_dir: Path) -> None:
    """Issue 11 (CVE-2022-0185, CVE-2021-22555, CVE-2016-0728 as reached from a container):
    keyctl, add_key, bpf, userfaultfd, unshare/clone of a user namespace, setns, kcmp... give
    EPERM; on the old code every one went through to the kernel (`Seccomp: 0`)."""
    _check_default_blocks(rl, probe_dir)


@pytest.mark.as_root
def test_the_default_profile_blocks_as_root(rl: Rl, busybox: str, probe_dir: Path) -> None:
    """Issue 11 as root, where rl runs in single-id mode: a container's root is the host's root,
    so the kernel attack surface is the whole of root's."""
    _check_default_blocks(rl, probe_dir)


def test_unconfined_has_no_filter(rl: Rl, busybox: str, probe_dir: Path) -> None:
    """--security-opt seccomp=unconfined is Docker's opt-out: no filter, and the probes that the
    default blocks now get the kernel's own answers (which is why they prove the filter above)."""
    assert _seccomp_mode(rl, "--security-opt", "seccomp=unconfined") == "0"
    got = _probe(rl, probe_dir, "--security-opt", "seccomp=unconfined")
    assert {k for k in BLOCKED if got.get(k) == BLOCKED[k]} <= {"bpf", "kexec_load", "settimeofday", "reboot",
                                                                 "uselib", "umount2", "open_tree", "sethostname"}
    assert got["keyctl"] != "EPERM" and got["unshare_user"] == "ok" and got["clone3"] != "ENOSYS"


def test_exec_init_and_build_run_under_the_filter(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """The filter covers `rl exec`, the --init process and its child, and build RUN steps."""
    rl("run", "-d", "--name", "sc", "--init", "busybox", "sleep", "600", timeout=120)
    try:
        for path in ("/proc/1/status", "/proc/self/status"):
            out = rl("exec", "sc", "cat", path, timeout=120).out
            assert "Seccomp:\t2" in out, path
        assert "Seccomp:\t2" in rl("exec", "sc", "sh", "-c", "cat /proc/$(pidof sleep)/status", timeout=120).out
    finally:
        rl("rm", "-f", "sc", timeout=120)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text('FROM busybox\nRUN grep -q "^Seccomp:\t2" /proc/self/status\n')
    rl("build", "-t", "sc-built", str(tmp_path / "ctx"), timeout=300)


def test_capability_rules_follow_cap_add_and_cap_drop(rl: Rl, busybox: str, probe_dir: Path) -> None:
    """Docker's rules keyed on capabilities: --cap-add SYS_ADMIN lets unshare/mount/setns through
    to the kernel (which then decides), --cap-drop SYS_CHROOT takes chroot away."""
    calls = ("unshare_user", "mount", "setns", "chroot", "kcmp")
    default = _probe(rl, probe_dir, calls=calls)
    assert default == {"unshare_user": "EPERM", "mount": "EPERM", "setns": "EPERM", "chroot": "ENOENT",
                       "kcmp": "EPERM"}
    admin = _probe(rl, probe_dir, "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE", "--cap-drop", "SYS_CHROOT",
                   calls=calls)
    assert admin == {"unshare_user": "ok", "mount": "ENOENT", "setns": "EBADF", "chroot": "EPERM", "kcmp": "ESRCH"}


def test_a_custom_profile_is_used(rl: Rl, busybox: str, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["no_such_syscall_rl"], "action": "SCMP_ACT_ERRNO"}]}))
    r = rl("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "sh", "-c",
           "grep Seccomp: /proc/self/status; mkdir /made", check=False, timeout=120)
    assert r.code == 1 and "Seccomp:\t2" in r.out and "Function not implemented" in r.err


@pytest.mark.parametrize(("content", "message"), [
    (None, "No such file or directory"),
    ("{not json", "invalid JSON at line 1 column 2"),
    ('{"defaultAction": "SCMP_ACT_PERHAPS"}', "unknown action 'SCMP_ACT_PERHAPS'"),
])
def test_a_bad_profile_is_refused_with_125(rl: Rl, busybox: str, tmp_path: Path, content: str | None,
                                           message: str) -> None:
    profile = tmp_path / "bad.json"
    if content is not None:
        profile.write_text(content)
    r = rl("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "true", check=False, timeout=120)
    assert r.code == 125
    assert r.err.count("\n") == 1 and message in r.err and "Traceback" not in r.err
    assert rl("ps", "-a", "-q").out.strip() == ""  # nothing was created


def _podman_probe(podman: Podman, probe_dir: Path, image: str, *options: str) -> dict[str, str]:  # noqa: F811
    return _results(podman("run", "--rm", "--cgroups=disabled", "--network", "none", "-v",
                           f"{probe_dir}:/probe:ro", *options, image, "/probe/probe", timeout=300))


def test_podman_and_rl_agree_under_the_same_profile(rl: Rl, busybox: str, busybox_tar: Path, probe_dir: Path,
                                                    podman: Podman) -> None:  # noqa: F811
    """The differential check: the same user, image and probes under podman (crun and its
    libseccomp) and under rl, with rl's default profile and with the distro's (podman's
    default), give the same errno for every call."""
    podman("import", str(busybox_tar), "localhost/rl-busybox:latest")
    for profile, podman_options in ((DEFAULT_PROFILE, ("--security-opt", f"seccomp={DEFAULT_PROFILE}")),
                                    (DISTRO_PROFILE, ())):
        if not profile.exists():
            continue
        theirs = _podman_probe(podman, probe_dir, "localhost/rl-busybox:latest", *podman_options)
        ours = _probe(rl, probe_dir, "--security-opt", f"seccomp={profile}")
        assert len(ours) > 40
        assert ours == theirs, profile


def test_the_compiled_filter_cache_is_untrusted_input(rl: Rl, busybox: str, tmp_path: Path) -> None:
    """The compiled programs rl remembers in the runtime directory (the rule of finding 3): a
    cache entry that is a FIFO, a symlink to a victim file or a truncated program is not used
    (no hang, the victim is neither read into a filter nor written), and the container still
    runs under the whole default filter."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    rl("run", "--rm", "busybox", "true", env=env, timeout=120)
    [entry] = (xdg / "rl").glob("seccomp-*.bpf")
    victim = tmp_path / "victim"
    victim.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f")  # one instruction: return ALLOW
    for plant in ("fifo", "symlink", "truncated"):
        entry.unlink()
        if plant == "fifo":
            os.mkfifo(entry)
        elif plant == "symlink":
            entry.symlink_to(victim)
        else:
            entry.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff")
        status = rl("run", "--rm", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; "
                    "unshare -U true 2>&1 || echo refused", env=env, check=False, timeout=120)
        assert status.code == 0 and "Seccomp:\t2" in status.out and "refused" in status.out, plant
    assert victim.read_bytes() == b"\x06\x00\x00\x00\x00\x00\xff\x7f"
