"""Finding 5 of the isolation audit: /sys submounts stayed writable.

/sys was bind-mounted recursively and only its top mount remounted read-only, so /sys/fs/cgroup
and every cgroup tree under it stayed writable inside: on a host with delegated cgroups a
container could rewrite its user's own cgroups (pids.max, memory.max, cgroup.kill), and a
container of root's could make and change the host's cgroups. The same held for `-v X:Y:ro` of
a tree with mounts in it. Every mount under /sys and under a read-only bind is read-only now.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import Rl

# Every mount point under TOP (mountinfo's 5th field) with its options (6th), then a write
# attempt in each, whose error (or "written") is printed after the mount point.
_PROBE = """
awk -v top="$TOP" '$5 == top || index($5, top "/") == 1 {print $5, $6}' /proc/self/mountinfo |
while read -r point opts; do
    err=$( { touch "$point/rl-probe" && echo written; } 2>&1 )
    echo "$point $opts ${err##*: }"
done
"""


def _mounts_under(rl: Rl, top: str, *run_args: str) -> list[tuple[str, str, str]]:
    out = rl("run", "--rm", "-e", f"TOP={top}", *run_args, "busybox", "sh", "-c", _PROBE).out
    rows = [tuple(line.split(" ", 2)) for line in out.splitlines()]
    assert rows, f"no mount under {top} inside: {out!r}"
    return rows  # type: ignore[return-value]


def _assert_all_read_only(rows: list[tuple[str, str, str]]) -> None:
    writable = [r for r in rows if "ro" not in r[1].split(",")]
    assert not writable, f"{len(writable)} of {len(rows)} mounts are writable inside: {writable}"
    written = [r for r in rows if r[2] != "Read-only file system"]
    assert not written, f"writes did not fail with EROFS: {written}"


@pytest.mark.parametrize("network", ["host", "none"])
def test_every_mount_under_sys_is_read_only(rl: Rl, busybox: str, network: str) -> None:
    """The host's /sys (host network) and a fresh sysfs (own network namespace): /sys and every
    mount under it, /sys/fs/cgroup and its trees included, is read-only and refuses writes."""
    rows = _mounts_under(rl, "/sys", "--network", network)
    if network == "host":
        assert any(p.startswith("/sys/fs/cgroup") for p, _, _ in rows), rows
    _assert_all_read_only(rows)


def test_a_read_only_bind_is_read_only_all_the_way_down(rl: Rl, busybox: str) -> None:
    """`-v /sys:/hostsys:ro`: the mounts under the bound tree are read-only too."""
    rows = _mounts_under(rl, "/hostsys", "-v", "/sys:/hostsys:ro")
    assert len(rows) > 1, "the host's /sys has mounts under it"
    _assert_all_read_only(rows)


def test_read_only_root_and_dev_shm(rl: Rl, busybox: str) -> None:
    """--read-only: the root refuses writes; /dev/shm inside is the container's own tmpfs, so a
    file written there never reaches the host's /dev/shm."""
    name = f"rl-probe-{secrets.token_hex(4)}"
    r = rl("run", "--rm", "--read-only", "busybox", "sh", "-c",
           f"touch /rl-probe 2>&1; echo x > /dev/shm/{name} && cat /dev/shm/{name}", check=False)
    assert "Read-only file system" in r.out and r.out.endswith("x\n"), r.out
    assert not os.path.lexists(f"/dev/shm/{name}")


@pytest.mark.as_root
def test_root_s_container_cannot_touch_the_host_s_cgroups(rl: Rl, busybox: str) -> None:
    """As root (single-id: root inside is the host's root), the cgroup trees under /sys were
    writable: the container could make a file in the host's /sys/fs/cgroup tmpfs, make cgroups
    and rewrite a host cgroup's pids.max. The victim cgroup is made by the test on the host."""
    tag = secrets.token_hex(4)
    victim = next((Path(p) / f"rl-victim-{tag}" for p in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
                   if (Path(p) / "cgroup.procs").exists()), None)
    if victim is None:
        pytest.fail("no cgroup tree with a pids controller found under /sys/fs/cgroup")
    victim.mkdir()
    try:
        before = (victim / "pids.max").read_text()
        r = rl("run", "--rm", "--network", "host", "busybox", "sh", "-c",
               f"echo 1 > {victim}/pids.max; mkdir {victim.parent}/rl-made-{tag}; "
               f"touch /sys/fs/cgroup/rl-made-{tag}", check=False)
        assert (victim / "pids.max").read_text() == before, "the container rewrote the host's pids.max"
        assert not (victim.parent / f"rl-made-{tag}").exists(), "the container made a host cgroup"
        assert not Path(f"/sys/fs/cgroup/rl-made-{tag}").exists(), "the container wrote /sys/fs/cgroup"
        assert r.err.count("Read-only file system") == 3, r.err
    finally:
        for p in (victim.parent / f"rl-made-{tag}", Path(f"/sys/fs/cgroup/rl-made-{tag}"), victim):
            if p.is_dir():
                p.rmdir()
            elif p.exists():
                p.unlink()
