"""Issue 11 finding 2, Docker's CVE-2018-15664: `rl cp` writes through symlinks swapped in.

When the destination of a copy is a directory the container can also write (a volume), a process
of the container that keeps recreating the names being copied as symlinks got the file they
point to overwritten: rl checked each name, then opened it by path, following whatever was there
by then. Both directions were exposed: out of a container, the host side wrote through a symlink
to a host file; into one, the helper in the container wrote through a symlink to a file of a
volume. rl cp now makes every entry relative to directory descriptors with O_EXCL|O_NOFOLLOW.

The racing process runs on the host, in the shared directory, where the container's process
would make the same symlinks through the volume: from the host it races as fast as Python can,
which makes the old window (about 50 microseconds per file) reliably hit. A variant races from
inside the container, swapping the copy's source for symlinks and FIFOs.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Rl, wait_for
from tests.e2e.helpers import WAITING, start_container

FILES = 400
# Copies until the victim changes (the old code), as many as a slow machine needs for the race
# to be hit (a few thousand racing files).
ROUNDS = 8
MAKE_FILES = f"mkdir -p /build && cd /build && for i in $(seq 1000 {999 + FILES}); do echo owned > f$i; done"
# Recreates dir/fNNNN as a symlink to TARGET, atomically (rename), name after name, forever.
_RACER = """
import os, sys
d, target, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tmp = os.path.join(d, ".racer")
while True:
    for i in range(first, first + n):
        try:
            os.symlink(target, tmp)
        except FileExistsError:
            pass
        try:
            os.rename(tmp, os.path.join(d, f"f{i}"))
        except OSError:
            pass
