"""The command line contract of `python -m fuse_overlay` and the `fuse_overlay.mount()` API, on
real mounts: unprivileged on the host (through fusermount3) and as root of a user namespace."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fuse_overlay
from tests.conftest import wait_for

PROG = [sys.executable, "-m", "fuse_overlay"]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

pytestmark = pytest.mark.skipif(shutil.which("fusermount3") is None, reason="needs fusermount3")


@dataclass(frozen=True)
class Dirs:
    lower: Path
    upper: Path
    work: Path
    merged: Path

    @property
    def opts(self) -> str:
        return f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    d = Dirs(*(tmp_path / n for n in ("lower", "upper", "work", "merged")))
    for p in (d.lower, d.upper, d.work, d.merged):
        p.mkdir()
    (d.lower / "f").write_text("from the lower layer\n")
    return d


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def wait_unmounted(path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait (bounded) for the mount to go, so that a hung daemon fails the test, not the run."""
    wait_for(lambda: not mounted(path) and (proc is None or proc.poll() is not None), 10,
             f"{path} to be unmounted and its daemon to exit")


def daemon_pids(path: Path) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fuse_overlay" in argv and os.fsencode(path) in argv:
            pids.append(int(pid))
    return pids


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROG, *args], capture_output=True, text=True, env=ENV, timeout=60,
                          check=False)


def start_foreground(dirs: Dirs, *opts: str) -> tuple[subprocess.Popen[bytes], str]:
    read, write = os.pipe()
    proc = subprocess.Popen([*PROG, "-f", "--ready-fd", str(write), "-o", ",".join([dirs.opts, *opts]),
                             str(dirs.merged)], pass_fds=(write,), env=ENV, stderr=subprocess.PIPE)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        return proc, f.read().decode()


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_the_command_returns_once_the_mount_is_live_and_exits_on_unmount(dirs: Dirs) -> None:
    result = run("-o", dirs.opts, str(dirs.merged))
    try:
        assert result.returncode == 0, result.stderr
        assert (dirs.merged / "f").read_text() == "from the lower layer\n"
        (dirs.merged / "new").write_text("upper")
        assert (dirs.upper / "new").read_text() == "upper"
        assert len(daemon_pids(dirs.merged)) == 1
    finally:
        subprocess.run(["fusermount3", "-u", str(dirs.merged)], check=False)
    wait_unmounted(dirs.merged)
    wait_for(lambda: not daemon_pids(dirs.merged), 10, "the daemon to exit after its unmount")


def test_a_bad_directory_is_one_line_and_status_1(dirs: Dirs) -> None:
    missing = dirs.lower.parent / "missing"
    result = run("-o", f"lowerdir={missing},upperdir={dirs.upper},workdir={dirs.work}",
                 str(dirs.merged))
    assert result.returncode == 1
    assert str(missing) in one_line_error(result.stderr)
    assert not mounted(dirs.merged)


def test_a_workdir_inside_the_upperdir_is_refused(dirs: Dirs) -> None:
    work = dirs.upper / "work"
    work.mkdir()
    result = run("-o", f"lowerdir={dirs.lower},upperdir={dirs.upper},workdir={work}",
                 str(dirs.merged))
    assert result.returncode == 1
    assert "contain" in one_line_error(result.stderr)
    assert not mounted(dirs.merged)


def test_an_unknown_option_is_refused(dirs: Dirs) -> None:
    result = run("-o", dirs.opts + ",frobnicate", str(dirs.merged))
    assert result.returncode == 1
    assert "frobnicate" in one_line_error(result.stderr)
    assert not mounted(dirs.merged)


def test_options_may_come_in_several_o(dirs: Dirs) -> None:
    result = run("-o", f"lowerdir={dirs.lower}", "-o", f"upperdir={dirs.upper}",
                 f"-oworkdir={dirs.work}", str(dirs.merged))
    try:
        assert result.returncode == 0, result.stderr
        assert (dirs.merged / "f").exists()
    finally:
        subprocess.run(["fusermount3", "-u", str(dirs.merged)], check=False)
        wait_unmounted(dirs.merged)


def test_sigterm_unmounts_and_exits_0(dirs: Dirs) -> None:
    proc, ready = start_foreground(dirs)
    try:
        assert ready == "ok\n"
        assert mounted(dirs.merged)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
        assert not mounted(dirs.merged)
    finally:
        proc.kill()
        subprocess.run(["fusermount3", "-u", "-q", str(dirs.merged)], check=False)


def test_an_unmount_from_outside_ends_the_daemon_with_0(dirs: Dirs) -> None:
    proc, ready = start_foreground(dirs)
    try:
        assert ready == "ok\n"
        subprocess.run(["fusermount3", "-u", str(dirs.merged)], check=True)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_the_ready_fd_carries_the_error(dirs: Dirs) -> None:
    shutil.rmtree(dirs.work)
    proc, ready = start_foreground(dirs)
    assert proc.wait(timeout=30) == 1
    assert ready.startswith("error: ") and str(dirs.work) in ready
    assert proc.stderr is not None
    assert str(dirs.work) in one_line_error(proc.stderr.read().decode())


