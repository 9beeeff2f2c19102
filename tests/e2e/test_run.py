"""`rl run` as a user runs it, on every storage driver: exit codes, stdio, identity, mounts, signals."""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Rl, has_subuid_range, wait_for


def test_echo(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--rm", "busybox", "echo", "hello", "world")
    assert r.out == "hello world\n" and r.err == ""


def test_exit_code_is_the_command_s(run) -> None:  # type: ignore[no-untyped-def]
    assert run("--rm", "busybox", "sh", "-c", "exit 3", check=False).code == 3


def test_killed_command_exits_128_plus_signal(run) -> None:  # type: ignore[no-untyped-def]
    # With --init the command is not pid 1, which the kernel shields from its own namespace's SIGKILL.
    assert run("--rm", "--init", "busybox", "sh", "-c", "kill -9 $$", check=False).code == 137


@pytest.mark.parametrize("cmd, code, text", [
    (("nosuchcommand",), 127, "nosuchcommand: executable file not found in $PATH"),
    (("/bin/nosuch",), 127, "/bin/nosuch: executable file not found"),
    (("/etc/passwd",), 126, "/etc/passwd: permission denied"),
    (("/etc",), 126, "/etc:"),
])
def test_start_failures_use_docker_exit_codes(run, cmd: tuple[str, ...], code: int, text: str) -> None:  # type: ignore[no-untyped-def]
    r = run("--rm", "busybox", *cmd, check=False)
    assert r.code == code, r.err
    assert r.err.startswith("Error: ") and text in r.err and len(r.err.splitlines()) == 1


def _root_mount(rl: Rl, *args: str) -> str:
    out = rl("--storage-driver", "overlay", "run", *args, "busybox", "cat", "/proc/mounts").out
    return next(line for line in out.splitlines() if line.split()[1] == "/")


def test_a_removed_container_s_overlay_skips_fsync(rl: Rl, busybox: str) -> None:
    """--rm mounts the kernel overlay volatile, as podman does: the writable layer goes with the
    container, so fsync inside it need not reach the disk. A container that is kept is not."""
    assert "volatile" in _root_mount(rl, "--rm")
    assert "volatile" not in _root_mount(rl, "--name", "kept")
    # A kept container mounts its upper layer again, not volatile either.
    again = rl("start", "-a", "kept").out
    assert "volatile" not in next(line for line in again.splitlines() if line.split()[1] == "/")


def test_unknown_image(rl: Rl) -> None:
    r = rl("run", "--rm", "--pull=never", "nosuchimage", "true", check=False)
    assert r.code == 125 and r.err.strip() == "Error: image not known: nosuchimage"
    # With the default --pull=missing rl tries the image's registry (here, nothing listens there).
    r = rl("run", "--rm", "127.0.0.1:9/nosuchimage", "true", check=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 125 and last.startswith("Error: ") and "127.0.0.1:9" in last and "Traceback" not in r.err
    assert rl("ps", "-a", "-q").out == "" and rl("images", "-a", "-q").out == ""


def test_env_precedence(rl: Rl, busybox_tar: Path, tmp_path: Path) -> None:
    rl("import", "-c", "ENV A=image B=image C=image", str(busybox_tar), "envimg")
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nB=file\nC=file\n")
    r = rl("run", "--rm", "--env-file", str(envfile), "-e", "C=flag", "-e", "FROM_HOST", "-e", "UNSET_ON_HOST",
           "envimg", "env", env={"FROM_HOST": "hostvalue"})
    env = dict(line.split("=", 1) for line in r.out.splitlines())
    assert (env["A"], env["B"], env["C"]) == ("image", "file", "flag")
    assert env["FROM_HOST"] == "hostvalue" and "UNSET_ON_HOST" not in env
    assert env["PATH"].startswith("/usr/local/sbin") and env["HOME"] == "/root"
    assert len(env["HOSTNAME"]) == 12


def test_workdir(run) -> None:  # type: ignore[no-untyped-def]
    assert run("--rm", "-w", "/tmp", "busybox", "pwd").out == "/tmp\n"
    assert run("--rm", "-w", "/new/dir", "busybox", "pwd").out == "/new/dir\n"


def test_user_by_name_and_number(run) -> None:  # type: ignore[no-untyped-def]
    if not has_subuid_range():
        pytest.skip("other users need a subordinate range (single-id behaviour is tested separately)")
    assert run("--rm", "-u", "user", "busybox", "id").out.strip() == "uid=1000(user) gid=1000(user) groups=1000(user)"
    assert run("--rm", "-u", "1234:42", "busybox", "id", "-u").out == "1234\n"
    out = run("--rm", "-u", "nobody", "busybox", "sh", "-c", "echo $HOME; id -un").out
    assert out.split() == ["/nonexistent", "nobody"]  # HOME from passwd, as Docker sets it


def test_unknown_user(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--rm", "-u", "ghost", "busybox", "id", check=False)
    assert r.code == 125 and "unable to find user ghost" in r.err


def test_stdin_with_and_without_i(run) -> None:  # type: ignore[no-untyped-def]
    data = b"line one\nline two\n" * 1000
    assert run("--rm", "-i", "busybox", "cat", input=data).out.encode() == data
    assert run("--rm", "busybox", "cat", input=data).out == ""


def test_ten_megabytes_of_output_intact(rl: Rl, busybox: str) -> None:
    p = subprocess.run([sys.executable, "-m", "rootless", "run", "--rm", "busybox", "sh", "-c",
                        "yes 0123456789abcdef | head -c 10000000"], env=rl.env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == 10_000_000
    assert p.stdout == (b"0123456789abcdef\n" * 600_000)[:10_000_000]


def test_hostname(run) -> None:  # type: ignore[no-untyped-def]
    assert run("--rm", "--hostname", "box", "busybox", "sh", "-c", "hostname; cat /etc/hostname").out == "box\nbox\n"
    hosts = run("--rm", "--hostname", "box", "busybox", "cat", "/etc/hosts").out
    assert "box" in hosts and "localhost" in hosts


def test_proc_shows_only_the_container(run) -> None:  # type: ignore[no-untyped-def]
    pids = run("--rm", "busybox", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'").out.split()
    assert "1" in pids and len(pids) <= 3, pids
    assert run("--rm", "busybox", "sh", "-c", "echo $$").out == "1\n"


def test_dev_has_the_usual_nodes(run) -> None:  # type: ignore[no-untyped-def]
    out = run("--rm", "busybox", "sh", "-c",
              "ls /dev; echo x > /dev/null; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; "
              "mount | grep -E ' /dev/(pts|shm|mqueue) '").out
    for n in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "ptmx"):
        assert n in out.split(), n
    assert out.count("4\n") == 2


def test_sys_is_read_only(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--rm", "busybox", "sh", "-c", "mkdir /sys/x", check=False)
    assert (r.code, r.err) == (1, "mkdir: can't create directory '/sys/x': Read-only file system\n")


def test_network_none_has_only_lo(run) -> None:  # type: ignore[no-untyped-def]
    out = run("--rm", "--network", "none", "busybox", "sh", "-c", "ls /sys/class/net; ip link 2>/dev/null || true").out
    assert out.split()[0] == "lo" and "eth0" not in out
    assert "UP" in run("--rm", "--network", "none", "busybox", "ip", "link", "show", "lo").out


def test_network_host_sees_host_interfaces(run) -> None:  # type: ignore[no-untyped-def]
    host = sorted(os.listdir("/sys/class/net"))
    assert run("--rm", "busybox", "ls", "/sys/class/net").out.split() == host


def test_bind_mounts_rw_and_ro(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "data"
    d.mkdir()
    (d / "in").write_text("from host\n")
    out = run("--rm", "-v", f"{d}:/data", "busybox", "sh", "-c", "cat /data/in; echo back > /data/out").out
    assert out == "from host\n"
    st = (d / "out").stat()
    assert (d / "out").read_text() == "back\n"
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # container root is the invoking user
    r = run("--rm", "-v", f"{d}:/data:ro", "busybox", "sh", "-c", "echo no > /data/x", check=False)
    assert (r.code, r.err) == (1, "sh: can't create /data/x: Read-only file system\n")
    assert not (d / "x").exists()
    r = run("--rm", "--mount", f"type=bind,source={d},target=/m,readonly", "busybox", "touch", "/m/y", check=False)
    assert (r.code, r.err) == (1, "touch: /m/y: Read-only file system\n")


def test_read_only_root_and_tmpfs(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert (r.code, r.err) == (1, "touch: /x: Read-only file system\n")
    out = run("--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
              "echo ok > /scratch/f && cat /scratch/f && mount | grep ' /scratch '").out
    assert out.startswith("ok\n") and "tmpfs" in out


def test_bad_volume_syntax(rl: Rl, busybox: str) -> None:
    r = rl("run", "--rm", "-v", "relative/path:/x", "busybox", "true", check=False)
    assert r.code == 125 and len(r.err.splitlines()) == 1


def test_entrypoint_and_cmd(rl: Rl, busybox_tar: Path) -> None:
    rl("import", "-c", 'ENTRYPOINT ["echo", "entry"]', "-c", 'CMD ["default"]', str(busybox_tar), "ep")
    assert rl("run", "--rm", "ep").out == "entry default\n"
    assert rl("run", "--rm", "ep", "given").out == "entry given\n"
    assert rl("run", "--rm", "--entrypoint", "echo", "ep", "x").out == "x\n"


def test_capabilities(run) -> None:  # type: ignore[no-untyped-def]
    status = run("--rm", "busybox", "grep", "CapEff", "/proc/self/status").out.split()[1]
    assert int(status, 16) == 0x800405fb  # podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP
    r = run("--rm", "--cap-drop", "CHOWN", "busybox", "sh", "-c", "touch /f && chown 1:1 /f", check=False)
    assert (r.code, r.err) == (1, "chown: /f: Operation not permitted\n")
    status = run("--rm", "--cap-drop", "all", "busybox", "grep", "CapEff", "/proc/self/status").out.split()[1]
    assert int(status, 16) == 0


def test_no_new_privileges(run) -> None:  # type: ignore[no-untyped-def]
    out = run("--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status").out
    assert out.split()[1] == "1"


def test_sigterm_reaches_the_command(rl: Rl, busybox: str) -> None:
    p = rl.popen("run", "--rm", "busybox", "sh", "-c",
                 "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 7, err
    assert out == b"got TERM\n"


def test_init_forwards_signals_and_reaps(rl: Rl, busybox: str) -> None:
    # The orphan's parent dies at once, so it becomes the init's child; once it exits only the
    # init can remove its /proc entry (a zombie keeps it, state Z, for as long as nobody waits).
    script = ("(sh -c 'echo $$ > /tmp/orphan' &); echo $$; "
              "while [ ! -s /tmp/orphan ]; do sleep 0.05; done; o=$(cat /tmp/orphan); i=0; "
              "while [ -e /proc/$o ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
              "if [ -e /proc/$o ]; then grep State /proc/$o/status; else echo reaped; fi; sleep 1000")
    p = rl.popen("run", "--rm", "--init", "busybox", "sh", "-c", script, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"2\n"  # pid 1 is the init
    assert p.stdout.readline() == b"reaped\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out) == (130, b""), err


def test_name_in_use_and_ps_rm(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "one", "busybox", "true")
    r = rl("run", "--name", "one", "busybox", "true", check=False)
    assert r.code == 125 and "already in use" in r.err
    lines = rl("ps", "-a").out.splitlines()
    assert "one" in lines[1] and "Exited (0)" in lines[1]
    assert rl("ps").out.splitlines()[1:] == []
    assert rl("rm", "one").out.strip() == "one"
    assert rl("ps", "-aq").out == ""
    assert rl("rm", "one", check=False).code == 1


def test_init_says_nothing_of_its_own(rl: Rl, busybox: str) -> None:
    r = rl("run", "--rm", "--init", "busybox", "echo", "hi")
    assert (r.out, r.err) == ("hi\n", "")


def test_ps_and_inspect_print_as_docker_does(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "long", "busybox", "sh", "-c", "echo 123456789012345678901234")
    header, line = rl("ps", "-a").out.splitlines()
    assert '"sh -c echo 12345678…"' in line and header.startswith("CONTAINER ID")
    raw = rl("ps", "-a", "--format", "json").out
    assert "\\u" not in raw
    row = json.loads(raw)
    assert row["Command"] == '"sh -c echo 12345678…"' and row["Names"] == "long"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", row["CreatedAt"]), row["CreatedAt"]
    assert rl("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}} {{.Config.Cmd}}", "long").out == \
        "false 0 [sh -c echo 123456789012345678901234]\n"
    assert rl("ps", "-a", "--format", "{{.Names}}\t{{.State}}").out == "long\texited\n"


def test_rm_leaves_nothing(rl: Rl, busybox: str) -> None:
    for _ in range(3):
        rl("run", "--rm", "busybox", "sh", "-c", "echo data > /file")
    assert not (rl.root / "containers").exists() or os.listdir(rl.root / "containers") == []


def test_hundred_sequential_runs_leave_nothing_behind(rl: Rl, busybox: str) -> None:
    before_mounts = Path("/proc/self/mountinfo").read_text()
    for i in range(100):
        assert rl("run", "--rm", "busybox", "true").code == 0
    assert Path("/proc/self/mountinfo").read_text() == before_mounts
    assert os.listdir(rl.root / "containers") == []
    assert not (rl.root / "tmp").exists() or os.listdir(rl.root / "tmp") == []
    mine = subprocess.run(["ps", "-u", str(os.getuid()), "-o", "pid=,comm="], capture_output=True, text=True).stdout
    assert "busybox" not in mine and " sh" not in mine


def test_four_concurrent_runs(rl: Rl, busybox: str) -> None:
    procs = [rl.popen("run", "--rm", "busybox", "sh", "-c", f"sleep 0.5; echo {i}", stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE) for i in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [o[0] for o in outs] == [f"{i}\n".encode() for i in range(4)]
    assert all(p.returncode == 0 for p in procs)


@pytest.mark.single_id
def test_single_id_runs_busybox_and_says_what_it_cannot_do(rl: Rl, busybox: str) -> None:
    assert rl("run", "--rm", "busybox", "id", "-u").out == "0\n"
    r = rl("run", "--rm", "-u", "1000", "busybox", "id", check=False)
    assert r.code == 125 and "not mapped" in r.err and "subordinate" in r.err


def test_apt_get_install_in_debian(rl: Rl, debian_tar: Path, apt_mirror: str) -> None:
    if not has_subuid_range():
        pytest.skip("apt drops privileges to _apt, which needs a subordinate id range")
    rl("import", str(debian_tar), "debian:bookworm")
    r = rl("run", "--rm", "debian:bookworm", "sh", "-c",
           "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null && hello",
           timeout=600)
    assert "Hello, world!" in r.out


@pytest.mark.single_id
def test_single_id_warning_is_said_once(rl: Rl, busybox: str) -> None:
    first = rl("run", "--rm", "busybox", "true")
    assert first.err.startswith("Warning: ") and "single-id mode" in first.err
    assert rl("run", "--rm", "busybox", "true").err == ""


def test_killed_foreground_rl_takes_its_container_along(rl: Rl, busybox: str) -> None:
    p = rl.popen("run", "--name", "orphan", "busybox", "sh", "-c", "echo ready; exec sleep 1000",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    p.kill()
    p.wait(timeout=30)
    wait_for(lambda: "sleep 1000" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout,
             10, "the container to end with the rl that ran it")
    line = rl("ps", "-a").out.splitlines()[1]
    assert "orphan" in line and "Exited (137)" in line
    rl("rm", "orphan")
    assert rl("ps", "-aq").out == ""
    assert os.listdir(rl.root / "containers") == []


@pytest.mark.parametrize("helper", ["missing", "not-setuid"])
def test_unusable_newuidmap_falls_back_to_single_id_and_says_so(rl: Rl, busybox: str, tmp_path: Path,
                                                                helper: str) -> None:
    if not has_subuid_range():
        pytest.skip("this user has no subordinate range, so rl never looks for newuidmap")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if helper == "not-setuid":
        for tool in ("newuidmap", "newgidmap"):
            shutil.copy("/usr/bin/" + tool, bin_dir / tool)  # setuid, but to this user: useless
    env = {"PATH": str(bin_dir)}
    r = rl("run", "--rm", "busybox", "id", "-u", env=env)
    assert r.out == "0\n"
    assert "newuidmap is missing or not setuid root" in r.err and "'uidmap' package" in r.err
    assert "single id" in rl("info", env=env).out


def test_userns_keep_id(run, rl: Rl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vol = tmp_path / "v"
    vol.mkdir()
    r = run("--rm", "--userns", "keep-id", "-v", f"{vol}:/v", "busybox", "sh", "-c",
            "id -u; id -g; whoami; stat -c %u:%g / /bin/busybox; touch /v/mine")
    out = r.out.split()
    assert out[:3] == [str(os.getuid()), str(os.getgid()), pwd.getpwuid(os.getuid()).pw_name]
    assert (vol / "mine").stat().st_uid == os.getuid()
    if has_subuid_range():
        assert out[3:5] == ["0:0", "0:0"], "the image's files must stay root's"
        assert run("--rm", "--userns", "keep-id", "-u", "0", "busybox", "id", "-u").out == "0\n"


def test_keep_id_commit_keeps_the_owners_seen_inside(run, rl: Rl) -> None:  # type: ignore[no-untyped-def]
    if not has_subuid_range():
        pytest.skip("with one mapped id, the user's files and the image's are the same owner on disk")
    run("--name", "k", "--userns", "keep-id", "busybox", "sh", "-c", "mkdir /tmp/made && touch /tmp/made/f")
    rl("commit", "k", "kept")
    expected = f"{os.getuid()}:{os.getgid()}\n"
    assert rl("run", "--rm", "kept", "stat", "-c", "%u:%g", "/tmp/made/f").out == expected
    rl("rm", "k")
    rl("rmi", "kept", "busybox")
    rl("system", "prune", "-f")
    shifted = rl.root / "layers-shifted"
    assert not shifted.exists() or not any(shifted.glob("*/*")), "copies of removed layers were left"


def test_bad_userns(rl: Rl, busybox: str) -> None:
    r = rl("run", "--rm", "--userns", "bogus", "busybox", "true", check=False)
    last = r.err.splitlines()[-1]
    assert r.code == 125 and last.startswith("Error: ") and "keep-id" in last and "Traceback" not in r.err


@pytest.mark.single_id
def test_keep_id_in_single_id_mode(rl: Rl, busybox: str, tmp_path: Path) -> None:
    r = rl("run", "--rm", "--userns", "keep-id", "-v", f"{tmp_path}:/v", "busybox", "sh", "-c",
           "id -u; id -g; touch /v/mine")
    assert r.out.split() == [str(os.getuid()), str(os.getgid())]
    assert (tmp_path / "mine").stat().st_uid == os.getuid()
