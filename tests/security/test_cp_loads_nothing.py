"""CVE-2019-14271: `docker cp` loaded the container's libnss, running the image's code as root.

docker-cp's helper chrooted into the container, then resolved a user name: glibc loaded the NSS
modules /etc/nsswitch.conf named, from the container's /lib. rl's copy helper also runs with the
container's root as its root; it must not load a library, run a program or import a Python module
from there. The image here booby-traps all three: every one of them writes a marker if run.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Rl

_TRAP_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void trap(void) {
    int fd = open("/pwned-lib", O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    fd = open("%(host_marker)s", O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}
"""
_TRAP_PY = "open('/pwned-py', 'w').close()\nopen(%(host_marker)r, 'w').close()\n"
_TRAP_SH = "#!/bin/sh\ntouch /pwned-bin %(host_marker)s\n"
_NSSWITCH = "passwd: trap files\ngroup: trap files\nshadow: trap files\nhosts: trap files\n"
_LIB_DIRS = ("lib", "lib64", "usr/lib", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
             "lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu")
_LIBS = ("libnss_trap.so.2", "libnss_files.so.2", "libnss_compat.so.2", "libc.so.6", "libpthread.so.0",
         "libdl.so.2", "libutil.so.1", "libz.so.1", "libffi.so.8", "libfuse3.so.3")
# Modules Python imports on demand, from the standard library and its extensions: with the
# container's root as its own, a lazy import would find the image's copy first.
_MODULES = ("traceback", "linecache", "tokenize", "locale", "gettext", "gzip", "bz2", "lzma", "zipfile",
            "pwd", "grp", "_bz2", "_lzma", "zlib", "shutil", "tempfile", "copy", "json", "pickle", "struct",
            "sitecustomize", "usercustomize", "encodings/idna", "encodings/cp437", "encodings/latin_1")
_PROGRAMS = ("bin/tar", "usr/bin/tar", "usr/bin/getent", "usr/sbin/nscd", "usr/bin/python3")
MARKERS = ("pwned-lib", "pwned-py", "pwned-bin")


def _add(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), mode
    tf.addfile(ti, io.BytesIO(data))


def _trapped_image(rl: Rl, busybox_tar: Path, tmp_path: Path, host_marker: Path) -> None:
    """busybox (static) with the traps added, imported as `trapped`."""
    lib = tmp_path / "trap.so"
    src = tmp_path / "trap.c"
    src.write_text(_TRAP_C % {"host_marker": host_marker})
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_tar.read_bytes())
    py_dirs = sorted({p.lstrip("/") for p in sys.path if p.startswith("/")})
    with tarfile.open(rootfs, "a") as tf:
        _add(tf, "etc/nsswitch.conf", _NSSWITCH.encode())
        for d in _LIB_DIRS:
            for name in _LIBS:
                _add(tf, f"{d}/{name}", lib.read_bytes(), 0o755)
        for d in py_dirs:
            for module in _MODULES:
                _add(tf, f"{d}/{module}.py", (_TRAP_PY % {"host_marker": str(host_marker)}).encode())
        for prog in _PROGRAMS:
            _add(tf, prog, (_TRAP_SH % {"host_marker": host_marker}).encode(), 0o755)
    rl("import", str(rootfs), "trapped")


def _markers_in(rl: Rl, container: str, tmp_path: Path) -> list[str]:
    out = tmp_path / f"{container}.tar"
    rl("export", "-o", str(out), container)
    with tarfile.open(out) as tf:
        return [n for n in tf.getnames() if n.lstrip("./") in MARKERS]


def _copy_both_ways(rl: Rl, busybox_tar: Path, tmp_path: Path) -> None:
    host_marker = tmp_path / "host-marker"
    _trapped_image(rl, busybox_tar, tmp_path, host_marker)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_text("in\n")
    # A stopped container (the helper mounts its root and chroots) and a running one (it joins
    # the container's namespaces); owners of every kind, so that any name lookup would happen.
    rl("run", "--name", "stopped", "trapped", "sh", "-c", "echo x > /f; chown 1:1 /f; mkdir /d; echo y > /d/g")
    rl("cp", "stopped:/f", str(tmp_path / "out-f"))
    rl("cp", "stopped:/d", str(tmp_path / "out-d"))
    rl("cp", str(tmp_path / "in"), "stopped:/in")
    rl("cp", "-a", str(tmp_path / "in" / "f"), "stopped:/in-a")
    assert _markers_in(rl, "stopped", tmp_path) == []
    p = rl.popen("run", "--name", "live", "trapped", "sh", "-c",
                 "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    try:
        assert p.stdout.readline() == b"ready\n"
        rl("cp", str(tmp_path / "in"), "live:/in")
        rl("cp", "-a", str(tmp_path / "in" / "f"), "live:/in-a")
        rl("cp", "live:/etc", str(tmp_path / "out-etc"))
        rl("export", "-o", str(tmp_path / "live.tar"), "live")
        rl("commit", "live", "committed")
        assert _markers_in(rl, "live", tmp_path) == []
    finally:
        p.terminate()
        p.communicate(timeout=60)
        rl("rm", "-f", "live")
        rl("rm", "stopped")
    assert not host_marker.exists(), "rl ran the image's code"


def test_cp_loads_no_library_program_or_module_of_the_container(rl: Rl, busybox_tar: Path, tmp_path: Path) -> None:
    """CVE-2019-14271: `rl cp` both ways, `rl export` and `rl commit` of an image whose NSS
    configuration, libraries, tar and Python modules all write a marker when run: none is."""
    _copy_both_ways(rl, busybox_tar, tmp_path)


@pytest.mark.as_root
def test_root_cp_loads_no_library_program_or_module_of_the_container(rl: Rl, busybox_tar: Path,
                                                                      tmp_path: Path) -> None:
    """CVE-2019-14271 as root, where it gave the image root on the host."""
    _copy_both_ways(rl, busybox_tar, tmp_path)
