"""runc CVE-2019-16884 and its kin: an image or a volume standing in for the kernel's /proc.

An image whose /proc is a symlink had the kernel's proc mounted wherever the link pointed inside
the root (on the root itself for `/proc -> /`), and its masks resolved there too; a volume could
be mounted onto /proc or under it (`-v X:/proc/sys`). rl now mounts proc on a real directory of
the image or refuses with a one-line error, refuses volumes on /proc, and masks what Docker and
podman mask, beneath the proc it mounted.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Rl


def _host_dir(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim").write_text("precious\n")
    return host


def _untouched(host: Path) -> bool:
    return sorted(os.listdir(host)) == ["victim"] and (host / "victim").read_text() == "precious\n"


@pytest.mark.parametrize("extra", [
    {"proc": "/"},
    {"proc": "HOST"},
    {"proc": "/fakeproc", "fakeproc": None, "fakeproc/sys": None},
    {"proc": "../../../../../../../../HOST"},
    {"dev": "HOST"},
    {"sys": "/"},
])
def test_an_image_whose_proc_is_a_symlink_is_refused(rl: Rl, busybox: str, tmp_path: Path,
                                                    hostile_image, extra: dict[str, str | None]) -> None:  # type: ignore[no-untyped-def]
    """/proc a symlink to the root, to a host path, to a directory the image controls (and /dev,
    /sys likewise): refused with one line naming it, and the host directory is untouched."""
    host = _host_dir(tmp_path)
    extra = {k: v.replace("HOST", str(host) if v == "HOST" else str(host).lstrip("/")) if v else v
             for k, v in extra.items()}
    hostile_image("trap", extra)
    r = rl("run", "--rm", "trap", "cat", "/proc/self/mountinfo", check=False)
    assert r.code == 125 and len(r.err.splitlines()) == 1 and f"/{next(iter(extra))}" in r.err, r
    assert _untouched(host)


def test_files_at_proc_names_in_the_image_are_covered(rl: Rl, busybox: str, hostile_image) -> None:  # type: ignore[no-untyped-def]
    """An image with its own /proc/self, /proc/sys, /proc/keys and /proc/timer_list: the container sees the
    kernel's, with the masks on."""
    hostile_image("trap", {"proc": None, "proc/self": "/", "proc/sys": "/etc", "proc/timer_list": None,
                           "proc/keys": "/etc/passwd"})
    out = rl("run", "--rm", "trap", "sh", "-c",
             "readlink /proc/self; wc -c < /proc/keys; ls /proc/sys; wc -c < /proc/timer_list").out.split()
    assert out[0].isdigit() and out[1] == "0" and "kernel" in out and out[-1] == "0", out


@pytest.mark.parametrize("target", ["/proc", "/proc/sys", "/proc/self/", "/proc/1/root"])
def test_a_volume_on_proc_is_refused(rl: Rl, busybox: str, tmp_path: Path, target: str) -> None:
    """`-v X:/proc...`: what rl mounts there must be the kernel's proc, so rl says no."""
    host = _host_dir(tmp_path)
    r = rl("run", "--rm", "-v", f"{host}:{target}", "busybox", "true", check=False)
    assert r.code == 125 and len(r.err.splitlines()) == 1 and "/proc" in r.err, r
    assert _untouched(host)


# What Docker masks (moby oci/defaults.go) and podman adds (containers/common DefaultMaskedPaths).
_MASKED_FILES = ("interrupts", "kcore", "keys", "latency_stats", "sched_debug", "timer_list", "timer_stats")
_MASKED_DIRS = ("acpi", "scsi")
_READ_ONLY = ("asound", "bus", "fs", "irq", "sys", "sysrq-trigger")


def test_proc_masks_apply(rl: Rl, busybox: str) -> None:
    """Masked files read empty, masked directories list empty, and the read-only ones are
    read-only mounts that refuse writes."""
    script = ("for f in " + " ".join(_MASKED_FILES) + "; do [ -e /proc/$f ] && echo $f $(wc -c < /proc/$f); done; "
              "for d in " + " ".join(_MASKED_DIRS) + "; do [ -e /proc/$d ] && echo $d $(ls /proc/$d | wc -l); done; "
              "awk '$5 ~ \"^/proc/\" {print $5, $6}' /proc/self/mountinfo; "
              "echo x > /proc/sys/kernel/domainname")
    r = rl("run", "--rm", "busybox", "sh", "-c", script, check=False)
    sizes = dict(line.split() for line in r.out.splitlines() if not line.startswith("/"))
    assert sizes and all(v == "0" for v in sizes.values()), sizes
    mounts = dict(line.split() for line in r.out.splitlines() if line.startswith("/"))
    for name in _READ_ONLY:
        if os.path.exists(f"/proc/{name}"):
            assert "ro" in mounts.get(f"/proc/{name}", "").split(","), (name, mounts)
    assert "Read-only file system" in r.err, r.err