"""


@contextmanager
def racing(directory: Path, target: str) -> Iterator[None]:
    p = subprocess.Popen([sys.executable, "-c", _RACER, str(directory), target, "1000", str(FILES)])
    try:
        wait_for(lambda: (directory / "f1000").is_symlink(), 30, "the racer to swap in its first symlink")
        yield
    finally:
        p.kill()
        p.wait()


def assert_one_line_result(code: int, err: str) -> None:
    """rl either copied (what it wrote replaced the racer's symlinks) or gave one error line."""
    assert code in (0, 125), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err


@contextmanager
def running(rl: Rl, name: str, *run_args: str) -> Iterator[None]:
    p = start_container(rl, None, name, *run_args)
    try:
        yield
    finally:
        p.terminate()
        p.communicate(timeout=60)
        rl("rm", "-f", name)


def _copy_out_race(rl: Rl, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    rl("run", "--name", "src", "busybox", "sh", "-c", MAKE_FILES)
    try:
        with racing(shared, str(victim)):
            for _ in range(ROUNDS):
                r = rl("cp", "src:/build/.", str(shared), check=False)
                assert_one_line_result(r.code, r.err)
                assert victim.read_text() == "precious\n", "rl cp wrote through the racer's symlink"
    finally:
        rl("rm", "src")


def _copy_in_race(rl: Rl, tmp_path: Path) -> None:
    victims = tmp_path / "victims"
    victims.mkdir()
    victim = victims / "victim"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    for i in range(1000, 1000 + FILES):
        (source / f"f{i}").write_text("owned\n")
    with running(rl, "dst", "-v", f"{shared}:/dst", "-v", f"{victims}:/vic"):
        # The symlinks point at the victim as the container sees it.
        with racing(shared, "/vic/victim"):
            for _ in range(ROUNDS):
                r = rl("cp", f"{source}/.", "dst:/dst", check=False)
                assert_one_line_result(r.code, r.err)
                assert victim.read_text() == "precious\n", "rl cp wrote through the racer's symlink"


def test_cp_out_of_a_container_does_not_write_through_swapped_in_symlinks(rl: Rl, busybox: str,
                                                                          tmp_path: Path) -> None:
    """CVE-2018-15664, container -> host: `rl cp CTR:/build/. SHARED` while SHARED/fNNNN keep
    becoming symlinks to a host file of the user's; that file stays as it was."""
    _copy_out_race(rl, tmp_path)


def test_cp_into_a_container_does_not_write_through_swapped_in_symlinks(rl: Rl, busybox: str,
                                                                        tmp_path: Path) -> None:
    """CVE-2018-15664, host -> container: `rl cp SRC/. CTR:/dst` while the container's /dst/fNNNN
    (a volume) keep becoming symlinks to /vic/victim, a host file in another volume."""
    _copy_in_race(rl, tmp_path)


@pytest.mark.as_root
def test_root_cp_out_of_a_container_does_not_write_through_swapped_in_symlinks(rl: Rl, busybox: str,
                                                                               tmp_path: Path) -> None:
    """CVE-2018-15664 as root, container -> host: the victim is a file of root's."""
    _copy_out_race(rl, tmp_path)


@pytest.mark.as_root
def test_root_cp_into_a_container_does_not_write_through_swapped_in_symlinks(rl: Rl, busybox: str,
                                                                             tmp_path: Path) -> None:
    """CVE-2018-15664 as root, host -> container."""
    _copy_in_race(rl, tmp_path)


# The container's racer: swaps DIR/fNNNN, atomically (rename from DIR/../tmp), for a FIFO, a
# file, a symlink to SECRET and a file again, name after name, forever. Static, for busybox.
_SWAPPER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
static void put(const char *tmp, const char *name, int kind, const char *secret) {
    unlink(tmp);
    if (kind == 0) {
        mkfifo(tmp, 0644);
    } else if (kind == 1) {
        symlink(secret, tmp);
    } else {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0 && write(fd, "data\n", 5) == 5) close(fd);
    }
    rename(tmp, name);
}
int main(int argc, char **argv) {
    char tmp[32], name[32];
    int first, n;
    if (argc != 6 || chdir(argv[1]) != 0) return 2;
    first = atoi(argv[3]);
    n = atoi(argv[4]);
    snprintf(tmp, sizeof tmp, "../tmp/%s", argv[5]);
    for (;;) {
        for (int i = first; i < first + n; i++) {
            snprintf(name, sizeof name, "f%d", i);
            put(tmp, name, 0, argv[2]);
            put(tmp, name, 2, argv[2]);
            put(tmp, name, 1, argv[2]);
            put(tmp, name, 2, argv[2]);
        }
    }
}
"""


def _swapping_script(secret: Path) -> str:
    """The container's pid 1: fills /shared, then runs SWAPPERS racers on it."""
    racers = " ".join(f"/tools/swapper /vol/shared {secret} 1000 {SWAPPED} {n} &" for n in range(SWAPPERS))
    return (f"mkdir /vol/shared /vol/tmp && cd /vol/shared && for i in $(seq 1000 {999 + SWAPPED}); "
            f"do echo data > f$i; done; {racers} {WAITING}")


SWAPPED = 10
# The regular files /copied holds (cat would wait forever on a FIFO).
_CAT_FILES = 'for f in /copied/* /copied/.[!.]*; do if [ -f "$f" ] && [ ! -L "$f" ]; then cat "$f"; fi; done; true'
SWAPPERS = 2
SWAP_ROUNDS = 15


def _fifo_and_symlink_swap(rl: Rl, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)  # the container's root may be another id than the test's
    shared = vol / "shared"
    secret = tmp_path / "secret"
    secret.write_text("SECRET-TOKEN\n")
    out = tmp_path / "out"
    out.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "swapper.c").write_text(_SWAPPER_C)
    subprocess.run(["cc", "-static", "-O2", "-o", str(tools / "swapper"), str(tools / "swapper.c")], check=True)
    p = rl.popen("run", "--name", "swapper", "-v", f"{vol}:/vol", "-v", f"{tools}:/tools:ro", "busybox",
                 "sh", "-c", _swapping_script(secret), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    try:
        assert p.stdout.readline() == b"ready\n"
        for _ in range(SWAP_ROUNDS):
            # Out of the path the container swaps (read in the container), and in from it (read on
            # the host): either must finish, whatever it meets.
            r = rl("cp", "swapper:/vol/shared/.", str(out), check=False, timeout=60)
            assert_one_line_result(r.code, r.err)
            r = rl("cp", f"{shared}/.", "swapper:/copied", check=False, timeout=60)
            assert_one_line_result(r.code, r.err)
        assert "SECRET-TOKEN" not in rl("exec", "swapper", "sh", "-c", _CAT_FILES).out, \
            "rl cp read the host file a swapped-in symlink pointed to"
        assert "SECRET-TOKEN" not in "".join(f.read_text() for f in out.iterdir() if f.is_file() and not f.is_symlink()
                                             and f.stat().st_size < 100)
    finally:
        p.terminate()
        p.communicate(timeout=60)
        rl("rm", "-f", "swapper")
    assert secret.read_text() == "SECRET-TOKEN\n"


def test_cp_neither_hangs_on_nor_follows_what_the_container_swaps_into_its_source(
        rl: Rl, busybox: str, tmp_path: Path) -> None:
    """CVE-2018-15664 with the racer inside the container: it swaps the files `rl cp` copies for
    FIFOs (opening one for reading waits for a writer: the old copy hung) and for symlinks to a
    host file (read by path on the host, the old copy into the container carried it in). Each
    copy finishes, with the files or one error line, and the secret stays on the host."""
    _fifo_and_symlink_swap(rl, tmp_path)


@pytest.mark.as_root
def test_root_cp_neither_hangs_on_nor_follows_what_the_container_swaps_into_its_source(
        rl: Rl, busybox: str, tmp_path: Path) -> None:
    """The same as root."""
    _fifo_and_symlink_swap(rl, tmp_path)
