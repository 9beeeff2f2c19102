"""--cap-add/--cap-drop resolve like Docker's, and the container process really ends up with them."""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import native
from rootless.errors import UsageError
from rootless.runtime.caps import (
    ALL_CAPS,
    CAP_NAMES,
    CAP_NUMBERS,
    DEFAULT_CAPS,
    apply_caps,
    mask,
    resolve_caps,
)
from rootless.userns.enter import run_in_userns
from rootless.userns.idmap import IdMapping, detect_mapping

HEADER = Path("/usr/include/linux/capability.h")


def _n(*names: str) -> frozenset[int]:
    return frozenset(CAP_NUMBERS["CAP_" + n] for n in names)


def test_table_matches_the_kernel_header() -> None:
    if not HEADER.exists():
        pytest.skip("no linux/capability.h (linux-libc-dev) to compare with")
    defined = {m[1]: int(m[2]) for m in re.finditer(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$", HEADER.read_text(), re.M)}
    assert {name: CAP_NUMBERS[name] for name in defined if name in CAP_NUMBERS} == \
        {name: n for name, n in defined.items() if n < len(CAP_NAMES)}
    assert CAP_NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40 and CAP_NAMES[21] == "CAP_SYS_ADMIN"


def test_defaults_are_podmans() -> None:
    assert resolve_caps([], []) == DEFAULT_CAPS == _n(
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
        "SETPCAP", "SETUID", "SYS_CHROOT")


def test_add_and_drop_take_any_spelling() -> None:
    got = resolve_caps(["net_admin", "CAP_SYS_TIME", "Sys_Ptrace"], ["chown", "CAP_KILL"])
    assert got == (DEFAULT_CAPS - _n("CHOWN", "KILL")) | _n("NET_ADMIN", "SYS_TIME", "SYS_PTRACE")


def test_comma_lists_are_accepted_like_podman() -> None:
    assert resolve_caps(["NET_ADMIN,SYS_TIME"], []) == DEFAULT_CAPS | _n("NET_ADMIN", "SYS_TIME")


def test_drop_all_then_add_gives_only_those_added() -> None:
    assert resolve_caps(["NET_BIND_SERVICE"], ["ALL"]) == _n("NET_BIND_SERVICE")
    assert resolve_caps([], ["all"]) == frozenset()


def test_add_all_gives_everything_but_what_is_dropped() -> None:
    assert resolve_caps(["ALL"], []) == ALL_CAPS and len(ALL_CAPS) == 41
    assert resolve_caps(["ALL"], ["SYS_ADMIN", "ALL"]) == ALL_CAPS - _n("SYS_ADMIN")


def test_adding_wins_over_dropping_the_same_one() -> None:
    assert CAP_NUMBERS["CAP_NET_RAW"] in resolve_caps(["NET_RAW"], ["NET_RAW"])


@pytest.mark.parametrize("add, drop, bad", [(["NET_FOO"], [], "'NET_FOO'"), ([], ["CAP_BOGUS"], "'CAP_BOGUS'"),
                                            (["CAP_ALL"], [], "'CAP_ALL'"), ([""], [], "''")])
def test_unknown_names_are_refused_by_name(add: list[str], drop: list[str], bad: str) -> None:
    with pytest.raises(UsageError, match=f"unknown capability {bad}"):
        resolve_caps(add, drop)


# apply_caps, for real, as root of a fresh user namespace

def _caps(status: str) -> dict[str, int]:
    return {m[1]: int(m[2], 16) for m in re.finditer(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}


def _field(status: str, name: str) -> list[int]:
    return [int(x) for x in re.search(rf"^{name}:(.*)$", status, re.M)[1].split()]  # type: ignore[index]


def _apply_then_exec(keep: frozenset[int], uid: int, gid: int,
                     groups: tuple[int, ...] | None) -> tuple[tuple[int, int, int], str]:
    apply_caps(keep, uid=uid, gid=gid, groups=groups)
    # What the container's command sees: a fresh exec, as the runtime does next.
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True, check=True).stdout
    return native.capget(), status


MODES = ["subuid", pytest.param("single", marks=pytest.mark.single_id)]


def _mapping(mode: str) -> IdMapping:
    m = detect_mapping()
    if m.mode != mode:
        pytest.skip(f"this user's mapping is {m.mode}, not {mode}")
    return m


@pytest.mark.parametrize("mode", MODES)
def test_root_command_gets_exactly_the_kept_caps(mode: str) -> None:
    keep = resolve_caps(["NET_ADMIN"], ["CHOWN"])
    sets, status = run_in_userns(_mapping(mode), _apply_then_exec, keep, 0, 0, None)
    assert sets == (mask(keep), mask(keep), 0)
    assert _caps(status) == {"CapInh": 0, "CapPrm": mask(keep), "CapEff": mask(keep), "CapBnd": mask(keep),
                             "CapAmb": 0}


@pytest.mark.parametrize("mode", MODES)
def test_drop_all_leaves_root_powerless(mode: str) -> None:
    _, status = run_in_userns(_mapping(mode), _apply_then_exec, frozenset(), 0, 0, None)
    assert _caps(status) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}


@pytest.mark.needs_subuid
def test_other_user_runs_without_caps_even_when_setuid_was_dropped() -> None:
    # SETUID and SETGID are not kept, yet the switch works: it happens before they go.
    keep = _n("CHOWN", "NET_BIND_SERVICE")
    _, status = run_in_userns(_mapping("subuid"), _apply_then_exec, keep, 1000, 1000, (1000, 10))
    assert _field(status, "Uid") == [1000] * 4 and _field(status, "Gid") == [1000] * 4
    assert _field(status, "Groups") == [10, 1000]
    assert _caps(status) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": mask(keep), "CapAmb": 0}


def _chown_errno(path: str, keep: frozenset[int]) -> int:
    apply_caps(keep)
    try:
        os.chown(path, 1, 1)
    except OSError as e:
        return e.errno or -1
    return 0


@pytest.mark.needs_subuid
def test_chown_to_another_id_needs_cap_chown(tmp_path: Path) -> None:
    mapping = _mapping("subuid")
    f = tmp_path / "file"
    f.write_text("x")
    assert run_in_userns(mapping, _chown_errno, str(f), resolve_caps([], ["CHOWN"])) == errno.EPERM
    assert f.stat().st_uid == os.getuid()
    assert run_in_userns(mapping, _chown_errno, str(f), resolve_caps([], [])) == 0
    assert f.stat().st_uid == mapping.host_uid(1)


def test_module_loads_nothing_heavy() -> None:
    # apply_caps is on every container's start path, whose latency is a headline figure: errno is
    # built in, collections.abc a sub-millisecond alias of what `collections` (always loaded) has.
    code = ("import json, sys; before = set(sys.modules); import rootless.runtime.caps; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m for m in json.loads(out) if not m.startswith(("native", "rootless", "_cffi_backend"))}
    assert loaded <= {"errno", "collections.abc", "__future__"}
