"""`rl exec` into a running container, on every storage driver."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import DRIVERS, Rl, has_subuid_range, wait_for
from tests.e2e.helpers import run_in_terminal, start_container, stop_container

@pytest.fixture(params=DRIVERS)
def container(request: pytest.FixtureRequest, rl: Rl, busybox: str) -> Iterator[Callable[..., str]]:
    """Starts running containers on the driver of the test's parameter; removes them at the end."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(*run_args: str, name: str = "box") -> str:
        started.append((start_container(rl, request.param, name, *run_args), name))
        return name

    yield start
    for p, name in started:
        stop_container(rl, p, name)


def test_exec_sees_the_container_and_returns_the_exit_code(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    name = container("--hostname", "inside")
    rl("exec", name, "sh", "-c", "echo from-exec > /made-by-exec")
    out = rl("exec", name, "sh", "-c", "hostname; cat /made-by-exec; ps -o pid,args").out.splitlines()
    assert out[:2] == ["inside", "from-exec"]
    assert any(line.split()[0] == "1" and "trap" in line for line in out[3:]), out  # pid 1 is the container's
    assert rl("exec", name, "sh", "-c", "exit 7", check=False).code == 7


def test_exec_user_workdir_env(rl: Rl, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = container("-e", "FROM_RUN=run", "-w", "/tmp")
    envfile = tmp_path / "env"
    envfile.write_text("FROM_FILE=file\n")
    out = rl("exec", "-e", "FROM_FLAG=flag", "--env-file", str(envfile), name,
             "sh", "-c", "pwd; echo $FROM_RUN $FROM_FILE $FROM_FLAG $HOME; id -u").out
    assert out.splitlines() == ["/tmp", "run file flag /root", "0"]
    assert rl("exec", "-w", "/etc", name, "pwd").out == "/etc\n"
    if has_subuid_range():
        assert rl("exec", "-u", "nobody", name, "id", "-un").out == "nobody\n"
        assert rl("exec", "-u", "1234:42", name, "id").out.startswith("uid=1234 gid=42")
    r = rl("exec", "-u", "ghost", name, "true", check=False)
    assert r.code == 125 and "unable to find user ghost" in r.err


def test_exec_into_an_init_container_with_its_own_network(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    if not has_subuid_range():
        pytest.skip("-u nobody needs a subordinate id range")
    # pid 1 is rl's init, which became nobody without an exec: exec still finds the namespaces.
    name = container("--init", "--network", "none", "-u", "nobody")
    out = rl("exec", name, "sh", "-c", "ls /sys/class/net; id -un; cat /proc/1/cmdline | tr '\\0' ' '").out
    lines = out.splitlines()
    assert lines[:2] == ["lo", "nobody"] and "rootless" in lines[2]


@pytest.mark.parametrize("cmd, code, text", [
    (("nosuchcommand",), 127, "nosuchcommand: executable file not found in $PATH"),
    (("/etc/passwd",), 126, "/etc/passwd: permission denied"),
])
def test_exec_start_failures_use_docker_exit_codes(rl: Rl, container, cmd: tuple[str, ...], code: int,  # type: ignore[no-untyped-def]
                                                   text: str) -> None:
    r = rl("exec", container(), *cmd, check=False)
    assert r.code == code and r.err.strip() == f"Error: {text}"


def test_exec_stdin_only_with_i_and_detach(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    name = container()
    assert rl("exec", "-i", name, "cat", input=b"data\n").out == "data\n"
    assert rl("exec", name, "cat", input=b"data\n").out == ""
    assert rl("exec", "-d", name, "sh", "-c", "sleep 0.2; echo done > /detached").out == ""
    wait_for(lambda: rl("exec", name, "cat", "/detached", check=False).out == "done\n", 10,
             "the detached exec to write /detached")


def test_exec_refuses_a_stopped_or_unknown_container_and_a_detached_tty(rl: Rl, busybox: str) -> None:
    rl("run", "--name", "stopped", "busybox", "true")
    r = rl("exec", "stopped", "true", check=False)
    assert r.code == 125 and r.err == "Error: container stopped is not running\n"
    r = rl("exec", "ghost", "true", check=False)
    assert r.code == 125 and r.err == "Error: no such container: ghost\n"
    r = rl("exec", "-d", "-t", "stopped", "true", check=False)
    assert r.code == 125 and len(r.err.splitlines()) == 1 and "tty" in r.err
    rl("rm", "stopped")


@pytest.mark.single_id
def test_exec_single_id(rl: Rl, busybox: str) -> None:
    p = start_container(rl, "vfs", "single")
    try:
        assert rl("exec", "single", "id", "-u").out == "0\n"
        r = rl("exec", "-u", "1000", "single", "id", check=False)
        assert r.code == 125 and "not mapped" in r.err
    finally:
        stop_container(rl, p, "single")


def test_exec_tty_is_a_terminal_of_the_container_s_devpts(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    name = container()
    shown, code = run_in_terminal(rl, ["exec", "-t", name, "sh", "-c", "tty; stty size; echo $TERM"])
    assert code == 0 and re.fullmatch(rb"/dev/pts/\d+\r\n33 111\r\nxterm\r\n", shown), shown


def test_exec_interactive_tty_takes_keys_and_follows_the_window_size(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    name = container()
    shown, code = run_in_terminal(rl, ["exec", "-it", name, "sh"],
                                  keys=(b"stty size\r", b"stty size; exit 7\r"), resize=(40, 100))
    assert code == 7
    assert b"33 111\r\n" in shown and shown.endswith(b"40 100\r\n"), shown


def test_exec_tty_without_a_terminal_of_ours(rl: Rl, container) -> None:  # type: ignore[no-untyped-def]
    # As docker: the command still gets a terminal (its \n become \r\n), relayed to our stdout.
    name = container()
    r = rl("exec", "-t", name, "sh", "-c", "tty; echo out; echo err >&2; exit 3", check=False)
    assert r.code == 3 and re.fullmatch(r"/dev/pts/\d+\r\nout\r\nerr\r\n", r.out), r
    assert rl("exec", "-it", name, "sh", "-c", "read line; echo got $line", input=b"typed\n").out.endswith(
        "got typed\r\n")
    r = rl("exec", "-t", name, "nosuchcommand", check=False)
    assert r.code == 127 and r.err.strip() == "Error: nosuchcommand: executable file not found in $PATH"
    if has_subuid_range():
        # The terminal belongs to the user the command runs as.
        out = rl("exec", "-t", "-u", "nobody", name, "sh", "-c", 'stat -c %U "$(tty)"').out
        assert out == "nobody\r\n"
