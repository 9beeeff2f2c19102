"""The help a user reads: `rl --help` lists every command, a command's --help lists its options."""
from __future__ import annotations

from tests.conftest import Rl


def test_top_level_help_lists_every_command_with_its_summary(rl: Rl) -> None:
    out = rl("--help").out
    assert out.startswith("usage: rl ")
    for command, summary in (("run", "Run a command in a new container"), ("build", "Build an image"),
                             ("pull", "Pull an image"), ("volume", "Manage volumes")):
        line = next((ln for ln in out.splitlines() if ln.split()[:1] == [command]), "")
        assert summary.lower() in line.lower(), (command, line)
    assert rl().out == out, "rl without a command shows the same help"


def test_a_command_s_help_lists_its_options(rl: Rl) -> None:
    out = rl("run", "--help").out
    assert out.startswith("usage: rl run ") and "--rm" in out and "--mount" in out and "--userns" in out
    assert "create" in rl("volume", "--help").out


def test_an_unknown_command_names_the_commands(rl: Rl) -> None:
    r = rl("frobnicate", check=False)
    assert r.code == 125 and len(r.err.strip().splitlines()) == 1
    assert "invalid choice: 'frobnicate'" in r.err and "'run'" in r.err and "'build'" in r.err


def test_an_abbreviated_option_is_not_taken_for_a_longer_one(rl: Rl) -> None:
    """Docker has `--pid`, rl only `--pids-limit`: the user learns that, nothing runs."""
    r = rl("run", "--pid", "host", "busybox", "true", check=False)
    assert r.code == 125 and "unrecognized arguments: --pid" in r.err and len(r.err.splitlines()) == 1