def test_mount_api_serves_until_unmount(dirs: Dirs, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    handle = fuse_overlay.mount([str(dirs.lower)], str(dirs.upper), str(dirs.work),
                                str(dirs.merged), stderr_path=str(log))
    try:
        assert handle.pid in daemon_pids(dirs.merged)
        with open(dirs.merged / "f", "a") as f:
            f.write("appended\n")
        assert (dirs.upper / "f").read_text() == "from the lower layer\nappended\n"
        assert (dirs.lower / "f").read_text() == "from the lower layer\n"
    finally:
        status = handle.unmount(timeout=30)
    assert status == 0
    assert not mounted(dirs.merged)
    assert log.read_text() == ""


def test_mount_api_raises_with_the_reason(dirs: Dirs) -> None:
    missing = str(dirs.lower.parent / "nowhere")
    with pytest.raises(fuse_overlay.FuseOverlayError, match="nowhere"):
        fuse_overlay.mount([missing], str(dirs.upper), str(dirs.work), str(dirs.merged))
    assert not mounted(dirs.merged)


def test_read_only_overlay_refuses_writes(dirs: Dirs) -> None:
    result = run("-o", f"lowerdir={dirs.lower},ro", str(dirs.merged))
    try:
        assert result.returncode == 0, result.stderr
        assert (dirs.merged / "f").read_text() == "from the lower layer\n"
        with pytest.raises(OSError) as e:
            (dirs.merged / "g").write_text("x")
        assert e.value.errno == errno.EROFS
    finally:
        subprocess.run(["fusermount3", "-u", str(dirs.merged)], check=False)
        wait_unmounted(dirs.merged)


def test_squash_to_root_shows_every_file_owned_by_root(dirs: Dirs) -> None:
    proc, ready = start_foreground(dirs, "squash_to_root")
    try:
        assert ready == "ok\n"
        st = os.stat(dirs.merged / "f")
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert os.stat(dirs.lower / "f").st_uid == os.getuid()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_importing_the_package_loads_neither_trio_nor_pyfuse3() -> None:
    # Nor subprocess: `fuse_overlay.upperfmt` is on the start path of every container.
    code = ("import sys, fuse_overlay.upperfmt; "
            "print(sorted({'trio', 'pyfuse3', 'subprocess'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_root_of_a_user_namespace_mounts_with_mount2(dirs: Dirs) -> None:
    """How the runtime uses it: uid 0 of a user namespace mounts without fusermount3, and files
    it makes belong to the daemon's user on the host."""
    script = (f"{' '.join(PROG)} -o {dirs.opts} {dirs.merged} && "
              f"stat -c %u:%g {dirs.merged}/f && echo made > {dirs.merged}/g && "
              f"umount {dirs.merged}")
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True,
                            text=True, env=ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0:0"
    assert (dirs.upper / "g").read_text() == "made\n"
    assert os.stat(dirs.upper / "g").st_uid == os.getuid()


# -- requests the daemon answers in C (native.fuse_hooks_enable) -----------------------------

@pytest.fixture
def served(dirs: Dirs) -> Iterator[Dirs]:
    handle = fuse_overlay.mount([str(dirs.lower)], str(dirs.upper), str(dirs.work), str(dirs.merged))
    try:
        yield dirs
    finally:
        handle.unmount(timeout=30)


def test_copy_file_range_inside_the_mount(served: Dirs) -> None:
    src = os.open(served.merged / "f", os.O_RDONLY)
    dst = os.open(served.merged / "copy", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        n = os.copy_file_range(src, dst, 100)
    finally:
        os.close(src)
        os.close(dst)
    assert n == len("from the lower layer\n")
    assert (served.upper / "copy").read_text() == "from the lower layer\n"


def test_a_reader_opened_before_a_copy_up_reads_the_new_data(served: Dirs) -> None:
    with open(served.merged / "f", "rb", buffering=0) as reader:
        with open(served.merged / "f", "r+b", buffering=0) as writer:
            writer.write(b"FROM")
            os.fsync(writer.fileno())
        # Out of the page cache: the read reaches the daemon, through the reader's own handle.
        os.posix_fadvise(reader.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert reader.read() == b"FROM the lower layer\n"


_CAPS_SCRIPT = """
import errno, os, sys
p, caps = sys.argv[1], bytes.fromhex(sys.argv[2])
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o755)
os.write(fd, b"x")
os.setxattr(p, "security.capability", caps)
print(os.getxattr(p, "security.capability").hex())
os.write(fd, b"y")
try:
    os.getxattr(p, "security.capability")
    print("kept")
except OSError as e:
    print("dropped" if e.errno == errno.ENODATA else e)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_write_drops_capabilities_set_on_a_new_file(dirs: Dirs, tmp_path: Path) -> None:
    """The kernel asks for security.capability before each write and drops it if there is one.
    A new file's "none" is answered without Python, and must stop being the answer once
    capabilities are set."""
    caps = bytes([1, 0, 0, 2, 0, 0x20, 0, 0] + [0] * 12).hex()  # cap_net_raw+ep, revision 2
    (tmp_path / "caps.py").write_text(_CAPS_SCRIPT)
    script = (f"{' '.join(PROG)} -o {dirs.opts} {dirs.merged} && "
              f"{sys.executable} {tmp_path / 'caps.py'} {dirs.merged / 'new'} {caps} && "
              f"umount {dirs.merged}")
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], capture_output=True,
                            text=True, env=ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [caps, "dropped"]
