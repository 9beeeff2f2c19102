"""Seccomp profiles in Docker's JSON format: which rules apply to a container, and what is refused."""
from __future__ import annotations

import errno
import json
import os

import pytest

import native
from rootless.runtime.caps import CAP_NUMBERS, DEFAULT_CAPS
from rootless.runtime.seccomp import (
    DEFAULT_PROFILE, Condition, Host, Rule, compile_filter, filter_for, parse_profile,
)
from rootless.errors import ProfileError

ALLOW, EPERM_ = 0x7FFF0000, 0x00050000 | errno.EPERM
X86_64 = Host("x86_64", (6, 1))


def _parse(doc: object, caps: frozenset[int] = DEFAULT_CAPS, host: Host = X86_64):  # type: ignore[no-untyped-def]
    return parse_profile(json.dumps(doc), "test.json", caps, host)


def _allowed(f, name: str) -> list[Rule]:  # type: ignore[no-untyped-def]
    return [r for r in f.rules if name in r.names]


def _default():  # type: ignore[no-untyped-def]
    return parse_profile(DEFAULT_PROFILE.read_text(), "default", DEFAULT_CAPS, X86_64)


def test_the_default_denies_with_eperm_and_adds_the_32_bit_arches() -> None:
    f = _default()
    assert f.default_action == EPERM_
    assert f.arches == ("x86_64", "x86", "x32")


@pytest.mark.parametrize("name", ["keyctl", "add_key", "request_key", "bpf", "userfaultfd", "unshare", "mount",
                                  "setns", "umount2", "kcmp", "pidfd_getfd", "init_module", "reboot", "acct",
                                  "swapon", "kexec_load", "open_by_handle_at", "perf_event_open"])
def test_the_default_has_no_rule_for_what_docker_blocks(name: str) -> None:
    assert _allowed(_default(), name) == []


def test_clone_is_allowed_only_without_namespace_flags() -> None:
    rules = _allowed(_default(), "clone")
    assert [r.conditions for r in rules] == [(Condition(0, 7, 0x7E020000, 0),)]
    assert [r.action for r in _allowed(_default(), "clone3")] == [0x00050000 | errno.ENOSYS]


def test_caps_rules_follow_the_containers_capabilities() -> None:
    with_admin = parse_profile(DEFAULT_PROFILE.read_text(), "default",
                               DEFAULT_CAPS | {CAP_NUMBERS["CAP_SYS_ADMIN"]}, X86_64)
    assert [r.conditions for r in _allowed(with_admin, "mount")] == [()]
    assert [r.conditions for r in _allowed(with_admin, "clone")] == [()]  # the masked rule is excluded
    assert _allowed(with_admin, "clone3") != [] and all(r.action == ALLOW for r in _allowed(with_admin, "clone3"))
    assert _allowed(_default(), "chroot") != []  # CAP_SYS_CHROOT is a default capability
    without = parse_profile(DEFAULT_PROFILE.read_text(), "default", DEFAULT_CAPS - {CAP_NUMBERS["CAP_SYS_CHROOT"]},
                            X86_64)
    assert _allowed(without, "chroot") == []


def test_arches_and_min_kernel_are_this_hosts() -> None:
    assert _allowed(_default(), "arch_prctl") != []
    arm = parse_profile(DEFAULT_PROFILE.read_text(), "default", DEFAULT_CAPS, Host("aarch64", (6, 1)))
    assert _allowed(arm, "arch_prctl") == [] and _allowed(arm, "set_tls") != []
    assert arm.arches == ("aarch64", "arm")
    old = parse_profile(DEFAULT_PROFILE.read_text(), "default", DEFAULT_CAPS, Host("x86_64", (4, 4)))
    assert _allowed(old, "ptrace") == []


def test_errno_defaults_to_eperm_and_errno_ret_is_kept() -> None:
    f = _parse({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})
    assert [r.action for r in f.rules] == [EPERM_, 0x00050000 | 38]


def test_a_rule_with_the_default_action_is_left_out() -> None:
    f = _parse({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]})
    assert f.rules == ()


def test_conditions_on_one_argument_become_one_rule_each() -> None:
    f = _parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})
    assert [r.conditions for r in f.rules] == [(Condition(0, 4, 0),), (Condition(0, 4, 8),)]


def test_the_old_architectures_list_is_read() -> None:
    f = _parse({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []})
    assert f.arches == ("x86_64",)


@pytest.mark.parametrize(("doc", "message"), [
    ("{", "invalid JSON at line 1 column 2"),
    ([], "not a JSON object"),
    ({"syscalls": []}, "no defaultAction"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown action 'SCMP_ACT_MAYBE'"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "needs a listener"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "errnoRet -1"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "syscalls is not a list"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "syscalls[0] names no syscall"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}, "syscalls[0] has no action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index 6"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}, "unknown op 'SCMP_CMP_ABOUT'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "value -1"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "includes": {"minKernel": "new"}}]}, "minKernel 'new'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}, "unknown architecture 'x86_64'"),
])
def test_a_bad_profile_is_refused_in_one_line(doc: object, message: str) -> None:
    with pytest.raises(ProfileError) as e:
        parse_profile(doc if isinstance(doc, str) else json.dumps(doc), "bad.json", DEFAULT_CAPS, X86_64)
    assert str(e.value).startswith("seccomp profile bad.json: ")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_syscall_name_is_skipped_as_crun_does() -> None:
    f = _parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["no_such_call_rl", "getpid"], "action": "SCMP_ACT_ALLOW"}]})
    known = _parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})
    assert compile_filter(f) == compile_filter(known)


def test_a_missing_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProfileError, match="No such file or directory"):
        filter_for(str(tmp_path / "missing.json"), DEFAULT_CAPS)


def test_unconfined_has_no_program_and_the_default_compiles() -> None:
    assert filter_for("unconfined", DEFAULT_CAPS) == ""
    program = bytes.fromhex(filter_for("", DEFAULT_CAPS))
    assert program and len(program) % 8 == 0


def test_the_program_is_enforced() -> None:
    """In a child: the compiled default makes keyctl fail with EPERM and clone3 with ENOSYS."""
    program = bytes.fromhex(filter_for("", DEFAULT_CAPS))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
            native.seccomp_install(program)
            status = open("/proc/self/status").read()
            code = 0 if "Seccomp:\t2" in status else 2
            try:
                os.unshare(0x10000000) if hasattr(os, "unshare") else native.unshare(0x10000000)
                code = 3
            except OSError as e:
                code = code if e.errno == errno.EPERM else 4
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
