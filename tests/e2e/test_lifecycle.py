"""The container lifecycle as a user drives it: run -d, logs, stop, kill, wait, start, restart,
rm -f, inspect, and what happens when a supervisor is killed."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import DRIVERS, Rl, wait_for
from tests.e2e.helpers import run_in_terminal

# sh as pid 1 gets only the signals it traps; the short sleeps let the trap run soon.
LOOP = "while true; do sleep 0.1; done"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


@pytest.fixture
def detached(rl: Rl, busybox: str) -> Iterator[Callable[..., str]]:
    """`rl run -d ...` returning the id; every container made is removed at the end."""
    made: list[str] = []

    def run(*args: str, driver: str | None = None) -> str:
        pre = ("--storage-driver", driver) if driver else ()
        cid = rl(*pre, "run", "-d", *args).out.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
        made.append(cid)
        return cid

    yield run
    for cid in made:
        rl("rm", "-f", cid, check=False)


def logs_have(rl: Rl, cid: str, text: str) -> Callable[[], bool]:
    return lambda: text in rl("logs", cid).out


def state(rl: Rl, cid: str) -> dict:  # type: ignore[type-arg]
    return json.loads(rl("inspect", "--type", "container", cid).out)[0]["State"]  # type: ignore[no-any-return]


def processes_with(word: str) -> list[int]:
    """Live (not zombie) processes whose command line holds word."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (d / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if word in cmd and stat[0] not in ("Z", "X") and int(d.name) != os.getpid():
            found.append(int(d.name))
    return found


def test_detach_logs_ps_stop_rm(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("--name", "web", "busybox", "sh", "-c", f'trap "echo bye; exit 0" TERM; echo hello; {LOOP}')
    wait_for(logs_have(rl, cid, "hello"), 15, "hello in the logs")
    ps = rl("ps").out
    assert "web" in ps and "Up " in ps and cid[:12] in ps
    assert rl("stop", "web").out == "web\n"
    assert rl("logs", "web").out == "hello\nbye\n"
    assert "web" not in rl("ps").out
    assert "Exited (0)" in rl("ps", "-a").out
    assert rl("rm", "web").out == "web\n"
    assert "web" not in rl("ps", "-a").out


def test_logs_keep_streams_apart_with_timestamps_and_tail(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", "echo o1; echo e1 >&2; echo o2; printf partial")
    assert rl("wait", cid).out == "0\n"
    r = rl("logs", cid)
    assert (r.out, r.err) == ("o1\no2\npartial", "e1\n")
    r = rl("logs", "-t", cid)
    lines = r.out.split("\n")
    assert all(STAMP.match(line) for line in lines) and STAMP.sub("", lines[0]) == "o1"
    assert STAMP.sub("", r.err) == "e1\n"
    cid = detached("busybox", "seq", "1", "5")
    rl("wait", cid)
    assert rl("logs", "--tail", "2", cid).out == "4\n5\n"
    assert rl("logs", "--tail", "0", cid).out == ""


def test_logs_follow_until_exit(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done")
    r = rl("logs", "-f", cid, timeout=30)
    assert r.out == "1\n2\n3\n"


def test_foreground_run_keeps_logs(rl: Rl, busybox: str) -> None:
    r = rl("run", "--name", "fg", "busybox", "sh", "-c", "echo a; echo b >&2; exit 4", check=False)
    assert (r.code, r.out, r.err) == (4, "a\n", "b\n")
    r = rl("logs", "fg")
    assert (r.out, r.err) == ("a\n", "b\n")
    rl("rm", "fg")


def test_stop_escalates_to_sigkill(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", f'trap "" TERM; echo ready; {LOOP}')
    wait_for(logs_have(rl, cid, "ready"), 15, "ready in the logs")
    t0 = time.monotonic()
    rl("stop", "-t", "1", cid)
    assert 0.9 < time.monotonic() - t0 < 8
    assert rl("wait", cid).out == "137\n"


def test_kill_sends_the_signal_to_a_trap(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", f'trap "echo got usr1; exit 3" USR1; echo ready; {LOOP}')
    wait_for(logs_have(rl, cid, "ready"), 15, "ready in the logs")
    assert rl("kill", "-s", "USR1", cid).out == f"{cid}\n"
    assert rl("wait", cid).out == "3\n"
    assert rl("logs", cid).out == "ready\ngot usr1\n"
    r = rl("kill", cid, check=False)
    assert r.code == 125 and "is not running" in r.err


def test_wait_blocks_until_exit(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", "sleep 1; exit 5")
    t0 = time.monotonic()
    assert rl("wait", cid).out == "5\n"
    assert time.monotonic() - t0 > 0.5
    assert state(rl, cid)["ExitCode"] == 5


@pytest.mark.parametrize("driver", DRIVERS)
def test_start_after_stop_keeps_the_container_s_files(rl: Rl, detached: Callable[..., str], driver: str) -> None:
    cid = detached("--name", "keep", "busybox", "sh", "-c",
                   f'echo run >> /runs; wc -l < /runs; trap "exit 0" TERM; {LOOP}', driver=driver)
    wait_for(logs_have(rl, cid, "1"), 15, "1 in the logs")
    rl("stop", "keep")
    assert rl("start", "keep").out == "keep\n"
    wait_for(logs_have(rl, cid, "2"), 15, "2 in the logs")
    assert state(rl, cid)["Running"] is True
    assert rl("restart", "-t", "5", "keep").out == "keep\n"
    wait_for(logs_have(rl, cid, "3"), 15, "3 in the logs")
    assert rl("logs", "keep").out == "1\n2\n3\n"


def test_start_attached_streams_and_returns_the_code(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("--name", "att", "busybox", "sh", "-c", "echo once; exit 2")
    assert rl("wait", cid).out == "2\n"
    r = rl("start", "-a", "att", check=False)
    assert (r.code, r.out) == (2, "once\n")
    assert rl("logs", "att").out == "once\nonce\n"


def test_rm_force_kills_a_running_container(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("--name", "doomed", "busybox", "sleep", "23456")
    wait_for(lambda: processes_with("sleep 23456"), 15, "the container's command to start")
    r = rl("rm", "doomed", check=False)
    assert r.code == 125 and "is running" in r.err
    assert rl("rm", "-f", "doomed").out == "doomed\n"
    assert "doomed" not in rl("ps", "-a").out
    wait_for(lambda: not processes_with("sleep 23456"), 5, "the container's command to end")
    assert not (rl.root / "containers" / cid).exists()


def test_run_detached_rm_removes_it_after_exit(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("--rm", "busybox", "sleep", "0.3")
    wait_for(lambda: cid[:12] not in rl("ps", "-a").out, 15, "the container to leave rl ps -a")
    # The record goes first, then the directory: the supervisor may still be removing it.
    wait_for(lambda: not (rl.root / "containers" / cid).exists(), 5, "the container's directory to go")


def test_generated_names_are_free_even_when_every_plain_one_is_taken(rl: Rl, busybox: str, store) -> None:  # type: ignore[no-untyped-def]
    """With 1,258 adjective_surname names, eight containers at a time collided about once in 200
    starts ("the container name ... is already in use"): a taken name is drawn again, with a digit
    after it, as Docker does."""
    from rootless.runtime import names
    from rootless.store.records import ContainerRecord

    for i, (left, right) in enumerate((a, b) for a in names._LEFT for b in names._RIGHT):
        store.add_container(ContainerRecord(f"{i:064x}", f"{left}_{right}", busybox, "busybox", 0.0, "exited", 0,
                                            0, 0.0, 0.0, "{}"))
    for _ in range(3):
        cid = rl("run", "-d", "busybox", "true").out.strip()
        name = json.loads(rl("inspect", "--type", "container", cid).out)[0]["Name"].lstrip("/")
        assert re.fullmatch(r"[a-z]+_[a-z]+[0-9]", name), name
        rl("rm", "-f", cid)


def test_start_failure_is_reported_by_run_detached(rl: Rl, busybox: str) -> None:
    r = rl("run", "-d", "--rm", "busybox", "nosuchcommand", check=False)
    assert r.code == 127 and r.err == "Error: nosuchcommand: executable file not found in $PATH\n"
    assert r.out == "" and rl("ps", "-a", "-q").out == ""


def test_killed_supervisor_is_found_and_cleaned(rl: Rl, detached: Callable[..., str], store) -> None:  # type: ignore[no-untyped-def]
    cid = detached("--name", "orphan", "busybox", "sleep", "34567")
    wait_for(lambda: processes_with("sleep 34567"), 15, "the container's command to start")
    supervisor = store.container(cid).pid
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: "Exited (137)" in rl("ps", "-a").out, 15, "rl ps -a to say Exited (137)")
    assert rl("wait", "orphan").out == "137\n"
    assert rl("rm", "orphan").out == "orphan\n"
    wait_for(lambda: not processes_with("sleep 34567"), 5, "the container's command to end")
    assert not (rl.root / "containers" / cid).exists()
    # The store is not left locked: another container runs at once.
    assert rl("run", "--rm", "busybox", "echo", "ok", timeout=30).out == "ok\n"


def test_detached_container_survives_the_process_group_that_started_it(rl: Rl, busybox: str) -> None:
    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -m rootless run -d --name survivor busybox "
                                          f"sh -c 'echo up; {LOOP}'; echo started; sleep 100"],
                             env=rl.env, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert shell.stdout is not None
        for line in shell.stdout:
            if line == b"started\n":
                break
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
        # Outside the killed group the SIGKILL never reached it: no waiting for a death to show.
        assert os.getpgid(state(rl, "survivor")["Pid"]) != shell.pid
        assert state(rl, "survivor")["Running"] is True
        assert rl("logs", "survivor").out == "up\n"
    finally:
        rl("rm", "-f", "survivor", check=False)


def test_ten_megabytes_intact_through_the_log(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", "yes 0123456789abcdef | head -c 10000000; echo done >&2")
    assert rl("wait", cid, timeout=120).out == "0\n"
    p = subprocess.run([sys.executable, "-m", "rootless", "logs", cid], env=rl.env, capture_output=True,
                       timeout=120)
    assert p.returncode == 0 and p.stderr == b"done\n"
    assert p.stdout == (b"0123456789abcdef\n" * 600_000)[:10_000_000]


def test_inspect_fields(rl: Rl, detached: Callable[..., str], busybox: str) -> None:
    cid = detached("--name", "insp", "-e", "A=1", "-w", "/tmp", "-h", "box", "--read-only", "--tmpfs", "/scratch",
                   "busybox", "sleep", "45678")
    c = json.loads(rl("inspect", "insp").out)[0]
    assert c["Id"] == cid and c["Name"] == "insp" and c["Image"] == busybox
    assert c["State"]["Status"] == "running" and c["State"]["Running"] is True
    assert c["State"]["Pid"] in processes_with("sleep 45678")
    assert c["Config"]["Cmd"] == ["sleep", "45678"] and "A=1" in c["Config"]["Env"]
    assert (c["Config"]["WorkingDir"], c["Config"]["Hostname"], c["Config"]["Image"]) == ("/tmp", "box", "busybox")
    assert c["HostConfig"] == {**c["HostConfig"], "AutoRemove": False, "ReadonlyRootfs": True, "NetworkMode": "host"}
    assert [m["Destination"] for m in c["Mounts"]] == ["/scratch"]
    assert c["GraphDriver"]["Name"] in DRIVERS
    rl("kill", "insp")
    s = state(rl, "insp")
    assert (s["Status"], s["Running"], s["ExitCode"], s["Pid"]) == ("exited", False, 137, 0)
    assert s["FinishedAt"] >= s["StartedAt"] > c["Created"]


def test_tty_is_the_container_s_own_terminal(rl: Rl, busybox: str) -> None:
    shown, code = run_in_terminal(rl, ["run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty size; echo $TERM"])
    assert (shown, code) == (b"/dev/pts/0\r\n33 111\r\nxterm\r\n", 0)


def test_interactive_tty_takes_keys_and_follows_the_window_size(rl: Rl, busybox: str) -> None:
    shown, code = run_in_terminal(rl, ["run", "--rm", "-it", "busybox", "sh"],
                                  keys=(b"stty size\r", b"stty size; exit 7\r"), resize=(40, 100))
    assert code == 7
    assert b"33 111\r\n" in shown and shown.endswith(b"40 100\r\n")


def test_detached_tty_is_logged(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("-t", "busybox", "sh", "-c", f'tty; trap "echo bye; exit 0" TERM; {LOOP}')
    wait_for(logs_have(rl, cid, "/dev/pts/0"), 15, "/dev/pts/0 in the logs")
    rl("stop", cid)
    assert rl("logs", cid).out == "/dev/pts/0\r\nbye\r\n"
    assert rl("wait", cid).out == "0\n"


@pytest.mark.single_id
def test_single_id_detached_lifecycle(rl: Rl, detached: Callable[..., str]) -> None:
    cid = detached("busybox", "sh", "-c", f'trap "echo bye; exit 0" TERM; echo hi; {LOOP}')
    wait_for(logs_have(rl, cid, "hi"), 15, "hi in the logs")
    rl("stop", cid)
    assert rl("logs", cid).out == "hi\nbye\n"
    assert rl("wait", cid).out == "0\n"


@pytest.mark.parametrize("image_signal, flag_signal, code", [
    (None, "USR1", 3),        # --stop-signal
    ("SIGUSR1", None, 3),     # the image's STOPSIGNAL
    ("SIGUSR1", "USR2", 4),   # the flag wins over the image
])
def test_stop_sends_the_stop_signal(rl: Rl, detached: Callable[..., str], busybox_tar: Path,
                                    image_signal: str | None, flag_signal: str | None, code: int) -> None:
    image = "busybox"
    if image_signal:
        rl("import", "-c", f"STOPSIGNAL {image_signal}", str(busybox_tar), "stopper")
        image = "stopper"
    flag = ("--stop-signal", flag_signal) if flag_signal else ()
    cid = detached(*flag, image, "sh", "-c", 'trap "echo usr1; exit 3" USR1; trap "echo usr2; exit 4" USR2; '
                                             f'trap "echo term; exit 5" TERM; echo ready; {LOOP}')
    wait_for(logs_have(rl, cid, "ready"), 15, "ready in the logs")
    assert rl("stop", "-t", "60", cid).out == f"{cid}\n"
    assert rl("wait", cid).out == f"{code}\n"
    assert rl("logs", cid).out == f"ready\nusr{code - 2}\n"


def test_a_reused_pid_is_never_signalled(rl: Rl, detached: Callable[..., str], store) -> None:  # type: ignore[no-untyped-def]
    """A record names its processes by pid and start time: once they are gone, another process
    that took the same number (here one of the test's) is not theirs to kill."""
    from rootless.runtime.launch import start_ticks

    cid = detached("--name", "old", "busybox", "true")
    assert rl("wait", cid).out == "0\n"
    stranger = subprocess.Popen(["sleep", "56789"])
    try:
        other_start = start_ticks(stranger.pid) + 1
        store.update_container(cid, status="running", pid=stranger.pid, pid_start=other_start,
                               init_pid=stranger.pid, init_start=other_start)
        (rl.root / "containers" / cid / "pid1").write_text(str(stranger.pid))
        r = rl("kill", "old", check=False)
        assert (r.code, r.err) == (125, "Error: container old is not running\n")
        assert rl("stop", "old").out == "old\n"
        assert rl("inspect", "--format", "{{.State.Running}}", "old").out == "false\n"
        assert rl("rm", "-f", "old").out == "old\n"
        assert stranger.poll() is None, "rl killed a process that only shares a number with the container's"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_command_that_never_started(rl: Rl, busybox: str) -> None:
    """Without --rm the container stays, exited with the start failure's code, and every command
    treats it as a container that is not running."""
    r = rl("run", "-d", "--name", "never", "busybox", "nosuchcommand", check=False)
    assert (r.code, r.out, r.err) == (127, "", "Error: nosuchcommand: executable file not found in $PATH\n")
    assert rl("ps", "-a", "--format", "{{.Names}} {{.State}}").out == "never exited\n"
    assert rl("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", "never").out == "false 127\n"
    assert rl("wait", "never").out == "127\n"
    assert rl("stop", "never").out == "never\n"
    r = rl("kill", "never", check=False)
    assert (r.code, r.err) == (125, "Error: container never is not running\n")
    # Started again it fails again: as rl's error when detached, with the command's code attached.
    r = rl("start", "never", check=False)
    assert (r.code, r.out, r.err) == (125, "", "Error: nosuchcommand: executable file not found in $PATH\n")
    r = rl("start", "-a", "never", check=False)
    assert (r.code, r.out, r.err) == (127, "", "Error: nosuchcommand: executable file not found in $PATH\n")
    assert rl("ps", "-a", "--format", "{{.Names}} {{.State}}").out == "never exited\n"
    assert rl("wait", "never").out == "127\n"
    assert rl("rm", "never").out == "never\n"
    assert rl("ps", "-a", "-q").out == "" and os.listdir(rl.root / "containers") == []
